package contracts

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/b2131a45/eventkit/events"
)

// AsyncAPIVersion is the AsyncAPI version of the documents AsyncAPI writes.
const AsyncAPIVersion = "3.0.0"

// EnvelopeTrait is the key of the message trait (components.messageTraits)
// that describes the envelope headers, shared by every message.
const EnvelopeTrait = "eventkit-envelope"

// Format is the encoding of an exported document.
type Format string

// Formats.
const (
	FormatJSON Format = "json"
	FormatYAML Format = "yaml"
)

// ExportConfig configures AsyncAPI and Export. The zero value of every field
// is its documented default.
type ExportConfig struct {
	// Title of the document (info.title). Defaults to "<Service> events",
	// or "eventkit events" for the whole wiring.
	Title string
	// Version of the document (info.version). Defaults to "1.0.0".
	Version string
	// Description (info.description). Defaults to none.
	Description string
	// Service, if set, limits the document to that service of the wiring:
	// its operations, and the channels and messages they use — the
	// document a service publishes. Defaults to "": every service and
	// every event.
	Service string
	// Format of Export. Defaults to FormatJSON.
	Format Format
}

// AsyncAPI returns the AsyncAPI 3.0 document of snap as a JSON value:
//
//   - a channel per topic (address = topic) with the messages published or
//     consumed on it; an event no service publishes or consumes gets the
//     channel of its name;
//   - a message per event version, payload in components.schemas (the
//     JSON Schema, its $defs as schemas of their own; for protobuf the
//     message in .proto syntax, schemaFormat
//     application/vnd.google.protobuf), older versions deprecated, and a
//     version known only from its upcaster without payload;
//   - per service a send operation for each event it publishes (the current
//     version) and a receive operation for each handler (every version the
//     upcasters accept), with x-eventkit-service and x-eventkit-handler;
//   - the envelope headers once, as the message trait EnvelopeTrait: the
//     eventkit headers and the CloudEvents binary-mode names (Kafka "ce_",
//     AMQP "cloudEvents:").
//
// It fails if cfg.Service is not in the wiring.
func AsyncAPI(snap *Snapshot, cfg ExportConfig) (map[string]any, error) {
	if snap == nil {
		return nil, errors.New("contracts: AsyncAPI of a nil snapshot")
	}
	services := snap.Services
	if cfg.Service != "" {
		services = nil
		for _, s := range snap.Services {
			if s.Name == cfg.Service {
				services = []Service{s}
			}
		}
		if services == nil {
			return nil, fmt.Errorf("contracts: service %q is not in the wiring (%s)", cfg.Service, serviceNames(snap.Services))
		}
	}
	if cfg.Title == "" {
		cfg.Title = "eventkit events"
		if cfg.Service != "" {
			cfg.Title = cfg.Service + " events"
		}
	}
	if cfg.Version == "" {
		cfg.Version = "1.0.0"
	}
	b := &asyncBuilder{snap: snap, schemas: map[string]any{}, messages: map[string]any{},
		channels: map[string]any{}, operations: map[string]any{}, keys: map[string]bool{}, chanKey: map[string]string{}}

	// Topics and the events on them.
	type use struct{ topic, event string }
	var uses []use
	wired := map[string]bool{}
	for _, s := range services {
		for _, p := range s.Publishes {
			uses = append(uses, use{p.Topic, p.Event})
			wired[p.Event] = true
		}
		for _, c := range s.Consumes {
			uses = append(uses, use{c.Topic, c.Event})
			wired[c.Event] = true
		}
	}
	if cfg.Service == "" {
		for _, ev := range snap.Events {
			if !wired[ev.Name] {
				uses = append(uses, use{ev.Name, ev.Name})
			}
		}
	}
	for _, u := range uses {
		ev, ok := snap.Event(u.event)
		if !ok {
			return nil, fmt.Errorf("contracts: the wiring names event %q, which the snapshot lacks", u.event)
		}
		if err := b.channel(u.topic, ev); err != nil {
			return nil, err
		}
	}
	for _, s := range services {
		for _, p := range s.Publishes {
			ev, _ := snap.Event(p.Event)
			ch := b.chanKey[p.Topic]
			b.operations[b.key(s.Name+".publish."+p.Event+topicSuffix(p.Topic, p.Event))] = map[string]any{
				"action":             "send",
				"title":              fmt.Sprintf("%s publishes %s", s.Name, p.Event),
				"summary":            fmt.Sprintf("%s publishes %s v%d to %s.", s.Name, p.Event, ev.Version, p.Topic),
				"channel":            ref("#/channels/" + ch),
				"messages":           []any{ref("#/channels/" + ch + "/messages/" + msgKey(ev.Name, ev.Version))},
				"tags":               []any{map[string]any{"name": s.Name}},
				"x-eventkit-service": s.Name,
			}
		}
		for _, c := range s.Consumes {
			ev, _ := snap.Event(c.Event)
			ch := b.chanKey[c.Topic]
			var msgs []any
			var vs []string
			for _, v := range accepted(ev) {
				msgs = append(msgs, ref("#/channels/"+ch+"/messages/"+msgKey(ev.Name, v)))
				vs = append(vs, "v"+strconv.Itoa(v))
			}
			b.operations[b.key(s.Name+"."+c.Handler+".consume."+c.Event+topicSuffix(c.Topic, c.Event))] = map[string]any{
				"action":             "receive",
				"title":              fmt.Sprintf("%s handles %s", c.Handler, c.Event),
				"summary":            fmt.Sprintf("Handler %s of %s consumes %s (%s) from %s.", c.Handler, s.Name, c.Event, strings.Join(vs, ", "), c.Topic),
				"channel":            ref("#/channels/" + ch),
				"messages":           msgs,
				"tags":               []any{map[string]any{"name": s.Name}},
				"x-eventkit-service": s.Name,
				"x-eventkit-handler": c.Handler,
			}
		}
	}
	info := map[string]any{"title": cfg.Title, "version": cfg.Version}
	if cfg.Description != "" {
		info["description"] = cfg.Description
	}
	doc := map[string]any{
		"asyncapi":           AsyncAPIVersion,
		"info":               info,
		"defaultContentType": "application/json",
		"channels":           b.channels,
		"operations":         b.operations,
		"components": map[string]any{
			"schemas":       b.schemas,
			"messages":      b.messages,
			"messageTraits": map[string]any{EnvelopeTrait: envelopeTrait()},
		},
	}
	return doc, nil
}

// Export writes the AsyncAPI document of snap (AsyncAPI) to w, as indented
// JSON or as YAML (cfg.Format). It is what `eventkit contracts export`
// calls.
func Export(w io.Writer, snap *Snapshot, cfg ExportConfig) error {
	doc, err := AsyncAPI(snap, cfg)
	if err != nil {
		return err
	}
	var out []byte
	switch cfg.Format {
	case "", FormatJSON:
		out, err = json.MarshalIndent(doc, "", "  ")
		out = append(out, '\n')
	case FormatYAML:
		out, err = yaml.Marshal(doc)
	default:
		return fmt.Errorf("contracts: unknown export format %q (json, yaml)", cfg.Format)
	}
	if err != nil {
		return fmt.Errorf("contracts: export: %w", err)
	}
	if _, err := w.Write(out); err != nil {
		return fmt.Errorf("contracts: export: %w", err)
	}
	return nil
}

type asyncBuilder struct {
	snap                                    *Snapshot
	schemas, messages, channels, operations map[string]any
	keys                                    map[string]bool   // operation keys taken
	chanKey                                 map[string]string // topic → channel key
}

var unsafeKeyChars = regexp.MustCompile(`[^A-Za-z0-9_.-]+`)

// componentKey makes s a key AsyncAPI accepts (^[\w\d.\-_]+$), which is
// also a JSON pointer token needing no escape.
func componentKey(s string) string { return unsafeKeyChars.ReplaceAllString(s, "_") }

func msgKey(event string, version int) string {
	return componentKey(event) + ".v" + strconv.Itoa(version)
}

func (b *asyncBuilder) key(s string) string {
	k := componentKey(s)
	for i := 2; b.keys[k]; i++ {
		k = componentKey(s) + "_" + strconv.Itoa(i)
	}
	b.keys[k] = true
	return k
}

func topicSuffix(topic, event string) string {
	if topic == event {
		return ""
	}
	return ".on." + topic
}

func ref(s string) map[string]any { return map[string]any{"$ref": s} }

// channel adds event ev's messages to the channel of topic.
func (b *asyncBuilder) channel(topic string, ev *Event) error {
	key, ok := b.chanKey[topic]
	if !ok {
		key = componentKey(topic)
		for i := 2; b.channels[key] != nil; i++ {
			key = componentKey(topic) + "_" + strconv.Itoa(i)
		}
		b.chanKey[topic] = key
		b.channels[key] = map[string]any{"address": topic, "title": topic, "messages": map[string]any{}}
	}
	msgs := b.channels[key].(map[string]any)["messages"].(map[string]any)
	for _, v := range versions(ev) {
		mk := msgKey(ev.Name, v)
		msgs[mk] = ref("#/components/messages/" + mk)
		if err := b.message(ev, v); err != nil {
			return err
		}
	}
	return nil
}

// versions are the versions of ev a document describes: every version with
// a recorded schema or an upcaster, and the current one.
func versions(ev *Event) []int {
	set := map[int]bool{ev.Version: true}
	for _, s := range ev.Schemas {
		set[s.Version] = true
	}
	for _, u := range ev.Upcasters {
		set[u] = true
	}
	var out []int
	for v := range set {
		out = append(out, v)
	}
	sort.Ints(out)
	return out
}

// accepted are the versions a consumer of ev decodes: the current one and
// each from which upcasters lead to it.
func accepted(ev *Event) []int {
	has := map[int]bool{}
	for _, u := range ev.Upcasters {
		has[u] = true
	}
	out := []int{ev.Version}
	for v := ev.Version - 1; v >= 1 && has[v]; v-- {
		out = append([]int{v}, out...)
	}
	return out
}

func (b *asyncBuilder) message(ev *Event, v int) error {
	mk := msgKey(ev.Name, v)
	if _, ok := b.messages[mk]; ok {
		return nil
	}
	var sch *Schema
	for i := range ev.Schemas {
		if ev.Schemas[i].Version == v {
			sch = &ev.Schemas[i] // the last recorded of that version
		}
	}
	m := map[string]any{
		"name":               ev.Name,
		"title":              fmt.Sprintf("%s v%d", ev.Name, v),
		"contentType":        ev.ContentType,
		"traits":             []any{ref("#/components/messageTraits/" + EnvelopeTrait)},
		"x-eventkit-event":   ev.Name,
		"x-eventkit-version": v,
	}
	switch {
	case v == ev.Version:
		m["summary"] = fmt.Sprintf("%s, current version %d (Go type %s).", ev.Name, v, ev.Type)
		m["x-eventkit-type"] = ev.Type
	default:
		m["deprecated"] = true
		m["summary"] = fmt.Sprintf("%s v%d: consumers upcast it to v%d on receipt.", ev.Name, v, ev.Version)
	}
	if sch == nil {
		m["description"] = fmt.Sprintf("Version %d is known from its upcaster; its schema is not in the snapshot.", v)
	} else {
		payload, err := b.payload(mk, *sch)
		if err != nil {
			return fmt.Errorf("contracts: %s v%d: %w", ev.Name, v, err)
		}
		m["payload"] = payload
	}
	b.messages[mk] = m
	return nil
}

// payload puts the schema in components.schemas under key, the JSON
// Schema's $defs beside it as key.<Name>, and returns the reference.
func (b *asyncBuilder) payload(key string, s Schema) (any, error) {
	if s.Protobuf != nil {
		text, version, err := protoText(s.Protobuf)
		if err != nil {
			return nil, err
		}
		b.schemas[key] = map[string]any{"schemaFormat": "application/vnd.google.protobuf;version=" + version, "schema": text}
		return ref("#/components/schemas/" + key), nil
	}
	var root any
	if err := json.Unmarshal(s.JSONSchema, &root); err != nil {
		return nil, err
	}
	m, ok := root.(map[string]any)
	if !ok {
		b.schemas[key] = root
		return ref("#/components/schemas/" + key), nil
	}
	renames := map[string]string{}
	defs, _ := m["$defs"].(map[string]any)
	for name := range defs {
		renames["#/$defs/"+name] = "#/components/schemas/" + key + "." + componentKey(name)
	}
	delete(m, "$defs")
	delete(m, "$schema")
	delete(m, "$id")
	b.schemas[key] = rewriteRefs(m, renames)
	for name, d := range defs {
		b.schemas[key+"."+componentKey(name)] = rewriteRefs(d, renames)
	}
	return ref("#/components/schemas/" + key), nil
}

func rewriteRefs(v any, renames map[string]string) any {
	switch x := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			if s, ok := e.(string); ok && k == "$ref" {
				if r, ok := renames[s]; ok {
					out[k] = r
					continue
				}
			}
			out[k] = rewriteRefs(e, renames)
		}
		return out
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = rewriteRefs(e, renames)
		}
		return out
	}
	return v
}

func serviceNames(ss []Service) string {
	if len(ss) == 0 {
		return "no services"
	}
	var n []string
	for _, s := range ss {
		n = append(n, s.Name)
	}
	return strings.Join(n, ", ")
}

// CloudEvents binary-mode header prefixes: transports/kafka and
// transports/amqp CloudEventsHeaderPrefix (a test keeps them equal).
const (
	kafkaCloudEventsPrefix = "ce_"
	amqpCloudEventsPrefix  = "cloudEvents:"
)

// envelopeHeader is one envelope header: its eventkit key and CloudEvents
// attribute.
type envelopeHeader struct {
	key, attr, desc, format string
}

var envelopeHeaders = []envelopeHeader{
	{events.KeyName, "type", "Stable event name, e.g. orders.order_created.", ""},
	{events.KeyEventID, "id", "Event id: eventkit writes a UUIDv7, equal to the message UUID, and reads any non-empty id.", ""},
	{events.KeyVersion, events.CloudEventsVersion, "Payload schema version, a decimal integer ≥ 1; absent means 1.", ""},
	{events.KeyOccurredAt, "time", "When the event happened, RFC 3339 UTC with nanoseconds.", "date-time"},
	{events.KeyCorrelationID, events.CloudEventsCorrelationID, "The conversation: kept across hops, else the first event's id.", ""},
	{events.KeyCausationID, events.CloudEventsCausationID, "Id of the event being handled when this one was published.", ""},
	{events.KeySource, "source", "The producing service (CloudEvents: " + events.CloudEventsSourceDefault + " when none).", ""},
	{events.KeyPartitionKey, events.CloudEventsPartitionKey, "Ordering key, usually the aggregate id; the Kafka message key.", ""},
	{events.KeyContentType, "", "The codec's media type, e.g. application/json (CloudEvents: datacontenttype, the broker's content type).", ""},
	{events.KeyTraceParent, "traceparent", "W3C trace context, when tracing is on.", ""},
	{events.KeyTraceState, "tracestate", "W3C trace state, when tracing is on.", ""},
	{events.KeyDeliverAt, "", "When a scheduled or delayed message is due, RFC 3339 UTC.", "date-time"},
}

func envelopeTrait() map[string]any {
	props := map[string]any{}
	for _, h := range envelopeHeaders {
		p := map[string]any{"type": "string", "description": h.desc}
		if h.format != "" {
			p["format"] = h.format
		}
		if h.key == events.KeyVersion {
			p["pattern"] = "^[1-9][0-9]*$"
		}
		props[h.key] = p
		if h.attr == "" {
			continue
		}
		for _, pre := range []struct{ prefix, broker string }{{kafkaCloudEventsPrefix, "Kafka"}, {amqpCloudEventsPrefix, "AMQP"}} {
			cp := map[string]any{"type": "string", "description": fmt.Sprintf("CloudEvents %s (binary mode, %s): the %s header.", h.attr, pre.broker, h.key)}
			if h.format != "" {
				cp["format"] = h.format
			}
			if h.key == events.KeyVersion {
				cp["pattern"] = "^[1-9][0-9]*$"
			}
			props[pre.prefix+h.attr] = cp
		}
	}
	for _, pre := range []struct{ prefix, broker string }{{kafkaCloudEventsPrefix, "Kafka"}, {amqpCloudEventsPrefix, "AMQP"}} {
		props[pre.prefix+"specversion"] = map[string]any{"type": "string", "const": events.CloudEventsSpecVersion,
			"description": fmt.Sprintf("CloudEvents specversion (binary mode, %s).", pre.broker)}
	}
	return map[string]any{
		"name":        "eventkit envelope",
		"summary":     "The envelope of every eventkit event.",
		"description": "Every event carries its envelope in headers, in one of the wire forms: the eventkit headers (default), or the CloudEvents 1.0 binary mode (wire=cloudevents: the same attributes prefixed ce_ on Kafka, cloudEvents: on AMQP). In the structured mode (wire=cloudevents-structured) the envelope and payload travel together as application/cloudevents+json. Consumers read every form.",
		"headers": map[string]any{
			"type":       "object",
			"properties": props,
			"anyOf": []any{
				map[string]any{"title": "eventkit headers", "required": []any{events.KeyName, events.KeyEventID}},
				map[string]any{"title": "CloudEvents binary mode, Kafka", "required": []any{kafkaCloudEventsPrefix + "specversion", kafkaCloudEventsPrefix + "id", kafkaCloudEventsPrefix + "type", kafkaCloudEventsPrefix + "source"}},
				map[string]any{"title": "CloudEvents binary mode, AMQP", "required": []any{amqpCloudEventsPrefix + "specversion", amqpCloudEventsPrefix + "id", amqpCloudEventsPrefix + "type", amqpCloudEventsPrefix + "source"}},
			},
		},
		"correlationId": map[string]any{
			"description": "The correlation id of the conversation (CloudEvents binary mode: ce_correlationid, cloudEvents:correlationid).",
			"location":    "$message.header#/" + events.KeyCorrelationID,
		},
	}
}
