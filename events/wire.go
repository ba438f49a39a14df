package events

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
)

// Wire is the form in which a transport writes events on the broker. Every
// transport reads every form, whatever it writes (see Canonicalize), so
// producers and consumers can change it one at a time.
type Wire string

const (
	// WireEventkit, the default, writes the envelope as headers named by
	// the Key* constants (the metadata as is), next to the broker's
	// standard properties.
	WireEventkit Wire = "eventkit"
	// WireCloudEvents writes CloudEvents 1.0 in binary content mode: the
	// envelope as CloudEvents attributes in the binding's headers (Kafka
	// "ce_id"…, AMQP "cloudEvents:id"…), the payload as is, its media type
	// in the broker's content type. See CloudEventOf for the mapping.
	WireCloudEvents Wire = "cloudevents"
	// WireCloudEventsStructured writes CloudEvents 1.0 in structured
	// content mode: the payload is a JSON document (media type
	// application/cloudevents+json) holding the attributes and the data.
	WireCloudEventsStructured Wire = "cloudevents-structured"
)

// ParseWire parses a Wire from its name. "" is WireEventkit.
func ParseWire(s string) (Wire, error) {
	switch w := Wire(s); w {
	case "", WireEventkit:
		return WireEventkit, nil
	case WireCloudEvents, WireCloudEventsStructured:
		return w, nil
	}
	return "", fmt.Errorf("events: unknown wire %q: want %s, %s or %s", s, WireEventkit, WireCloudEvents, WireCloudEventsStructured)
}

// Canonicalize rewrites a message received from a broker into the eventkit
// form, in place, so that everything downstream (the registry, the
// middleware, dead letters, replays) reads one contract:
//
//   - a structured CloudEvent (content_type application/cloudevents+json,
//     with or without parameters) becomes its data as payload and its
//     attributes as envelope keys;
//   - CloudEvents attributes in binary mode, as metadata keys prefixed
//     "ce_", "ce-", "cloudEvents:" or "cloudEvents_" (the Kafka, HTTP and
//     AMQP bindings; the prefix in any case), become envelope keys;
//   - the message UUID is set from the event id when it is empty.
//
// The Key* metadata keys win over CloudEvents attributes, which transports
// let win over their broker's standard properties. CloudEvents attributes
// eventkit has no key for (subject, dataschema, a foreign extension) are
// kept as "ce_" + name, which a transport writing CloudEvents writes back as
// the same attribute. A message already in eventkit form is left as is, at
// the cost of two map lookups.
//
// Canonicalize returns a permanent *DecodeError, leaving msg unchanged, when
// the message claims to be a CloudEvent and is not one (a structured event
// that is not valid JSON, lacks a required attribute, or has an unsupported
// specversion; a batch). Transports call it on every message they receive and
// leave the error for Registry.Decode, which calls it too, to report.
func Canonicalize(msg *message.Message) error {
	md := msg.Metadata
	if ct := md[KeyContentType]; ct != "" && isMediaType(ct, ContentTypeCloudEventsBatch) {
		return &DecodeError{Header: KeyContentType, Err: fmt.Errorf("a batch of CloudEvents (%s) is not an event; send them one by one", ContentTypeCloudEventsBatch)}
	}
	if ct := md[KeyContentType]; ct != "" && isMediaType(ct, ContentTypeCloudEvents) {
		return canonicalizeStructured(msg)
	}
	if md[KeyName] != "" && md[KeyEventID] != "" {
		if msg.UUID == "" {
			msg.UUID = md[KeyEventID]
		}
		return nil
	}
	if err := canonicalizeBinary(md); err != nil {
		return err
	}
	if msg.UUID == "" {
		msg.UUID = md[KeyEventID]
	}
	return nil
}

// ceAttributePrefixes are the prefixes of CloudEvents attributes in binary
// mode: Kafka's, HTTP's, AMQP's and its underscore variant (for brokers and
// clients that reject ':' in header names).
var ceAttributePrefixes = []string{"ce_", "ce-", "cloudevents:", "cloudevents_"}

// ceAttribute returns the CloudEvents attribute name of a binary-mode
// metadata key, or "".
func ceAttribute(key string) string {
	if len(key) < 4 {
		return ""
	}
	for _, p := range ceAttributePrefixes {
		if len(key) > len(p) && strings.EqualFold(key[:len(p)], p) {
			return strings.ToLower(key[len(p):])
		}
	}
	return ""
}

func canonicalizeBinary(md message.Metadata) error {
	var found map[string]string // attribute → value
	var keys []string
	for k, v := range md {
		if attr := ceAttribute(k); attr != "" {
			if found == nil {
				found = map[string]string{}
			}
			found[attr] = v
			keys = append(keys, k)
		}
	}
	if found == nil {
		return nil
	}
	if sv, ok := found["specversion"]; ok && sv != CloudEventsSpecVersion {
		return &DecodeError{Header: "specversion", Err: fmt.Errorf("CloudEvents specversion %q is not supported, only %s", sv, CloudEventsSpecVersion)}
	}
	for _, k := range keys {
		delete(md, k)
	}
	applyAttributes(md, found)
	return nil
}

// applyAttributes writes CloudEvents attributes into metadata under the
// eventkit keys, without overwriting keys already set.
func applyAttributes(md message.Metadata, attrs map[string]string) {
	for attr, v := range attrs {
		key, known := ceToKey[attr]
		switch {
		case attr == "specversion":
			continue
		case !known:
			key = CloudEventsExtensionPrefix + attr
		}
		if _, set := md[key]; !set {
			md[key] = v
		}
	}
}

// isMediaType reports whether the media type got, parameters and case
// aside, is want.
func isMediaType(got, want string) bool {
	return strings.EqualFold(mediaBase(got), want)
}

// mediaType returns the type/subtype of a Content-Type value, lower case,
// without parameters: what mime.ParseMediaType returns for a value that
// parses, and the same text for one that does not (it is returned trimmed
// and lower case rather than refused). It allocates only when the value
// has upper-case letters; ParseMediaType made a map per call, three calls
// per consumed message.
func mediaType(v string) string { return strings.ToLower(mediaBase(v)) }

// mediaBase is v up to its parameters, trimmed.
func mediaBase(v string) string {
	base, _, _ := strings.Cut(v, ";")
	return strings.TrimSpace(base)
}

// sameContentType reports whether a message's content type fits a codec's:
// the same media type, parameters (charset…) and case aside, or an alias
// of it (text/json and application/*+json for JSON, the usual protobuf
// names for Protobuf).
func sameContentType(got, codec string) bool {
	g, c := mediaType(got), mediaType(codec)
	if g == c {
		return true
	}
	switch c {
	case "application/json":
		return g == "text/json" || (strings.HasPrefix(g, "application/") && strings.HasSuffix(g, "+json") &&
			g != ContentTypeCloudEvents && g != ContentTypeCloudEventsBatch)
	case "application/protobuf":
		return g == "application/x-protobuf" || g == "application/vnd.google.protobuf" || g == "application/x-google-protobuf"
	}
	return false
}

// ParseTime reads a timestamp in any form the standards eventkit speaks
// allow: RFC 3339 with any offset and any fraction (CloudEvents "time",
// eventkit's occurred_at), or an integer number of seconds (up to 11
// digits: AMQP 0-9-1's timestamp), milliseconds (12 to 14 digits: AMQP 1.0,
// Kafka, JavaScript's Date.now), microseconds (15 to 17) or nanoseconds (18
// or 19) since the Unix epoch. The result is in UTC.
func ParseTime(s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, fmt.Errorf("empty timestamp")
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t.UTC(), nil
	}
	digits := strings.TrimPrefix(s, "-")
	if digits != "" && strings.Trim(digits, "0123456789") == "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err == nil {
			switch l := len(digits); {
			case l <= 11:
				return time.Unix(n, 0).UTC(), nil
			case l <= 14:
				return time.UnixMilli(n).UTC(), nil
			case l <= 17:
				return time.UnixMicro(n).UTC(), nil
			default:
				return time.Unix(0, n).UTC(), nil
			}
		}
	}
	return time.Time{}, fmt.Errorf("%q is neither RFC 3339 nor an integer of seconds, milliseconds, microseconds or nanoseconds since 1970", s)
}
