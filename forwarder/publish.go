package forwarder

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/b2131a45/eventkit/events"
)

// batchResult is the outcome of one round.
type batchResult struct {
	// outage is the error of an unavailable broker that stopped the round;
	// the rows not confirmed stay pending, with no attempt counted.
	outage error
	// retryAttempts is the highest attempt count of a rejected row that
	// stays pending (it is retried after a backoff), 0 when none.
	retryAttempts int
	// confirmed counts the rows the broker confirmed.
	confirmed int
	// clean is true when every row of the batch was confirmed.
	clean bool
}

type rejection struct {
	r   *row
	err error
}

// relayBatch publishes rows and records rejections: a rejected row gets an
// attempt (and is parked at MaxAttempts). It returns the confirmed rows,
// for the caller to mark; the others stay pending.
func (r *Relay) relayBatch(ctx context.Context, batch []*row) (batchResult, []*row, error) {
	// A row the broker rejected before goes alone, first: no younger row
	// overtakes it while it has attempts left.
	n := 0
	for n < len(batch) && batch[n].attempts == 0 {
		n++
	}
	if n == 0 {
		n = 1
	}
	var res batchResult
	var rejected []rejection
	ready := make([]*row, 0, n)
	for _, rw := range batch[:n] {
		if rw.msg == nil {
			// It can never be published: park it at once.
			rejected = append(rejected, rejection{rw, rw.bad})
			continue
		}
		ready = append(ready, rw)
	}

	pubCtx, cancel := r.stopContext(ctx)
	defer cancel()
	var confirmed []*row
	for _, g := range groupByTopic(ready) {
		ok, rej, outage := r.publishGroup(pubCtx, g)
		confirmed = append(confirmed, ok...)
		rejected = append(rejected, rej...)
		if outage != nil {
			res.outage = outage
			break
		}
	}
	res.confirmed = len(confirmed)
	res.clean = len(confirmed) == len(batch)

	for _, rj := range rejected {
		maxAttempts := r.cfg.MaxAttempts
		if rj.r.msg == nil {
			maxAttempts = 1
		}
		text := rj.err.Error()
		if len(text) > 2000 {
			text = text[:2000]
		}
		query, args := r.ob.s.reject(rj.r, text, maxAttempts)
		err := retryBusy(pubCtx, func() error {
			_, err := r.ob.db.exec(pubCtx, query, args...)
			return err
		})
		if err != nil {
			return res, confirmed, fmt.Errorf("record rejection of %s: %w", rj.r.uuid, err)
		}
		attempt := rj.r.attempts + 1
		attrs := []any{slog.String("event_id", rj.r.uuid), slog.String("topic", rj.r.topic),
			slog.Int("attempt", attempt), slogErr(rj.err)}
		if m := rj.r.msg; m != nil {
			attrs = append(attrs, slog.String("event_name", m.Metadata.Get(events.KeyName)),
				slog.String("correlation_id", m.Metadata.Get(events.KeyCorrelationID)))
		}
		if attempt >= maxAttempts {
			r.log.Error("eventkit: event parked as failed", attrs...)
			if r.cfg.Observer != nil {
				r.cfg.Observer.Parked(r.ob.cfg.Name, rj.r.topic)
			}
		} else {
			r.log.Warn("eventkit: broker rejected event; retrying", attrs...)
			res.retryAttempts = max(res.retryAttempts, attempt)
		}
	}
	return res, confirmed, nil
}

// publishGroup publishes rows of one topic in one call and sorts them into
// confirmed and rejected; outage is set when the broker was unavailable
// (the rows in neither list stay pending).
func (r *Relay) publishGroup(ctx context.Context, rows []*row) (confirmed []*row, rejected []rejection, outage error) {
	topic := rows[0].topic
	msgs := make([]*message.Message, len(rows))
	for i, rw := range rows {
		rw.msg.SetContext(ctx)
		msgs[i] = rw.msg
	}
	err := r.publish(ctx, topic, msgs...)
	if err == nil {
		return rows, nil, nil
	}
	var nc notConfirmed
	if errors.As(err, &nc) {
		failed := map[string]bool{}
		for _, id := range nc.NotConfirmed() {
			failed[id] = true
		}
		unavailable := r.cfg.Unavailable(err)
		for _, rw := range rows {
			switch {
			case !failed[rw.msg.UUID]:
				confirmed = append(confirmed, rw)
			case unavailable:
				outage = err
			default:
				rejected = append(rejected, rejection{rw, err})
			}
		}
		return confirmed, rejected, outage
	}
	if len(rows) == 1 {
		switch {
		case r.cfg.Unavailable(err):
			return nil, nil, err
		case isMessageFault(err) || rows[0].attempts > 0:
			return nil, []rejection{{rows[0], err}}, nil
		}
		// Nothing shows it is about this message rather than the broker.
		return nil, nil, err
	}
	// The error does not say which messages were confirmed: publish them
	// one by one, up to the first that is not. That finds the culprit of a
	// rejection, and keeps a relay under back-pressure (a stock publisher
	// that stops at the first nack) making progress. Messages delivered by
	// the first call go twice (at least once). During an outage the first
	// single publish fails at once.
	var unattributed []rejection
	for _, rw := range rows {
		err := r.publish(ctx, topic, rw.msg)
		switch {
		case err == nil:
			confirmed = append(confirmed, rw)
			// The broker took a later message: the earlier failures were
			// about those messages.
			rejected = append(rejected, unattributed...)
			unattributed = nil
			continue
		case r.cfg.Unavailable(err):
			return confirmed, rejected, err
		case isMessageFault(err) || rw.attempts > 0:
			rejected = append(rejected, rejection{rw, err})
		default:
			unattributed = append(unattributed, rejection{rw, err})
			if len(unattributed) == 3 {
				return confirmed, rejected, err
			}
		}
	}
	if len(unattributed) > 0 {
		// No later message got through: it may be the broker, not the
		// message. Do not count an attempt.
		return confirmed, rejected, unattributed[0].err
	}
	return confirmed, rejected, nil
}

// publish publishes msgs to topic with the relay's publisher, in a span
// when tracing is on, and reports the outcome to the observer.
func (r *Relay) publish(ctx context.Context, topic string, msgs ...*message.Message) error {
	if r.tracer == nil && r.cfg.Observer == nil {
		return r.pub.Publish(topic, msgs...)
	}
	end := r.tracePublish(ctx, topic, msgs)
	start := time.Now()
	err := r.pub.Publish(topic, msgs...)
	took := time.Since(start)
	end(err)
	if r.cfg.Observer != nil {
		confirmed := len(msgs)
		if err != nil {
			confirmed = 0
			var nc notConfirmed
			if errors.As(err, &nc) {
				confirmed = max(len(msgs)-len(nc.NotConfirmed()), 0)
			}
		}
		r.cfg.Observer.Published(r.ob.cfg.Name, topic, len(msgs), confirmed, took, err)
	}
	return err
}
