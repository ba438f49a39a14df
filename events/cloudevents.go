package events

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/ThreeDotsLabs/watermill/message"
)

// CloudEvents 1.0 (https://cloudevents.io) as eventkit writes and reads it.
// The envelope maps to these attributes:
//
//	eventkit key     CloudEvents attribute
//	event_id         id
//	name             type
//	source           source (CloudEventsSourceDefault when empty)
//	occurred_at      time
//	content_type     datacontenttype (binary mode: the broker's content type)
//	correlation_id   correlationid   (extension)
//	causation_id     causationid     (extension)
//	event_version    eventversion    (extension)
//	partition_key    partitionkey    (the Partitioning extension; the Kafka key)
//	traceparent      traceparent     (the Distributed Tracing extension)
//	tracestate       tracestate      (the Distributed Tracing extension)
//	ce_<name>        <name>          (any other attribute: subject, dataschema, foreign extensions)
//
// specversion is always 1.0. Other metadata (dead-letter keys, custom keys)
// has no attribute and travels as plain headers beside the event.
const (
	CloudEventsSpecVersion = "1.0"
	// ContentTypeCloudEvents is the media type of a structured CloudEvent
	// in JSON.
	ContentTypeCloudEvents = "application/cloudevents+json"
	// ContentTypeCloudEventsBatch is the media type of a JSON batch of
	// CloudEvents, which eventkit does not take (a dead letter says so).
	ContentTypeCloudEventsBatch = "application/cloudevents-batch+json"

	CloudEventsCorrelationID = "correlationid"
	CloudEventsCausationID   = "causationid"
	CloudEventsVersion       = "eventversion"
	CloudEventsPartitionKey  = "partitionkey"

	// CloudEventsExtensionPrefix prefixes the metadata keys that carry
	// CloudEvents attributes eventkit has no key for.
	CloudEventsExtensionPrefix = "ce_"
	// CloudEventsSourceDefault is the source attribute of an event whose
	// envelope has no source (CloudEvents requires one).
	CloudEventsSourceDefault = "eventkit"
)

// keyToCE maps envelope keys to CloudEvents attribute names.
var keyToCE = map[string]string{
	KeyEventID:       "id",
	KeyName:          "type",
	KeySource:        "source",
	KeyOccurredAt:    "time",
	KeyCorrelationID: CloudEventsCorrelationID,
	KeyCausationID:   CloudEventsCausationID,
	KeyVersion:       CloudEventsVersion,
	KeyPartitionKey:  CloudEventsPartitionKey,
	KeyTraceParent:   "traceparent",
	KeyTraceState:    "tracestate",
}

// ceToKey maps CloudEvents attribute names to envelope keys.
var ceToKey = func() map[string]string {
	m := map[string]string{"datacontenttype": KeyContentType}
	for k, a := range keyToCE {
		m[a] = k
	}
	return m
}()

// ValidCloudEventsAttribute reports whether name is a valid CloudEvents
// attribute name: 1 to 20 lower-case ASCII letters and digits.
func ValidCloudEventsAttribute(name string) bool {
	if name == "" || len(name) > 20 {
		return false
	}
	for i := 0; i < len(name); i++ {
		if c := name[i]; (c < 'a' || c > 'z') && (c < '0' || c > '9') {
			return false
		}
	}
	return true
}

// CloudEvent is the CloudEvents 1.0 form of a message, as transports write
// it in binary or structured mode.
type CloudEvent struct {
	// Attributes are the context attributes by CloudEvents name,
	// datacontenttype aside: specversion, id, source, type, time when
	// known, and the extensions.
	Attributes map[string]string
	// DataContentType is the media type of Data (datacontenttype), or "".
	DataContentType string
	// Data is the payload.
	Data []byte
	// Headers is the metadata that has no CloudEvents attribute (dead-letter
	// keys, custom keys, Watermill's own): transports write it as plain
	// headers beside the event, in both modes.
	Headers map[string]string
}

// CloudEventOf returns the CloudEvents form of a message in eventkit form
// (see the mapping above). The id is the event id, else the message UUID.
func CloudEventOf(msg *message.Message) CloudEvent {
	ce := CloudEvent{
		Attributes: make(map[string]string, 8),
		Data:       msg.Payload,
	}
	ce.Attributes["specversion"] = CloudEventsSpecVersion
	for k, v := range msg.Metadata {
		if k == KeyContentType {
			ce.DataContentType = v
			continue
		}
		attr, ok := keyToCE[k]
		if !ok {
			if name, ext := strings.CutPrefix(k, CloudEventsExtensionPrefix); ext && ValidCloudEventsAttribute(name) && ceToKey[name] == "" {
				attr, ok = name, true
			}
		}
		if !ok {
			if ce.Headers == nil {
				ce.Headers = map[string]string{}
			}
			ce.Headers[k] = v
			continue
		}
		if v != "" {
			ce.Attributes[attr] = v
		}
	}
	if ce.Attributes["id"] == "" && msg.UUID != "" {
		ce.Attributes["id"] = msg.UUID
	}
	if ce.Attributes["source"] == "" {
		ce.Attributes["source"] = CloudEventsSourceDefault
	}
	return ce
}

// MarshalStructured encodes the event in the JSON event format
// (application/cloudevents+json). Data whose media type is JSON (or unset)
// and that is valid JSON is written as the "data" value; other UTF-8 text
// of a text/* type as a JSON string; anything else as "data_base64".
func (ce CloudEvent) MarshalStructured() ([]byte, error) {
	doc := make(map[string]any, len(ce.Attributes)+2)
	for k, v := range ce.Attributes {
		doc[k] = v
	}
	if ce.DataContentType != "" {
		doc["datacontenttype"] = ce.DataContentType
	}
	if len(ce.Data) > 0 {
		ct := ce.DataContentType
		switch {
		case (ct == "" || sameContentType(ct, "application/json")) && json.Valid(ce.Data):
			doc["data"] = json.RawMessage(ce.Data)
		case strings.HasPrefix(mediaType(ct), "text/") && utf8.Valid(ce.Data):
			doc["data"] = string(ce.Data)
		default:
			doc["data_base64"] = base64.StdEncoding.EncodeToString(ce.Data)
		}
	}
	return json.Marshal(doc)
}

// errNotObject is returned for a structured event that is not a JSON object.
var errNotObject = errors.New("not a JSON object")

// ParseStructured decodes a CloudEvent in the JSON event format. It needs a
// JSON object with specversion 1.0; the other attributes are checked where
// they are used (Canonicalize leaves a missing id or type to the envelope's
// own checks). Attribute values that are numbers or booleans are returned
// as their JSON text.
func ParseStructured(doc []byte) (CloudEvent, error) {
	var fields map[string]json.RawMessage
	dec := json.NewDecoder(bytes.NewReader(doc))
	dec.UseNumber()
	if !utf8.Valid(doc) {
		return CloudEvent{}, errors.New("not valid UTF-8, as JSON must be")
	}
	if err := dec.Decode(&fields); err != nil || fields == nil {
		if err == nil {
			err = errNotObject
		}
		var ute *json.UnmarshalTypeError
		if errors.As(err, &ute) {
			err = errNotObject
		}
		return CloudEvent{}, err
	}
	if dec.More() {
		return CloudEvent{}, errors.New("trailing data after the JSON object")
	}
	ce := CloudEvent{Attributes: make(map[string]string, len(fields))}
	rawData, hasData := fields["data"]
	rawB64, hasB64 := fields["data_base64"]
	delete(fields, "data")
	delete(fields, "data_base64")
	for name, raw := range fields {
		v, err := attributeValue(raw)
		if err != nil {
			return CloudEvent{}, fmt.Errorf("attribute %q: %w", name, err)
		}
		if v == nil {
			continue // null: absent
		}
		if name == "datacontenttype" {
			ce.DataContentType = *v
			continue
		}
		ce.Attributes[name] = *v
	}
	switch sv := ce.Attributes["specversion"]; {
	case sv == "":
		return CloudEvent{}, errors.New(`no "specversion"`)
	case sv != CloudEventsSpecVersion:
		return CloudEvent{}, fmt.Errorf("specversion %q is not supported, only %s", sv, CloudEventsSpecVersion)
	}
	switch {
	case hasData && hasB64 && string(rawData) != "null" && string(rawB64) != "null":
		return CloudEvent{}, errors.New(`both "data" and "data_base64"`)
	case hasB64 && string(rawB64) != "null":
		var s string
		if err := json.Unmarshal(rawB64, &s); err != nil {
			return CloudEvent{}, errors.New(`"data_base64" is not a string`)
		}
		data, err := base64.StdEncoding.DecodeString(s)
		if err != nil {
			return CloudEvent{}, fmt.Errorf(`"data_base64": %w`, err)
		}
		ce.Data = data
	case hasData && string(rawData) != "null":
		ct := ce.DataContentType
		if ct != "" && !sameContentType(ct, "application/json") && len(rawData) > 0 && rawData[0] == '"' {
			var s string
			if err := json.Unmarshal(rawData, &s); err == nil {
				ce.Data = []byte(s)
				break
			}
		}
		ce.Data = []byte(rawData)
	}
	return ce, nil
}

// attributeValue returns a structured attribute's value as text, nil for
// null; objects and arrays are not attribute values.
func attributeValue(raw json.RawMessage) (*string, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return nil, errors.New("empty")
	}
	switch raw[0] {
	case '"':
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return nil, err
		}
		return &s, nil
	case 'n':
		return nil, nil
	case '{', '[':
		return nil, errors.New("is an object or array, not a string, number or boolean")
	}
	s := string(raw) // a number or true/false, as written
	return &s, nil
}

func canonicalizeStructured(msg *message.Message) error {
	ce, err := ParseStructured(msg.Payload)
	if err != nil {
		return &DecodeError{Err: fmt.Errorf("structured CloudEvent (%s): %w", ContentTypeCloudEvents, err)}
	}
	md := msg.Metadata
	delete(md, KeyContentType)
	if ce.DataContentType != "" {
		md[KeyContentType] = ce.DataContentType
	}
	applyAttributes(md, ce.Attributes)
	msg.Payload = ce.Data
	if msg.UUID == "" {
		msg.UUID = md[KeyEventID]
	}
	return nil
}
