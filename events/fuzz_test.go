package events_test

import (
	"bytes"
	"errors"
	"maps"
	"testing"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/b2131a45/eventkit/events"
)

// FuzzDecode feeds arbitrary envelope headers and payloads to the registry:
// decoding must never panic, and every failure must be permanent.
func FuzzDecode(f *testing.F) {
	f.Add("orders.order_created", "2", "2026-01-02T03:04:05.123456789Z", "application/json", []byte(`{"order_id":"o","total_cents":1}`))
	f.Add("orders.order_created", "1", "", "", []byte(`{"order_id":"o","total":1.5}`))
	f.Add("orders.order_created", "1", "", "", []byte(`{"total":"x"}`))
	f.Add("orders.order_created", "99", "", "", []byte(`{}`))
	f.Add("unknown", "1", "", "", []byte(`{}`))
	f.Add("", "", "", "", []byte(nil))
	f.Add("inventory.stock_reserved", "-1", "not a time", "text/plain", []byte("\xff\xfe"))
	f.Fuzz(func(t *testing.T, name, version, occurred, contentType string, payload []byte) {
		reg := events.NewRegistry()
		if err := events.Register[OrderCreated](reg, "orders.order_created", events.Version(2), events.Upcast(1, upcastV1)); err != nil {
			t.Fatal(err)
		}
		if err := events.Register[StockReserved](reg, "inventory.stock_reserved"); err != nil {
			t.Fatal(err)
		}
		msg := message.NewMessage("id", payload)
		for k, v := range map[string]string{events.KeyName: name, events.KeyVersion: version, events.KeyOccurredAt: occurred, events.KeyContentType: contentType} {
			if v != "" {
				msg.Metadata.Set(k, v)
			}
		}
		env, v, err := reg.Decode(msg)
		if err != nil {
			if !events.IsPermanent(err) {
				t.Fatalf("decode error is not permanent: %v", err)
			}
			return
		}
		if v == nil || env.Name != name || env.Version < 1 {
			t.Fatalf("decoded %v with envelope %+v from name %q", v, env, name)
		}
	})
}

// FuzzUpcastChain runs chains of upcasters over arbitrary payloads.
func FuzzUpcastChain(f *testing.F) {
	f.Add(uint8(3), uint8(1), []byte(`{"n":1}`))
	f.Add(uint8(1), uint8(1), []byte(`{}`))
	f.Add(uint8(5), uint8(9), []byte(`[`))
	f.Fuzz(func(t *testing.T, current, from uint8, payload []byte) {
		cur := int(current%8) + 1
		reg := events.NewRegistry()
		opts := []events.Option{events.Version(cur)}
		for v := 1; v < cur; v++ {
			opts = append(opts, events.Upcast(v, func(b []byte) ([]byte, error) {
				if len(b) > 0 && b[0] == '!' {
					panic("upcaster bug")
				}
				return append([]byte(nil), b...), nil
			}))
		}
		if err := events.Register[StockReserved](reg, "x", opts...); err != nil {
			t.Fatal(err)
		}
		msg := message.NewMessage("id", payload)
		msg.Metadata.Set(events.KeyName, "x")
		msg.Metadata.Set(events.KeyVersion, string(rune('0'+int(from%10))))
		if _, _, err := reg.Decode(msg); err != nil && !events.IsPermanent(err) {
			t.Fatalf("not permanent: %v", err)
		}
	})
}

// FuzzCanonicalize feeds Canonicalize and Decode hostile CloudEvents: never
// a panic, and an error is always a permanent *DecodeError that leaves the
// message as it was.
func FuzzCanonicalize(f *testing.F) {
	f.Add("application/cloudevents+json", "", "", []byte(`{"specversion":"1.0","id":"1","type":"orders.order_created","source":"s","data":{"order_id":"o"}}`))
	f.Add("application/cloudevents+json; charset=utf-8", "", "", []byte(`{"specversion":"1.0","data_base64":"AA=="}`))
	f.Add("", "ce_type", "orders.order_created", []byte(`{}`))
	f.Add("", "cloudEvents:specversion", "0.3", []byte(`{}`))
	f.Add("application/cloudevents-batch+json", "", "", []byte(`[]`))
	f.Add("application/cloudevents+json", "", "", []byte(`{"specversion":"1.0","time":{"a":1}}`))
	f.Fuzz(func(t *testing.T, contentType, key, value string, payload []byte) {
		reg := events.NewRegistry()
		if err := events.Register[OrderCreated](reg, "orders.order_created"); err != nil {
			t.Fatal(err)
		}
		msg := message.NewMessage("", payload)
		if contentType != "" {
			msg.Metadata.Set(events.KeyContentType, contentType)
		}
		if key != "" {
			msg.Metadata.Set(key, value)
		}
		before := maps.Clone(msg.Metadata)
		if err := events.Canonicalize(msg); err != nil {
			var de *events.DecodeError
			if !errors.As(err, &de) || !events.IsPermanent(err) {
				t.Fatalf("not a permanent DecodeError: %v", err)
			}
			if !maps.Equal(before, msg.Metadata) || !bytes.Equal(payload, msg.Payload) {
				t.Fatal("a failed Canonicalize changed the message")
			}
		}
		if _, _, err := reg.Decode(msg); err != nil && !events.IsPermanent(err) {
			t.Fatalf("decode error is not permanent: %v", err)
		}
	})
}
