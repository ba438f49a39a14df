package cqrs

import (
	"errors"
	"fmt"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/b2131a45/eventkit/events"
)

// MaxScheduleAhead is the furthest ahead an event can be scheduled.
const MaxScheduleAhead = 366 * 24 * time.Hour

// ErrScheduleNotSupported is returned by Bus.Publish for a scheduled event
// (DeliverAt, DeliverAfter) when its publisher cannot hold messages until
// they are due: schedule through the outbox (forwarder.Outbox.Add or
// Outbox.Bus), which every transport then gets in time.
var ErrScheduleNotSupported = errors.New("cqrs: the publisher cannot schedule delivery (publish through the outbox instead)")

// Scheduler is a publisher that holds each message with an
// events.KeyDeliverAt until it is due and never delivers it before: the
// outbox (forwarder.Outbox.Bus) and the mem:// transport.
type Scheduler interface {
	message.Publisher
	// SchedulesDelivery reports true.
	SchedulesDelivery() bool
}

// PublishOption changes how the events of one Bus.Publish (or
// forwarder.Outbox.Add) call are delivered. Pass it among the events.
type PublishOption struct {
	at    time.Time
	after time.Duration
	isAt  bool
}

// DeliverAt schedules the events of the call: they are delivered no earlier
// than t (a t in the past means now). At most MaxScheduleAhead ahead.
func DeliverAt(t time.Time) PublishOption { return PublishOption{at: t, isAt: true} }

// DeliverAfter schedules the events of the call: they are delivered no
// earlier than d after the call. d must not be negative; at most
// MaxScheduleAhead.
func DeliverAfter(d time.Duration) PublishOption { return PublishOption{after: d} }

// due returns when the option makes events due, checking it.
func (o PublishOption) due(now time.Time) (time.Time, error) {
	if o.isAt {
		if o.at.IsZero() {
			return time.Time{}, errors.New("cqrs: DeliverAt with the zero time")
		}
		if o.at.Sub(now) > MaxScheduleAhead {
			return time.Time{}, fmt.Errorf("cqrs: DeliverAt(%s) is more than MaxScheduleAhead (%s) ahead", o.at.UTC().Format(time.RFC3339), MaxScheduleAhead)
		}
		return o.at, nil
	}
	if o.after < 0 {
		return time.Time{}, fmt.Errorf("cqrs: DeliverAfter(%s): a delay must not be negative", o.after)
	}
	if o.after > MaxScheduleAhead {
		return time.Time{}, fmt.Errorf("cqrs: DeliverAfter(%s) is more than MaxScheduleAhead (%s)", o.after, MaxScheduleAhead)
	}
	return now.Add(o.after), nil
}

// splitOptions separates the PublishOptions from the events and returns the
// due time they ask for (zero: now).
func splitOptions(evts []any) ([]any, time.Time, error) {
	var due time.Time
	n := 0
	for _, e := range evts {
		if _, ok := e.(PublishOption); ok {
			n++
		}
	}
	if n == 0 {
		return evts, due, nil
	}
	if n > 1 {
		return nil, due, errors.New("cqrs: more than one DeliverAt/DeliverAfter in one call")
	}
	rest := make([]any, 0, len(evts)-1)
	for _, e := range evts {
		o, ok := e.(PublishOption)
		if !ok {
			rest = append(rest, e)
			continue
		}
		var err error
		if due, err = o.due(time.Now()); err != nil {
			return nil, time.Time{}, err
		}
	}
	return rest, due, nil
}

// scheduled reports whether any message is due later than now.
func scheduled(msgs []*message.Message) bool {
	now := time.Now()
	for _, m := range msgs {
		if v := m.Metadata.Get(events.KeyDeliverAt); v != "" {
			if t, err := events.ParseTime(v); err == nil && t.After(now) {
				return true
			}
		}
	}
	return false
}
