package events_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/b2131a45/eventkit/events"
)

// OrderCreated is version 2: Total became cents.
type OrderCreated struct {
	OrderID    string `json:"order_id"`
	TotalCents int64  `json:"total_cents"`
}

func (e OrderCreated) PartitionKey() string { return e.OrderID }

type StockReserved struct {
	OrderID string `json:"order_id"`
}

func upcastV1(old []byte) ([]byte, error) {
	var v1 struct {
		OrderID string  `json:"order_id"`
		Total   float64 `json:"total"`
	}
	if err := json.Unmarshal(old, &v1); err != nil {
		return nil, err
	}
	return json.Marshal(OrderCreated{OrderID: v1.OrderID, TotalCents: int64(v1.Total*100 + 0.5)})
}

func newRegistry(t *testing.T) *events.Registry {
	t.Helper()
	reg := events.NewRegistry()
	require.NoError(t, events.Register[OrderCreated](reg, "orders.order_created", events.Version(2), events.Upcast(1, upcastV1)))
	require.NoError(t, events.Register[StockReserved](reg, "inventory.stock_reserved"))
	return reg
}

func TestNewMessageStampsEnvelope(t *testing.T) {
	t.Parallel()
	reg := newRegistry(t)
	before := time.Now().UTC()
	msg, err := reg.NewMessage(context.Background(), OrderCreated{OrderID: "o-1", TotalCents: 1250}, "orders")
	require.NoError(t, err)

	env, err := events.EnvelopeFromMessage(msg)
	require.NoError(t, err)
	id, err := uuid.Parse(env.ID)
	require.NoError(t, err)
	assert.Equal(t, uuid.Version(7), id.Version())
	assert.Equal(t, msg.UUID, env.ID)
	assert.Equal(t, "orders.order_created", env.Name)
	assert.Equal(t, 2, env.Version)
	assert.Equal(t, "orders", env.Source)
	assert.Equal(t, "o-1", env.PartitionKey)
	assert.Equal(t, env.ID, env.CorrelationID, "a new conversation is correlated by the event's own id")
	assert.Empty(t, env.CausationID)
	assert.Equal(t, "application/json", env.ContentType)
	assert.False(t, env.OccurredAt.Before(before.Truncate(time.Microsecond)))
	assert.Equal(t, time.UTC, env.OccurredAt.Location())
	assert.True(t, strings.HasSuffix(msg.Metadata.Get(events.KeyOccurredAt), "Z"))
	assert.JSONEq(t, `{"order_id":"o-1","total_cents":1250}`, string(msg.Payload))
}

func TestCorrelationAndCausation(t *testing.T) {
	t.Parallel()
	reg := newRegistry(t)

	first, err := reg.NewMessage(events.WithCorrelationID(context.Background(), "req-42"), OrderCreated{OrderID: "o"}, "orders")
	require.NoError(t, err)
	incoming, err := events.EnvelopeFromMessage(first)
	require.NoError(t, err)
	require.Equal(t, "req-42", incoming.CorrelationID)

	ctx := events.ContextWithEnvelope(context.Background(), incoming)
	second, err := reg.NewMessage(ctx, StockReserved{OrderID: "o"}, "inventory")
	require.NoError(t, err)
	env, err := events.EnvelopeFromMessage(second)
	require.NoError(t, err)
	assert.Equal(t, "req-42", env.CorrelationID)
	assert.Equal(t, incoming.ID, env.CausationID)
	assert.NotEqual(t, incoming.ID, env.ID)

	t.Run("explicit correlation id wins over the handled message", func(t *testing.T) {
		msg, err := reg.NewMessage(events.WithCorrelationID(ctx, "other"), StockReserved{}, "")
		require.NoError(t, err)
		assert.Equal(t, "other", msg.Metadata.Get(events.KeyCorrelationID))
		assert.Equal(t, incoming.ID, msg.Metadata.Get(events.KeyCausationID))
	})
}

func TestDecodeUpcastsOldVersions(t *testing.T) {
	t.Parallel()
	reg := newRegistry(t)
	msg := message.NewMessage("id-1", []byte(`{"order_id":"o-9","total":12.5}`))
	msg.Metadata.Set(events.KeyName, "orders.order_created")
	msg.Metadata.Set(events.KeyVersion, "1")

	env, v, err := reg.Decode(msg)
	require.NoError(t, err)
	assert.Equal(t, 1, env.Version)
	assert.Equal(t, &OrderCreated{OrderID: "o-9", TotalCents: 1250}, v)
}

func TestDecodeErrorsArePermanent(t *testing.T) {
	t.Parallel()
	reg := newRegistry(t)
	msg := func(name, version, payload string) *message.Message {
		m := message.NewMessage("id", []byte(payload))
		if name != "" {
			m.Metadata.Set(events.KeyName, name)
		}
		if version != "" {
			m.Metadata.Set(events.KeyVersion, version)
		}
		return m
	}
	tests := []struct {
		name string
		msg  *message.Message
		is   error
	}{
		{"unknown name", msg("orders.nope", "1", `{}`), events.ErrUnknownEvent},
		{"version from the future", msg("orders.order_created", "3", `{}`), events.ErrUnsupportedVersion},
		{"corrupt json", msg("orders.order_created", "2", `{"order_id":`), nil},
		{"wrong json type", msg("orders.order_created", "2", `{"order_id":7}`), nil},
		{"missing name", msg("", "1", `{}`), nil},
		{"version not a number", msg("orders.order_created", "two", `{}`), nil},
		{"version zero", msg("orders.order_created", "0", `{}`), nil},
		{"upcaster fails", msg("orders.order_created", "1", `[]`), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := reg.Decode(tt.msg)
			require.Error(t, err)
			assert.True(t, events.IsPermanent(err), "%v must be permanent", err)
			if tt.is != nil {
				assert.ErrorIs(t, err, tt.is)
			} else {
				var de *events.DecodeError
				assert.ErrorAs(t, err, &de)
			}
		})
	}

	t.Run("bad occurred_at", func(t *testing.T) {
		m := msg("inventory.stock_reserved", "1", `{}`)
		m.Metadata.Set(events.KeyOccurredAt, "yesterday")
		_, _, err := reg.Decode(m)
		var de *events.DecodeError
		require.ErrorAs(t, err, &de)
		assert.Equal(t, events.KeyOccurredAt, de.Header)
	})
	t.Run("wrong content type", func(t *testing.T) {
		m := msg("inventory.stock_reserved", "1", `{}`)
		m.Metadata.Set(events.KeyContentType, "application/protobuf")
		_, _, err := reg.Decode(m)
		assert.True(t, events.IsPermanent(err))
	})
	t.Run("no upcaster path", func(t *testing.T) {
		r := events.NewRegistry()
		require.NoError(t, events.Register[StockReserved](r, "x", events.Version(3), events.Upcast(2, func(b []byte) ([]byte, error) { return b, nil })))
		_, _, err := r.Decode(msg("x", "1", `{}`))
		assert.ErrorIs(t, err, events.ErrUnsupportedVersion)
	})
	t.Run("panicking upcaster", func(t *testing.T) {
		r := events.NewRegistry()
		require.NoError(t, events.Register[StockReserved](r, "x", events.Version(2), events.Upcast(1, func([]byte) ([]byte, error) { panic("boom") })))
		_, _, err := r.Decode(msg("x", "1", `{}`))
		assert.True(t, events.IsPermanent(err))
		assert.ErrorContains(t, err, "boom")
	})
	t.Run("payload too large", func(t *testing.T) {
		r := events.NewRegistryWithConfig(events.RegistryConfig{MaxPayloadBytes: 16})
		require.NoError(t, events.Register[StockReserved](r, "x"))
		_, _, err := r.Decode(msg("x", "1", `{"order_id":"0123456789"}`))
		assert.ErrorIs(t, err, events.ErrPayloadTooLarge)
		assert.True(t, events.IsPermanent(err))
	})
	t.Run("other errors are not permanent", func(t *testing.T) {
		assert.False(t, events.IsPermanent(errors.New("connection refused")))
		assert.False(t, events.IsPermanent(nil))
		assert.False(t, events.IsPermanent(events.ErrNotRegistered))
	})
}

func TestRegisterRejectsBadRegistrations(t *testing.T) {
	t.Parallel()
	reg := newRegistry(t)
	tests := []struct {
		name string
		err  error
	}{
		{"duplicate name", events.Register[struct{ A int }](reg, "orders.order_created")},
		{"duplicate type", events.Register[StockReserved](reg, "another.name")},
		{"pointer type", events.Register[*StockReserved](events.NewRegistry(), "p")},
		{"invalid name", events.Register[StockReserved](events.NewRegistry(), "bad name; DROP TABLE")},
		{"empty name", events.Register[StockReserved](events.NewRegistry(), "")},
		{"version zero", events.Register[StockReserved](events.NewRegistry(), "v", events.Version(0))},
		{"upcaster at current version", events.Register[StockReserved](events.NewRegistry(), "v", events.Version(2), events.Upcast(2, func(b []byte) ([]byte, error) { return b, nil }))},
		{"nil upcaster", events.Register[StockReserved](events.NewRegistry(), "v", events.Version(2), events.Upcast(1, nil))},
		{"protobuf codec on a non-proto type", events.Register[StockReserved](events.NewRegistry(), "v", events.WithCodec(events.Protobuf))},
	}
	for _, tt := range tests {
		assert.Error(t, tt.err, tt.name)
	}
	_, err := reg.NewMessage(context.Background(), struct{ B int }{}, "")
	assert.ErrorIs(t, err, events.ErrNotRegistered)
	_, err = reg.NewMessage(context.Background(), (*StockReserved)(nil), "")
	assert.ErrorIs(t, err, events.ErrNotRegistered)
	assert.Equal(t, []string{"inventory.stock_reserved", "orders.order_created"}, reg.Names())
}

func TestProtobufCodec(t *testing.T) {
	t.Parallel()
	reg := events.NewRegistry()
	require.NoError(t, events.Register[wrapperspb.StringValue](reg, "test.string", events.WithCodec(events.Protobuf)))

	msg, err := reg.NewMessage(context.Background(), wrapperspb.String("hello"), "")
	require.NoError(t, err)
	assert.Equal(t, "application/protobuf", msg.Metadata.Get(events.KeyContentType))

	_, v, err := reg.Decode(msg)
	require.NoError(t, err)
	assert.Equal(t, "hello", v.(*wrapperspb.StringValue).GetValue())

	msg.Payload = []byte{0xff, 0xff, 0xff}
	_, _, err = reg.Decode(msg)
	assert.True(t, events.IsPermanent(err))
}

func TestMarshalerForStockWatermill(t *testing.T) {
	t.Parallel()
	reg := newRegistry(t)
	m := reg.Marshaler()
	msg, err := m.Marshal(&StockReserved{OrderID: "o"})
	require.NoError(t, err)
	assert.Equal(t, "inventory.stock_reserved", m.NameFromMessage(msg))
	assert.Equal(t, "inventory.stock_reserved", m.Name(StockReserved{}))
	var got StockReserved
	require.NoError(t, m.Unmarshal(msg, &got))
	assert.Equal(t, "o", got.OrderID)

	var wrong OrderCreated
	assert.True(t, events.IsPermanent(m.Unmarshal(msg, &wrong)))
	assert.NotEqual(t, "inventory.stock_reserved", m.Name(struct{ C int }{}))
}

func TestEnvelopeFromContext(t *testing.T) {
	t.Parallel()
	_, ok := events.EnvelopeFromContext(context.Background())
	assert.False(t, ok)
	env := events.Envelope{ID: "e", Name: "n", Version: 1}
	got, ok := events.EnvelopeFromContext(events.ContextWithEnvelope(context.Background(), env))
	assert.True(t, ok)
	assert.Equal(t, env, got)
	assert.Equal(t, "e", events.CorrelationIDFromContext(events.ContextWithEnvelope(context.Background(), env)))
}
