// Package brokers holds small confirming publishers that the benchmark uses
// as the relay's broker until the transports package has its own: AMQP with pipelined
// publisher confirms and Kafka with batched, idempotent produce. They follow
// the relay's error convention (NotConfirmed, Unavailable). Applications use
// the transports package instead.
package brokers

import (
	"errors"
	"fmt"
	"sync"

	"github.com/ThreeDotsLabs/watermill/message"
	amqp "github.com/rabbitmq/amqp091-go"
)

// UUIDHeader carries the message UUID, as in watermill-amqp.
const UUIDHeader = "_watermill_message_uuid"

// AMQP publishes to the default exchange with the topic as routing key (a
// durable queue per topic, declared by the caller) or to a fanout exchange
// named after the topic, persistent, mandatory,
// and pipelines publisher confirms: one Publish call sends every message,
// then waits for all confirms. A lost connection is dialed again on the
// next Publish.
type AMQP struct {
	url    string
	fanout bool

	mu      sync.Mutex
	conn    *amqp.Connection
	ch      *amqp.Channel
	returns chan amqp.Return
	closed  bool
}

// NewAMQP returns a publisher for url; it connects on first use. With
// fanout it publishes to the exchange named after the topic instead.
func NewAMQP(url string, fanout bool) *AMQP { return &AMQP{url: url, fanout: fanout} }

// PublishError names the messages the broker did not confirm.
type PublishError struct {
	UUIDs []string
	Err   error
}

func (e *PublishError) Error() string {
	return fmt.Sprintf("%d message(s) not confirmed: %v", len(e.UUIDs), e.Err)
}
func (e *PublishError) Unwrap() error          { return e.Err }
func (e *PublishError) NotConfirmed() []string { return e.UUIDs }

// ErrNack is a broker nack: back-pressure (a full queue with reject-publish)
// or an internal error; publishing again later is the remedy.
var ErrNack = unavailable{errors.New("nacked by the broker")}

// ErrUnroutable is a mandatory message no queue took.
var ErrUnroutable = rejected{errors.New("unroutable: no queue bound")}

type unavailable struct{ error }

func (e unavailable) Unwrap() error     { return e.error }
func (e unavailable) Unavailable() bool { return true }

type rejected struct{ error }

func (e rejected) Unwrap() error     { return e.error }
func (e rejected) Unavailable() bool { return false }

func (p *AMQP) connect() error {
	if p.closed {
		return errors.New("publisher closed")
	}
	if p.ch != nil && !p.ch.IsClosed() {
		return nil
	}
	p.drop()
	conn, err := amqp.Dial(p.url)
	if err != nil {
		return unavailable{err}
	}
	ch, err := conn.Channel()
	if err == nil {
		err = ch.Confirm(false)
	}
	if err != nil {
		_ = conn.Close()
		return unavailable{err}
	}
	p.conn, p.ch = conn, ch
	p.returns = ch.NotifyReturn(make(chan amqp.Return, 1024))
	return nil
}

func (p *AMQP) drop() {
	if p.conn != nil {
		_ = p.conn.Close()
	}
	p.conn, p.ch, p.returns = nil, nil, nil
}

// Publish sends msgs and returns once the broker confirmed all of them, or
// a *PublishError naming those it did not.
func (p *AMQP) Publish(topic string, msgs ...*message.Message) error {
	if len(msgs) == 0 {
		return nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if err := p.connect(); err != nil {
		return err
	}
	ctx := msgs[0].Context()
	dcs := make([]*amqp.DeferredConfirmation, len(msgs))
	var sendErr error
	for i, m := range msgs {
		headers := make(amqp.Table, len(m.Metadata)+1)
		for k, v := range m.Metadata {
			headers[k] = v
		}
		headers[UUIDHeader] = m.UUID
		exchange, key := "", topic
		if p.fanout {
			exchange, key = topic, ""
		}
		dc, err := p.ch.PublishWithDeferredConfirmWithContext(ctx, exchange, key, true, false, amqp.Publishing{
			Headers:      headers,
			MessageId:    m.UUID,
			DeliveryMode: amqp.Persistent,
			Body:         m.Payload,
		})
		if err != nil {
			sendErr = unavailable{err}
			break
		}
		dcs[i] = dc
	}
	var failed []string
	var why error
	for i, dc := range dcs {
		if dc == nil {
			failed = append(failed, msgs[i].UUID)
			continue
		}
		ack, err := dc.WaitContext(ctx)
		switch {
		case err != nil:
			failed, why = append(failed, msgs[i].UUID), unavailable{err}
		case !ack:
			failed = append(failed, msgs[i].UUID)
			if p.ch.IsClosed() {
				why = unavailable{amqp.ErrClosed}
			} else if why == nil {
				why = ErrNack
			}
		}
	}
	// A basic.return comes before the ack of its message, so every return
	// of this call is queued by now.
	returned := map[string]bool{}
	for more := true; more && p.returns != nil; {
		select {
		case r := <-p.returns:
			returned[r.MessageId] = true
		default:
			more = false
		}
	}
	if len(returned) > 0 {
		for _, m := range msgs {
			if returned[m.UUID] {
				failed = append(failed, m.UUID)
			}
		}
		if why == nil {
			why = ErrUnroutable
		}
	}
	if sendErr != nil {
		p.drop()
		why = sendErr
	} else if p.ch.IsClosed() {
		p.drop()
	}
	if len(failed) == 0 {
		return nil
	}
	return &PublishError{UUIDs: failed, Err: why}
}

// Close closes the connection.
func (p *AMQP) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
	p.drop()
	return nil
}
