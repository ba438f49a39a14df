package amqp

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/ThreeDotsLabs/watermill/message"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/b2131a45/eventkit/transports/internal/errs"
	"github.com/b2131a45/eventkit/transports/internal/redact"
)

// Errors of Publish, wrapped in a *PublishError that lists the messages.
// Each has an Unavailable() and a Permanent() method saying whether a
// later retry can succeed (the conventions of eventkit's outbox relay).
var (
	// ErrNacked: the broker refused the message (basic.nack), for example a
	// full queue with x-overflow=reject-publish. Back-pressure: Unavailable.
	ErrNacked error = errs.Unavailable("amqp: broker nacked the message")
	// ErrUnroutable: no queue is bound to the topic's exchange, so the
	// broker returned the message (see Config.Unroutable). Permanent until
	// a consumer group declares its queue.
	ErrUnroutable error = errs.Refused("amqp: message returned unroutable: no queue is bound to the exchange")
	// ErrNotConfirmed: no confirm arrived, because ConfirmTimeout passed,
	// the message's context ended or the channel was lost. The broker may
	// or may not have the message. Unavailable.
	ErrNotConfirmed error = errs.Unavailable("amqp: publish not confirmed")
	// ErrRejected: eventkit could not make a publishing of the message
	// (Config.OnPublish failed, or the structured CloudEvent could not
	// be encoded). Permanent.
	ErrRejected error = errs.Refused("amqp: message rejected before publishing")
)

// ErrClosed is returned after Close.
var ErrClosed = errs.ErrClosed

// PublishError lists the messages of a Publish call that were not
// confirmed, and why.
type PublishError = errs.PublishError

// Publisher publishes to RabbitMQ with pipelined publisher confirms. It is
// safe for concurrent use.
type Publisher struct {
	cfg     Config
	conn    *connector
	secrets redact.Secrets

	// slots holds one entry per concurrent Publish: nil until a channel
	// is opened, then the channel for reuse.
	slots   chan *confirmChannel
	closing chan struct{}
	once    sync.Once

	mu       sync.Mutex
	declared map[string]*amqp.Connection // exchanges and queues declared (target.key), per connection
	kick     *kicker                     // quorum delay queues (Delay); nil until the first
}

// NewPublisher validates cfg and connects; the connection is lost and
// restored without closing the publisher.
func NewPublisher(ctx context.Context, cfg Config) (*Publisher, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	secrets := redact.New(cfg.password())
	p := &Publisher{
		cfg:      cfg,
		conn:     newConnector(cfg, "publisher", secrets.Logger(cfg.Logger)),
		secrets:  secrets,
		slots:    make(chan *confirmChannel, cfg.PublishChannels),
		closing:  make(chan struct{}),
		declared: map[string]*amqp.Connection{},
	}
	if _, err := p.conn.get(ctx); err != nil {
		return nil, secrets.Error(err)
	}
	for range cfg.PublishChannels {
		p.slots <- nil
	}
	return p, nil
}

// Publish sends msgs to the topic's exchange and returns when the broker
// confirmed all of them. The messages are published back to back on one
// channel and their confirms awaited together. If any message is nacked,
// returned unroutable or not confirmed, Publish returns a *PublishError
// listing those messages and wrapping ErrNacked, ErrUnroutable or
// ErrNotConfirmed; it returns ErrNotConnected when the broker cannot be
// reached and ErrClosed after Close. The context of the first message
// bounds the call, together with Config.ConfirmTimeout.
func (p *Publisher) Publish(topic string, msgs ...*message.Message) error {
	select {
	case <-p.closing:
		return ErrClosed
	default:
	}
	if err := errs.CheckName("amqp: topic", topic); err != nil {
		return &PublishError{Topic: topic, UUIDs: uuids(msgs), Err: err}
	}
	cc, err := p.acquire()
	if err != nil {
		return err
	}
	err = p.publish(&cc, exchangeTarget(topic), msgs)
	p.slots <- cc
	return p.secrets.Error(err)
}

// target is where a Publish call sends: a topic's exchange, or (Delay) a
// delay queue through the default exchange.
type target struct {
	topic      string // for errors
	exchange   string
	routingKey string
	// key names what declare declares, once per connection.
	key     string
	declare func(ch *amqp.Channel) error
}

func exchangeTarget(topic string) target {
	return target{topic: topic, exchange: topic, key: "exchange " + topic,
		declare: func(ch *amqp.Channel) error { return declareExchange(ch, topic) }}
}

// acquire takes a publish slot, or returns ErrClosed.
func (p *Publisher) acquire() (*confirmChannel, error) {
	var cc *confirmChannel
	select {
	case cc = <-p.slots:
	case <-p.closing:
		return nil, ErrClosed
	}
	select {
	case <-p.closing: // Close began while this call waited for a slot.
		p.slots <- cc
		return nil, ErrClosed
	default:
	}
	return cc, nil
}

func (p *Publisher) publish(slot **confirmChannel, to target, msgs []*message.Message) error {
	if len(msgs) == 0 {
		return nil
	}
	topic := to.topic
	ctx, cancel := context.WithTimeout(msgs[0].Context(), p.cfg.ConfirmTimeout)
	defer cancel()

	cc, err := p.channel(ctx, slot)
	if err != nil {
		return &PublishError{Topic: topic, UUIDs: uuids(msgs), Err: err}
	}
	if err := p.declare(cc, to); err != nil {
		p.discard(slot)
		return &PublishError{Topic: topic, UUIDs: uuids(msgs), Err: err}
	}

	pubs, err := p.marshal(msgs)
	if err != nil {
		return &PublishError{Topic: topic, UUIDs: uuids(msgs), Err: err}
	}
	confirms, err := p.send(ctx, cc, to, pubs)
	if err != nil {
		p.discard(slot)
		return &PublishError{Topic: topic, UUIDs: uuids(msgs), Err: fmt.Errorf("%w: %w", ErrNotConfirmed, err)}
	}

	nacked := map[string]bool{}
	for i, dc := range confirms {
		select {
		case <-dc.Done():
			if !dc.Acked() {
				nacked[msgs[i].UUID] = true
			}
		case <-ctx.Done():
			// Returns of the confirmed messages are not known yet: the
			// whole call counts as not confirmed.
			p.discard(slot)
			return &PublishError{Topic: topic, UUIDs: uuids(msgs), Err: fmt.Errorf("%w: %w", ErrNotConfirmed, context.Cause(ctx))}
		}
	}
	returned := cc.returned()
	if len(nacked) == 0 && len(returned) == 0 {
		return nil
	}
	var cause error
	switch {
	case len(nacked) > 0 && cc.ch.IsClosed():
		// amqp091-go nacks the pending confirms of a channel that closes.
		p.discard(slot)
		cause = fmt.Errorf("%w: channel closed", ErrNotConfirmed)
	case len(returned) == 0:
		cause = ErrNacked
	case len(nacked) == 0:
		cause = ErrUnroutable
	default:
		cause = errors.Join(ErrNacked, ErrUnroutable)
	}
	failed := nacked
	for _, id := range returned {
		failed[id] = true
	}
	return &PublishError{Topic: topic, UUIDs: pick(msgs, failed), Err: cause}
}

// send publishes pubs on cc with the connection corked (see corkedConn):
// the frames of a call of many messages go out in a few writes instead of
// one each. It returns once every frame was written.
func (p *Publisher) send(ctx context.Context, cc *confirmChannel, to target, pubs []amqp.Publishing) ([]*amqp.DeferredConfirmation, error) {
	corked := cc.wire != nil && len(pubs) > 1
	if corked {
		cc.wire.cork()
	}
	mandatory := p.cfg.Unroutable == UnroutableError
	confirms := make([]*amqp.DeferredConfirmation, len(pubs))
	var err error
	for i := range pubs {
		if confirms[i], err = cc.ch.PublishWithDeferredConfirmWithContext(ctx, to.exchange, to.routingKey, mandatory, false, pubs[i]); err != nil {
			break
		}
	}
	if corked {
		if uerr := cc.wire.uncork(); err == nil {
			err = uerr
		}
	}
	return confirms, err
}

// marshal encodes msgs in Config.Wire and runs Config.OnPublish. An error
// wraps ErrRejected: the same messages would fail again.
func (p *Publisher) marshal(msgs []*message.Message) ([]amqp.Publishing, error) {
	pubs := make([]amqp.Publishing, len(msgs))
	for i, msg := range msgs {
		pub, err := marshal(p.cfg.Wire, msg)
		if err == nil && p.cfg.OnPublish != nil {
			err = p.cfg.OnPublish(msg, &pub)
		}
		if err != nil {
			return nil, fmt.Errorf("%w: message %s: %w", ErrRejected, msg.UUID, err)
		}
		pubs[i] = pub
	}
	return pubs, nil
}

// channel returns the slot's channel, opening one when the slot is empty or
// its channel is closed or belongs to a lost connection.
func (p *Publisher) channel(ctx context.Context, slot **confirmChannel) (*confirmChannel, error) {
	conn, err := p.conn.get(ctx)
	if err != nil {
		return nil, err
	}
	if *slot != nil && (*slot).usable(conn) {
		return *slot, nil
	}
	p.discard(slot)
	cc, err := openConfirmChannel(conn)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrNotConnected, err)
	}
	cc.wire = p.conn.wireOf(conn)
	*slot = cc
	return cc, nil
}

func (p *Publisher) discard(slot **confirmChannel) {
	if *slot != nil {
		(*slot).close()
		*slot = nil
	}
}

// declare declares the target's exchange or queue once per connection.
func (p *Publisher) declare(cc *confirmChannel, to target) error {
	p.mu.Lock()
	done := p.declared[to.key] == cc.conn
	p.mu.Unlock()
	if done {
		return nil
	}
	if err := to.declare(cc.ch); err != nil {
		return err
	}
	p.mu.Lock()
	p.declared[to.key] = cc.conn
	p.mu.Unlock()
	return nil
}

// Close waits for the Publish calls in flight, then closes the channels and
// the connection. Later Publish calls return ErrClosed. Close is safe to
// call more than once.
func (p *Publisher) Close() error {
	var err error
	p.once.Do(func() {
		close(p.closing)
		p.mu.Lock()
		k := p.kick
		p.mu.Unlock()
		if k != nil {
			<-k.done
		}
		for range p.cfg.PublishChannels {
			if cc := <-p.slots; cc != nil {
				cc.close()
			}
		}
		err = p.secrets.Error(p.conn.close())
	})
	return err
}

func uuids(msgs []*message.Message) []string {
	ids := make([]string, len(msgs))
	for i, m := range msgs {
		ids[i] = m.UUID
	}
	return ids
}

func pick(msgs []*message.Message, ids map[string]bool) []string {
	var picked []string
	for _, m := range msgs {
		if ids[m.UUID] {
			picked = append(picked, m.UUID)
		}
	}
	return picked
}

var _ message.Publisher = (*Publisher)(nil)
