package main

import (
	"context"
	"log/slog"
	"strings"
	"sync/atomic"

	"github.com/ThreeDotsLabs/watermill"
	wmsql "github.com/ThreeDotsLabs/watermill-sql/v4/pkg/sql"
	wmforwarder "github.com/ThreeDotsLabs/watermill/components/forwarder"
	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/b2131a45/eventkit/forwarder"
)

// drainer starts relaying ob to the broker and returns how to stop it.
type drainer struct {
	label string
	start func(ctx context.Context, ob *forwarder.Outbox) (stop func(), err error)
	// done reports whether every row was confirmed and marked.
	done func(ctx context.Context, ob *forwarder.Outbox) (bool, error)
	// published counts the events of the publish calls the broker
	// confirmed whole: the bench asks done only once it reaches the
	// drain's events (asking all along put the bench's queries on the
	// database the drainer works on, in its measured time).
	published *atomic.Int64
}

// countingPublisher counts the messages of its successful publish calls.
type countingPublisher struct {
	message.Publisher
	n *atomic.Int64
}

func (p countingPublisher) Publish(topic string, msgs ...*message.Message) error {
	err := p.Publisher.Publish(topic, msgs...)
	if err == nil {
		p.n.Add(int64(len(msgs)))
	}
	return err
}

// eventkitDrainer runs a Relay with pub.
func (b *bench) eventkitDrainer(label string, pub func() (message.Publisher, error)) drainer {
	return b.eventkitDrainerWith(label, pub, false)
}

// eventkitDrainerWith is eventkitDrainer with OutboxConfig.DeletePublished
// set as given: the relay then deletes the rows it published.
func (b *bench) eventkitDrainerWith(label string, pub func() (message.Publisher, error), deletePublished bool) drainer {
	published := new(atomic.Int64)
	return drainer{
		label:     label,
		published: published,
		start: func(ctx context.Context, ob *forwarder.Outbox) (func(), error) {
			if deletePublished {
				var err error
				// The same table, another outbox value: the relay reads each
				// row's topic from the row.
				ob, err = forwarder.NewOutbox(b.db, forwarder.OutboxConfig{
					Dialect: forwarder.Postgres, Registry: b.reg, Source: "bench", Name: ob.Name(), DeletePublished: true,
				})
				if err != nil {
					return nil, err
				}
			}
			p, err := pub()
			if err != nil {
				return nil, err
			}
			relay, err := forwarder.NewRelay(ob, countingPublisher{p, published}, forwarder.RelayConfig{BatchSize: b.o.batch, Logger: slog.New(slog.DiscardHandler)})
			if err != nil {
				return nil, err
			}
			rctx, cancel := context.WithCancel(ctx)
			done := make(chan struct{})
			go func() {
				defer close(done)
				_ = relay.Run(rctx)
			}()
			return func() {
				cancel()
				<-done
				_ = p.Close()
			}, nil
		},
		done: func(ctx context.Context, ob *forwarder.Outbox) (bool, error) {
			// The first pending row, through the pending index. An EXISTS
			// over status = 0 was planned as a sequential scan (the
			// statistics of the just-filled table count every row
			// pending), reading every published row before the first
			// pending one: up to 2.5 ms of PostgreSQL's CPU per poll by
			// the end of a drain, charged to the relay.
			pending, err := ob.Pending(ctx, 1)
			return len(pending) == 0, err
		},
	}
}

// stockDrainer runs Watermill's forwarder over watermill-sql's default
// PostgreSQL schema (a subscriber of topic ob.Name()) with pub.
func (b *bench) stockDrainer(label string, pub func() (message.Publisher, error)) drainer {
	published := new(atomic.Int64)
	return drainer{
		label:     label,
		published: published,
		start: func(ctx context.Context, ob *forwarder.Outbox) (func(), error) {
			p, err := pub()
			if err != nil {
				return nil, err
			}
			logger := watermill.NopLogger{}
			sub, err := wmsql.NewSubscriber(wmsql.BeginnerFromStdSQL(b.db), wmsql.SubscriberConfig{
				ConsumerGroup:    "bench",
				SchemaAdapter:    wmsql.DefaultPostgreSQLSchema{},
				OffsetsAdapter:   wmsql.DefaultPostgreSQLOffsetsAdapter{},
				InitializeSchema: true,
			}, logger)
			if err != nil {
				return nil, err
			}
			fwd, err := wmforwarder.NewForwarder(sub, countingPublisher{p, published}, logger, wmforwarder.Config{ForwarderTopic: ob.Name(), AckWhenCannotUnwrap: true})
			if err != nil {
				return nil, err
			}
			done := make(chan struct{})
			go func() {
				defer close(done)
				_ = fwd.Run(ctx)
			}()
			return func() {
				_ = fwd.Close()
				<-done
				_ = sub.Close()
				_ = p.Close()
			}, nil
		},
		done: func(ctx context.Context, ob *forwarder.Outbox) (bool, error) {
			var acked, last int64
			err := b.db.QueryRowContext(ctx, `SELECT COALESCE((SELECT offset_acked FROM "watermill_offsets_`+ob.Name()+
				`" WHERE consumer_group = 'bench'), -1), (SELECT COALESCE(MAX("offset"), 0) FROM "`+ob.Table()+`")`).Scan(&acked, &last)
			if err != nil && strings.Contains(err.Error(), "does not exist") {
				return false, nil // the offsets table is created when the forwarder subscribes
			}
			return acked >= last, err
		},
	}
}
