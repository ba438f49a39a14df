package amqp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/b2131a45/eventkit/transports/internal/errs"
	"github.com/b2131a45/eventkit/transports/internal/redact"
)

// ErrNoGroup is returned for an empty consumer group name.
var ErrNoGroup = errs.ErrNoGroup

var errChannelClosed = errors.New("amqp: channel closed")

// Subscriber consumes one consumer group's queues. It is safe for
// concurrent use.
type Subscriber struct {
	cfg       Config
	group     string
	conn      *connector
	ownsConn  bool
	secrets   redact.Secrets
	logger    *slog.Logger
	closing   chan struct{}
	closeOnce sync.Once

	mu     sync.Mutex
	closed bool
	wg     sync.WaitGroup
}

// NewSubscriber validates cfg and connects a subscriber of the consumer
// group. The subscriber owns its connection.
func NewSubscriber(ctx context.Context, cfg Config, group string) (*Subscriber, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if group == "" {
		return nil, ErrNoGroup
	}
	if err := errs.CheckName("amqp: consumer group", group); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	secrets := redact.New(cfg.password())
	conn := newConnector(cfg, "subscriber "+group, secrets.Logger(cfg.Logger))
	if _, err := conn.get(ctx); err != nil {
		return nil, secrets.Error(err)
	}
	return newSubscriber(cfg, group, conn, true, secrets), nil
}

func newSubscriber(cfg Config, group string, conn *connector, ownsConn bool, secrets redact.Secrets) *Subscriber {
	return &Subscriber{
		cfg:      cfg,
		group:    group,
		conn:     conn,
		ownsConn: ownsConn,
		secrets:  secrets,
		logger:   secrets.Logger(cfg.Logger).With("group", group),
		closing:  make(chan struct{}),
	}
}

// SubscribeInitialize declares the topic's exchange and the group's queue
// bound to it, so that the group keeps every message published from now on,
// before anything consumes it.
func (s *Subscriber) SubscribeInitialize(topic string) error {
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.DialTimeout)
	defer cancel()
	return s.secrets.Error(s.declare(ctx, topic))
}

func (s *Subscriber) declare(ctx context.Context, topic string) error {
	if err := checkNames(topic, s.group); err != nil {
		return err
	}
	conn, err := s.conn.get(ctx)
	if err != nil {
		return err
	}
	ch, err := conn.Channel()
	if err != nil {
		return fmt.Errorf("open channel: %w", err)
	}
	defer ch.Close()
	return declareGroup(ch, topic, s.group, s.cfg.QueueArgs)
}

// Subscribe declares the group's queue on topic and delivers its messages
// on the returned channel, one at a time: the next one comes after the
// previous one is acked or nacked. A lost connection is restored behind the
// channel. The channel closes when ctx ends or the subscriber closes.
func (s *Subscriber) Subscribe(ctx context.Context, topic string) (<-chan *message.Message, error) {
	if s.isClosed() {
		return nil, ErrClosed
	}
	dctx, cancel := context.WithTimeout(ctx, s.cfg.DialTimeout)
	err := s.declare(dctx, topic)
	cancel()
	if err != nil {
		return nil, s.secrets.Error(fmt.Errorf("subscribe to %q: %w", topic, err))
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, ErrClosed
	}
	out := make(chan *message.Message)
	s.wg.Add(1)
	go s.run(ctx, topic, out)
	return out, nil
}

func (s *Subscriber) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// run consumes until ctx ends or the subscriber closes, starting again
// after every lost channel or connection.
func (s *Subscriber) run(ctx context.Context, topic string, out chan<- *message.Message) {
	defer s.wg.Done()
	defer close(out)
	logger := s.logger.With("topic", topic)
	lost := false
	consuming := func() {
		if lost {
			logger.Info("amqp subscription restored")
			lost = false
		}
	}
	for {
		err := s.consume(ctx, topic, out, consuming)
		if err == nil {
			return
		}
		if !lost {
			logger.Warn("amqp subscription lost, retrying", "err", err)
		} else {
			logger.Debug("amqp subscription retry failed", "err", err)
		}
		lost = true
		timer := time.NewTimer(s.cfg.ReconnectInterval)
		select {
		case <-timer.C:
		case <-ctx.Done():
			timer.Stop()
			return
		case <-s.closing:
			timer.Stop()
			return
		}
	}
}

// consume declares the group's topology on a new channel and reads it until
// it closes (an error) or the subscription is told to stop (nil). It calls
// consuming once the broker accepted the consumer.
func (s *Subscriber) consume(ctx context.Context, topic string, out chan<- *message.Message, consuming func()) error {
	conn, err := s.conn.get(ctx)
	if err != nil {
		return err
	}
	ch, err := conn.Channel()
	if err != nil {
		return fmt.Errorf("open channel: %w", err)
	}
	defer ch.Close()
	if err := declareGroup(ch, topic, s.group, s.cfg.QueueArgs); err != nil {
		return err
	}
	if err := ch.Qos(s.cfg.Prefetch, 0, false); err != nil {
		return fmt.Errorf("set prefetch: %w", err)
	}
	queue := QueueName(topic, s.group)
	deliveries, err := ch.Consume(queue, "", false, false, false, false, nil)
	if err != nil {
		return fmt.Errorf("consume queue %q: %w", queue, err)
	}
	consuming()
	// Up to Concurrency messages are out at once; each one in flight holds
	// a slot until its consumer acks or nacks it. The acker sends the
	// settlements; the deferred calls wait for every handler, then for the
	// acker's last writes, then close the channel.
	acks := newAcker(ch, s.settle)
	defer acks.stop()
	slots := make(chan struct{}, s.cfg.Concurrency)
	var inFlight sync.WaitGroup
	defer inFlight.Wait()
	for {
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
			return nil
		case <-s.closing:
			return nil
		}
		select {
		case d, ok := <-deliveries:
			if !ok {
				return errChannelClosed
			}
			acks.track(d.DeliveryTag)
			msg, cancel, handed := s.handOut(ctx, d, out)
			if !handed {
				acks.nack(d.DeliveryTag)
				return nil
			}
			inFlight.Add(1)
			go func() {
				defer inFlight.Done()
				s.await(ctx, acks, d.DeliveryTag, msg, cancel)
				<-slots
			}()
		case <-ctx.Done():
			return nil
		case <-s.closing:
			return nil
		}
	}
}

// handOut hands one delivery to the consumer, with a context that lives
// until await cancels it. It reports false if the subscription stopped
// first: the caller then nacks the delivery.
func (s *Subscriber) handOut(ctx context.Context, d amqp.Delivery, out chan<- *message.Message) (*message.Message, context.CancelFunc, bool) {
	msg := unmarshal(d)
	if s.cfg.OnDelivery != nil {
		s.cfg.OnDelivery(d, msg)
	}
	msgCtx, cancel := context.WithCancel(ctx)
	msg.SetContext(msgCtx)
	select {
	case out <- msg:
		return msg, cancel, true
	case <-ctx.Done():
	case <-s.closing:
	}
	cancel()
	return nil, nil, false
}

// await settles a handed-out delivery through acks once the consumer acks
// or nacks it; if the subscription stops first, it is nacked (and
// requeued), unless the consumer had acked it: select picks at random
// among ready cases, so an ack that came with the stop is checked again.
func (s *Subscriber) await(ctx context.Context, acks *acker, tag uint64, msg *message.Message, cancel context.CancelFunc) {
	defer cancel()
	select {
	case <-msg.Acked():
		acks.ack(tag)
		return
	case <-msg.Nacked():
	case <-ctx.Done():
	case <-s.closing:
	}
	select {
	case <-msg.Acked():
		acks.ack(tag)
	default:
		acks.nack(tag)
	}
}

// settle logs an ack or nack the broker did not get; the broker then
// redelivers the message when the channel ends.
func (s *Subscriber) settle(err error) {
	if err != nil {
		s.logger.Warn("amqp ack/nack not sent, the message will be redelivered", "err", err)
	}
}

// Close stops the subscriptions and waits for them; the broker requeues the
// messages they had not acked. Close is safe to call more than once.
func (s *Subscriber) Close() error {
	var err error
	s.closeOnce.Do(func() {
		s.mu.Lock()
		s.closed = true
		close(s.closing)
		s.mu.Unlock()
		s.wg.Wait()
		if s.ownsConn {
			err = s.secrets.Error(s.conn.close())
		}
	})
	return err
}

var (
	_ message.Subscriber           = (*Subscriber)(nil)
	_ message.SubscribeInitializer = (*Subscriber)(nil)
)
