package events_test

import (
	"bytes"
	"errors"
	"maps"
	"strings"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/b2131a45/eventkit/events"
)

func TestParseTime(t *testing.T) {
	t.Parallel()
	want := time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)
	for in, at := range map[string]time.Time{
		"2026-03-04T05:06:07Z":           want,
		"2026-03-04T06:06:07+01:00":      want,
		"2026-03-04T05:06:07.123456789Z": want.Add(123456789),
		"1772600767":                     want,
		"1772600767000":                  want,
		"1772600767000000":               want,
		"1772600767000000000":            want,
		"1772600767123":                  want.Add(123 * time.Millisecond),
		"2026-03-04T05:06:07.5-00:00":    want.Add(500 * time.Millisecond),
		"0":                              time.Unix(0, 0).UTC(),
	} {
		got, err := events.ParseTime(in)
		if err != nil || !got.Equal(at) || got.Location() != time.UTC {
			t.Errorf("ParseTime(%q) = %v, %v; want %v", in, got, err, at)
		}
	}
	for _, bad := range []string{"", "yesterday", "2026-03-04", "12.5", "1e9", "99999999999999999999", "--1"} {
		if _, err := events.ParseTime(bad); err == nil {
			t.Errorf("ParseTime(%q) accepted", bad)
		}
	}
}

// TestCanonicalizeBinary reads CloudEvents attributes under every binding's
// prefix, in any case, without overwriting eventkit keys, keeping unknown
// attributes as ce_ keys.
func TestCanonicalizeBinary(t *testing.T) {
	t.Parallel()
	for _, prefix := range []string{"ce_", "ce-", "cloudEvents:", "cloudEvents_", "CE_", "CloudEvents:"} {
		msg := message.NewMessage("", []byte(`{}`))
		msg.Metadata = message.Metadata{
			prefix + "specversion":   "1.0",
			prefix + "id":            "id-1",
			prefix + "type":          "orders.order_created",
			prefix + "source":        "node",
			prefix + "time":          "2026-03-04T05:06:07Z",
			prefix + "correlationid": "corr",
			prefix + "causationid":   "cause",
			prefix + "eventversion":  "3",
			prefix + "partitionkey":  "order-1",
			prefix + "traceparent":   "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
			prefix + "subject":       "order/1",
			prefix + "tenant":        "acme",
			"unrelated":              "kept",
		}
		if err := events.Canonicalize(msg); err != nil {
			t.Fatalf("%s: %v", prefix, err)
		}
		want := message.Metadata{
			events.KeyEventID: "id-1", events.KeyName: "orders.order_created", events.KeySource: "node",
			events.KeyOccurredAt: "2026-03-04T05:06:07Z", events.KeyCorrelationID: "corr", events.KeyCausationID: "cause",
			events.KeyVersion: "3", events.KeyPartitionKey: "order-1",
			events.KeyTraceParent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
			"ce_subject":          "order/1", "ce_tenant": "acme", "unrelated": "kept",
		}
		if !maps.Equal(msg.Metadata, want) {
			t.Errorf("%s: metadata %v,\nwant %v", prefix, msg.Metadata, want)
		}
		if msg.UUID != "id-1" {
			t.Errorf("%s: UUID %q", prefix, msg.UUID)
		}
	}

	msg := message.NewMessage("uuid", nil)
	msg.Metadata = message.Metadata{events.KeyName: "mine", "ce_type": "theirs", "ce_id": "ce-id"}
	if err := events.Canonicalize(msg); err != nil {
		t.Fatal(err)
	}
	if msg.Metadata[events.KeyName] != "mine" || msg.Metadata[events.KeyEventID] != "ce-id" || msg.UUID != "uuid" {
		t.Errorf("eventkit keys must win: %v %q", msg.Metadata, msg.UUID)
	}

	bad := message.NewMessage("", nil)
	bad.Metadata = message.Metadata{"ce_specversion": "0.3", "ce_id": "x", "ce_type": "t"}
	var de *events.DecodeError
	if err := events.Canonicalize(bad); !errors.As(err, &de) || !strings.Contains(err.Error(), "0.3") {
		t.Errorf("specversion 0.3: %v", err)
	}
	if bad.Metadata["ce_id"] != "x" {
		t.Error("a message that fails is left as it was")
	}
}

func TestCanonicalizeStructured(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, doc   string
		payload     string
		contentType string
	}{
		{"json data", `{"specversion":"1.0","id":"1","type":"t","source":"s","datacontenttype":"application/json","data":{"a":[1,2]}}`, `{"a":[1,2]}`, "application/json"},
		{"no datacontenttype", `{"specversion":"1.0","id":"1","type":"t","source":"s","data":{"a":1}}`, `{"a":1}`, ""},
		{"base64", `{"specversion":"1.0","id":"1","type":"t","source":"s","datacontenttype":"application/protobuf","data_base64":"CgNhYmM="}`, "\n\x03abc", "application/protobuf"},
		{"text", `{"specversion":"1.0","id":"1","type":"t","source":"s","datacontenttype":"text/plain","data":"héllo"}`, "héllo", "text/plain"},
		{"json string", `{"specversion":"1.0","id":"1","type":"t","source":"s","datacontenttype":"application/json","data":"x"}`, `"x"`, "application/json"},
		{"no data", `{"specversion":"1.0","id":"1","type":"t","source":"s"}`, "", ""},
		{"null data", `{"specversion":"1.0","id":"1","type":"t","source":"s","data":null}`, "", ""},
	}
	for _, c := range cases {
		msg := message.NewMessage("", []byte(c.doc))
		msg.Metadata.Set(events.KeyContentType, "Application/CloudEvents+JSON; charset=utf-8")
		if err := events.Canonicalize(msg); err != nil {
			t.Errorf("%s: %v", c.name, err)
			continue
		}
		if string(msg.Payload) != c.payload || msg.Metadata[events.KeyContentType] != c.contentType ||
			msg.UUID != "1" || msg.Metadata[events.KeyName] != "t" || msg.Metadata[events.KeySource] != "s" {
			t.Errorf("%s: payload %q, metadata %v, UUID %q", c.name, msg.Payload, msg.Metadata, msg.UUID)
		}
	}
	for name, doc := range map[string]string{
		"not JSON":         `{"specversion":`,
		"array":            `[1]`,
		"string":           `"x"`,
		"no specversion":   `{"id":"1","type":"t"}`,
		"specversion 0.3":  `{"specversion":"0.3","id":"1","type":"t"}`,
		"both data":        `{"specversion":"1.0","id":"1","type":"t","data":1,"data_base64":"AA=="}`,
		"bad base64":       `{"specversion":"1.0","id":"1","type":"t","data_base64":"%%%"}`,
		"object attribute": `{"specversion":"1.0","id":"1","type":"t","tenant":{"a":1}}`,
		"trailing":         `{"specversion":"1.0","id":"1","type":"t"} {}`,
		"invalid UTF-8":    "{\"specversion\":\"1.0\",\"id\":\"\xff\"}",
		"empty":            ``,
	} {
		msg := message.NewMessage("", []byte(doc))
		msg.Metadata.Set(events.KeyContentType, events.ContentTypeCloudEvents)
		err := events.Canonicalize(msg)
		var de *events.DecodeError
		if !errors.As(err, &de) || !events.IsPermanent(err) || !strings.Contains(err.Error(), "structured CloudEvent") {
			t.Errorf("%s: %v", name, err)
		}
		if string(msg.Payload) != doc || msg.Metadata[events.KeyContentType] != events.ContentTypeCloudEvents {
			t.Errorf("%s: message changed", name)
		}
	}
	batch := message.NewMessage("", []byte(`[]`))
	batch.Metadata.Set(events.KeyContentType, events.ContentTypeCloudEventsBatch)
	if err := events.Canonicalize(batch); err == nil || !strings.Contains(err.Error(), "batch") {
		t.Errorf("batch: %v", err)
	}
}

// TestCloudEventRoundTrip: CloudEventOf then MarshalStructured, read back by
// Canonicalize, gives the message back.
func TestCloudEventRoundTrip(t *testing.T) {
	t.Parallel()
	for _, payload := range [][]byte{[]byte(`{"order_id":"o-1"}`), {0x00, 0xff, 0x01}, nil} {
		msg := message.NewMessage("id-1", payload)
		msg.Metadata = message.Metadata{
			events.KeyEventID: "id-1", events.KeyName: "orders.order_created", events.KeyVersion: "2",
			events.KeyOccurredAt: "2026-01-02T03:04:05.123456789Z", events.KeyCorrelationID: "c", events.KeyCausationID: "k",
			events.KeySource: "orders", events.KeyPartitionKey: "o-1", events.KeyContentType: "application/json",
			"ce_subject": "s", "dlq_reason": "decode",
		}
		ce := events.CloudEventOf(msg)
		if ce.Headers["dlq_reason"] != "decode" || len(ce.Headers) != 1 {
			t.Errorf("headers %v: only non-CloudEvents metadata", ce.Headers)
		}
		if ce.Attributes["specversion"] != "1.0" || ce.Attributes["subject"] != "s" || ce.Attributes["eventversion"] != "2" {
			t.Errorf("attributes %v", ce.Attributes)
		}
		doc, err := ce.MarshalStructured()
		if err != nil {
			t.Fatal(err)
		}
		back := message.NewMessage("", doc)
		back.Metadata.Set(events.KeyContentType, events.ContentTypeCloudEvents)
		back.Metadata.Set("dlq_reason", "decode")
		if err := events.Canonicalize(back); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(back.Payload, payload) || !maps.Equal(back.Metadata, msg.Metadata) || back.UUID != "id-1" {
			t.Errorf("round trip of %q: %q %v", payload, back.Payload, back.Metadata)
		}
	}
	anon := events.CloudEventOf(message.NewMessage("u", nil))
	if anon.Attributes["id"] != "u" || anon.Attributes["source"] != events.CloudEventsSourceDefault {
		t.Errorf("id and source defaults: %v", anon.Attributes)
	}
}

// TestDecodeTolerance: media-type parameters and aliases, epoch
// timestamps and CloudEvents input decode; a missing id is a DecodeError
// wrapping ErrMissingHeader.
func TestDecodeTolerance(t *testing.T) {
	t.Parallel()
	reg := events.NewRegistry()
	if err := events.Register[OrderCreated](reg, "orders.order_created"); err != nil {
		t.Fatal(err)
	}
	for _, ct := range []string{"application/json; charset=utf-8", "Application/JSON", "text/json", "application/vnd.orders+json"} {
		msg := message.NewMessage("id", []byte(`{"order_id":"o"}`))
		msg.Metadata.Set(events.KeyName, "orders.order_created")
		msg.Metadata.Set(events.KeyContentType, ct)
		msg.Metadata.Set(events.KeyOccurredAt, "1772600767000")
		if _, _, err := reg.Decode(msg); err != nil {
			t.Errorf("%s: %v", ct, err)
		}
	}
	ce := message.NewMessage("", []byte(`{"specversion":"1.0","id":"x","type":"orders.order_created","source":"n","data":{"order_id":"o"}}`))
	ce.Metadata.Set(events.KeyContentType, "application/cloudevents+json")
	env, v, err := reg.Decode(ce)
	if err != nil || env.ID != "x" || v.(*OrderCreated).OrderID != "o" {
		t.Errorf("structured: %+v %v %v", env, v, err)
	}

	noID := message.NewMessage("", []byte(`{}`))
	noID.Metadata.Set(events.KeyName, "orders.order_created")
	_, _, err = reg.Decode(noID)
	var de *events.DecodeError
	if !errors.As(err, &de) || de.Header != events.KeyEventID || !errors.Is(err, events.ErrMissingHeader) || !events.IsPermanent(err) {
		t.Errorf("no id: %v", err)
	}
	noName := message.NewMessage("id", []byte(`{}`))
	_, _, err = reg.Decode(noName)
	if !errors.As(err, &de) || de.Header != events.KeyName || !strings.Contains(err.Error(), "names no event") {
		t.Errorf("no name: %v", err)
	}
	badVersion := message.NewMessage("id", []byte(`{}`))
	badVersion.Metadata.Set(events.KeyName, "orders.order_created")
	badVersion.Metadata.Set(events.KeyVersion, "two")
	if _, _, err = reg.Decode(badVersion); !errors.Is(err, events.ErrUnsupportedVersion) {
		t.Errorf("bad version: %v", err)
	}
}

func TestParseWire(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]events.Wire{"": events.WireEventkit, "eventkit": events.WireEventkit,
		"cloudevents": events.WireCloudEvents, "cloudevents-structured": events.WireCloudEventsStructured} {
		if got, err := events.ParseWire(in); err != nil || got != want {
			t.Errorf("ParseWire(%q) = %q, %v", in, got, err)
		}
	}
	if _, err := events.ParseWire("CloudEvents"); err == nil {
		t.Error("names are exact")
	}
}
