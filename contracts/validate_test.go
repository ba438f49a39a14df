package contracts_test

import (
	"context"
	"database/sql"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/pubsub/gochannel"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/b2131a45/eventkit/contracts"
	"github.com/b2131a45/eventkit/cqrs"
	"github.com/b2131a45/eventkit/events"
	"github.com/b2131a45/eventkit/forwarder"
	_ "github.com/b2131a45/eventkit/internal/dburl/sqlitedriver"
	"github.com/b2131a45/eventkit/middleware"
)

// Payment has what a Go value can get wrong against its own schema: an
// enum, a format, a bound.
type Payment struct {
	PaymentID string    `json:"payment_id" jsonschema:"minLength=1"`
	Status    string    `json:"status" jsonschema:"enum=paid,enum=failed"`
	Email     string    `json:"email,omitempty" jsonschema:"format=email"`
	At        time.Time `json:"at"`
}

func validatorRegistry(t testing.TB) *events.Registry {
	t.Helper()
	reg := sampleRegistry(t)
	require.NoError(t, events.Register[Payment](reg, "payments.payment_made"))
	require.NoError(t, events.Register[wrapperspb.StringValue](reg, "test.proto", events.WithCodec(events.Protobuf)))
	return reg
}

func newValidator(t testing.TB, reg *events.Registry, cfg contracts.ValidatorConfig) *contracts.Validator {
	t.Helper()
	v, err := contracts.NewValidator(reg, cfg)
	require.NoError(t, err)
	return v
}

func TestValidate(t *testing.T) {
	t.Parallel()
	v := newValidator(t, validatorRegistry(t), contracts.ValidatorConfig{})
	good := `{"order_id":"o-1","customer_email":"a@b.c","total_cents":1999,"items":[{"sku":"s-1","quantity":2}]}`
	require.NoError(t, v.Validate("orders.order_created", 2, []byte(good)))
	require.NoError(t, v.Validate("orders.order_created", 2, []byte(`{"order_id":"o-1","customer_email":"","total_cents":0,"items":null,"extra":true}`)),
		"null for a nil slice, unknown fields: as encoding/json writes and reads them")
	for _, c := range []struct {
		name, event, payload string
		says                 string
	}{
		{"a wrong type", "orders.order_created", `{"order_id":"o-1","customer_email":"a@b.c","total_cents":"19.99","items":[]}`, "at /total_cents: got string, want integer"},
		{"a missing field", "orders.order_created", `{"order_id":"o-1","total_cents":1,"items":[]}`, "at /: missing property 'customer_email'"},
		{"a nested field", "orders.order_created", `{"order_id":"o-1","customer_email":"a","total_cents":1,"items":[{"sku":7,"quantity":1}]}`, "at /items/0/sku: got number, want string"},
		{"an enum value", "payments.payment_made", `{"payment_id":"p","status":"lost","at":"2025-01-02T03:04:05Z"}`, "at /status: value must be one of 'paid', 'failed'"},
		{"a date-time", "payments.payment_made", `{"payment_id":"p","status":"paid","at":"yesterday"}`, "at /at: 'yesterday' is not valid date-time"},
		{"an email", "payments.payment_made", `{"payment_id":"p","status":"paid","email":"nobody","at":"2025-01-02T03:04:05Z"}`, "at /email: 'nobody' is not valid email"},
	} {
		version := 1
		if c.event == "orders.order_created" {
			version = 2
		}
		err := v.Validate(c.event, version, []byte(c.payload))
		var se *contracts.SchemaError
		require.ErrorAs(t, err, &se, c.name)
		assert.ErrorIs(t, err, contracts.ErrSchemaViolation)
		assert.Contains(t, err.Error(), "payload does not match its schema", c.name)
		assert.Contains(t, err.Error(), c.says, c.name)
		assert.True(t, events.IsPermanent(err), c.name)
		assert.Equal(t, middleware.ReasonSchema, middleware.ReasonOf(err), c.name)
		assert.Equal(t, middleware.ReasonSchema, middleware.ReasonOf(&middleware.RetryError{Err: err}), "wrapped: %s", c.name)
	}
	t.Run("what it cannot place passes, for decoding to report", func(t *testing.T) {
		assert.NoError(t, v.Validate("orders.order_created", 3, []byte(`{}`)), "a newer version")
		assert.NoError(t, v.Validate("orders.order_created", 1, []byte(`{}`)), "an older version with no schema")
		assert.NoError(t, v.Validate("nobody.knows", 1, []byte(`{}`)), "an unknown event")
		assert.NoError(t, v.Validate("orders.order_created", 2, []byte(`{not json`)), "not JSON")
		assert.NoError(t, v.Validate("test.proto", 1, []byte{0x0a, 0x01, 'x'}), "protobuf")
	})
}

func TestValidateMessage(t *testing.T) {
	t.Parallel()
	reg := validatorRegistry(t)
	v := newValidator(t, reg, contracts.ValidatorConfig{})
	msg, err := reg.NewMessage(context.Background(), OrderCreated{OrderID: "o-1"}, "orders")
	require.NoError(t, err)
	require.NoError(t, v.ValidateMessage(msg))

	bad := func(md map[string]string) *message.Message {
		m := message.NewMessage("e-1", []byte(`{"order_id":1}`))
		for k, val := range md {
			m.Metadata.Set(k, val)
		}
		return m
	}
	err = v.ValidateMessage(bad(map[string]string{events.KeyName: "orders.order_created", events.KeyVersion: "2"}))
	assert.ErrorContains(t, err, "orders.order_created v2")
	err = v.ValidateMessage(bad(map[string]string{"ce_type": "orders.order_created", "ce_id": "e-1", "ce_specversion": "1.0",
		"ce_source": "x", "ce_eventversion": "2"}))
	assert.ErrorContains(t, err, "orders.order_created v2", "a CloudEvents binary message")
	assert.NoError(t, v.ValidateMessage(bad(map[string]string{events.KeyName: "orders.order_created", events.KeyVersion: "2",
		events.KeyContentType: "application/protobuf"})), "not JSON")
	assert.NoError(t, v.ValidateMessage(bad(map[string]string{events.KeyName: "orders.order_created", events.KeyVersion: "x"})), "a bad version")
	assert.NoError(t, v.ValidateMessage(bad(nil)), "no name")
}

// TestValidateOlderVersions: with the snapshot's history, payloads of older
// versions are validated against the schema they were written with.
func TestValidateOlderVersions(t *testing.T) {
	t.Parallel()
	v1 := take(t, func(reg *events.Registry) {
		type Order struct {
			OrderID string  `json:"order_id"`
			Total   float64 `json:"total"`
		}
		events.MustRegister[Order](reg, ev)
	})
	reg := events.NewRegistry()
	type Order struct {
		OrderID    string `json:"order_id"`
		TotalCents int64  `json:"total_cents"`
	}
	events.MustRegister[Order](reg, ev, events.Version(2), events.Upcast(1, noop))
	v2, err := contracts.Take(reg)
	require.NoError(t, err)
	hist := contracts.Update(v1, v2)

	v := newValidator(t, reg, contracts.ValidatorConfig{Snapshot: hist})
	assert.NoError(t, v.Validate(ev, 1, []byte(`{"order_id":"o","total":19.99}`)))
	assert.ErrorContains(t, v.Validate(ev, 1, []byte(`{"order_id":"o","total":"19.99"}`)), "v1")
	assert.ErrorContains(t, v.Validate(ev, 2, []byte(`{"order_id":"o","total":19.99}`)), "missing property 'total_cents'")
}

// TestValidationOnPublish: the publisher option fails Publish and
// Outbox.Add with the *SchemaError, before anything leaves.
func TestValidationOnPublish(t *testing.T) {
	t.Parallel()
	reg := validatorRegistry(t)
	v := newValidator(t, reg, contracts.ValidatorConfig{})
	ctx := context.Background()
	bad := Payment{PaymentID: "p-1", Status: "lost", At: time.Now()}
	good := Payment{PaymentID: "p-2", Status: "paid", At: time.Now()}

	t.Run("bus", func(t *testing.T) {
		t.Parallel()
		pub := &recordingPublisher{}
		bus, err := cqrs.NewBus(pub, cqrs.BusConfig{Registry: reg, Validate: v.ValidateMessage})
		require.NoError(t, err)
		err = bus.Publish(ctx, good, bad)
		var se *contracts.SchemaError
		require.ErrorAs(t, err, &se)
		assert.Equal(t, "payments.payment_made", se.Event)
		assert.Contains(t, err.Error(), "cqrs: event 1: ")
		assert.Zero(t, pub.n, "nothing published")
		require.NoError(t, bus.Publish(ctx, good))
		assert.Equal(t, 1, pub.n)

		off, err := cqrs.NewBus(pub, cqrs.BusConfig{Registry: reg})
		require.NoError(t, err)
		require.NoError(t, off.Publish(ctx, bad), "off by default")
	})
	t.Run("outbox", func(t *testing.T) {
		t.Parallel()
		db, err := sql.Open("sqlite", "file:"+filepath.Join(t.TempDir(), "app.db")+"?_pragma=busy_timeout(5000)&_txlock=immediate")
		require.NoError(t, err)
		t.Cleanup(func() { _ = db.Close() })
		ob, err := forwarder.NewOutbox(db, forwarder.OutboxConfig{Registry: reg, Validate: v.ValidateMessage})
		require.NoError(t, err)
		require.NoError(t, ob.Setup(ctx))
		tx, err := db.BeginTx(ctx, nil)
		require.NoError(t, err)
		defer func() { _ = tx.Rollback() }()
		var se *contracts.SchemaError
		require.ErrorAs(t, ob.Add(ctx, tx, bad), &se)
		require.ErrorAs(t, ob.Bus(tx).Publish(ctx, bad), &se)
		require.NoError(t, ob.Add(ctx, tx, good))
		require.NoError(t, tx.Commit())
		stats, err := ob.Stats(ctx)
		require.NoError(t, err)
		assert.EqualValues(t, 1, stats.Pending)
	})
}

type recordingPublisher struct{ n int }

func (p *recordingPublisher) Publish(_ string, msgs ...*message.Message) error {
	p.n += len(msgs)
	return nil
}
func (p *recordingPublisher) Close() error { return nil }

// TestValidationOnConsume: below a PoisonQueue, the middleware dead-letters
// a payload that does not match its schema at once, with reason "schema",
// and the handler never sees it; a valid one is handled.
func TestValidationOnConsume(t *testing.T) {
	t.Parallel()
	reg := validatorRegistry(t)
	v := newValidator(t, reg, contracts.ValidatorConfig{})
	broker := gochannel.NewGoChannel(gochannel.Config{Persistent: true}, watermill.NopLogger{})
	defer broker.Close()
	router, err := message.NewRouter(message.RouterConfig{}, watermill.NopLogger{})
	require.NoError(t, err)
	pq, err := middleware.NewPoisonQueue(broker, middleware.PoisonQueueConfig{})
	require.NoError(t, err)
	retry, err := middleware.NewRetry(middleware.RetryConfig{MaxAttempts: 3, InitialInterval: time.Millisecond})
	require.NoError(t, err)
	router.AddMiddleware(pq.Middleware, retry.Middleware, v.Middleware)

	const topic = "orders.order_created"
	handled := make(chan string, 4)
	router.AddConsumerHandler("inventory.reserve-stock", topic, broker, func(msg *message.Message) error {
		handled <- msg.UUID
		return nil
	})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	dlq, err := broker.Subscribe(ctx, middleware.DeadLetterTopic(topic))
	require.NoError(t, err)
	done := make(chan error, 1)
	go func() { done <- router.Run(ctx) }()
	<-router.Running()

	good, err := reg.NewMessage(ctx, OrderCreated{OrderID: "o-1"}, "orders")
	require.NoError(t, err)
	bad := good.Copy()
	bad.UUID = "bad-1"
	bad.Metadata.Set(events.KeyEventID, "bad-1")
	bad.Payload = []byte(`{"order_id":"o-2","total_cents":"12"}`)
	require.NoError(t, broker.Publish(topic, bad, good))

	select {
	case dl := <-dlq:
		dl.Ack()
		assert.Equal(t, "bad-1", dl.UUID)
		assert.Equal(t, string(middleware.ReasonSchema), dl.Metadata.Get(middleware.KeyReason))
		assert.Equal(t, "1", dl.Metadata.Get(middleware.KeyAttempts), "a permanent error is not retried")
		assert.Contains(t, dl.Metadata.Get(middleware.KeyError), "at /total_cents: got string, want integer")
	case <-time.After(10 * time.Second):
		t.Fatal("no dead letter")
	}
	select {
	case id := <-handled:
		assert.Equal(t, good.UUID, id)
	case <-time.After(10 * time.Second):
		t.Fatal("the valid event was not handled")
	}
	assert.Empty(t, handled)
	cancel()
	require.NoError(t, <-done)
	assert.False(t, errors.Is(context.Canceled, contracts.ErrSchemaViolation))
}

func TestValidatorIsSafeForConcurrentUse(t *testing.T) {
	t.Parallel()
	v := newValidator(t, validatorRegistry(t), contracts.ValidatorConfig{})
	good := []byte(`{"order_id":"o-1","customer_email":"a@b.c","total_cents":1999,"items":[{"sku":"s-1","quantity":2}]}`)
	bad := []byte(`{"order_id":"o-1","customer_email":"a@b.c","total_cents":"x","items":[]}`)
	errs := make(chan error, 8)
	for i := 0; i < 8; i++ {
		go func() {
			for j := 0; j < 200; j++ {
				if err := v.Validate("orders.order_created", 2, good); err != nil {
					errs <- err
					return
				}
				if err := v.Validate("orders.order_created", 2, bad); err == nil {
					errs <- errors.New("a bad payload passed")
					return
				}
			}
			errs <- nil
		}()
	}
	for i := 0; i < 8; i++ {
		require.NoError(t, <-errs)
	}
}
