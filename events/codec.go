package events

import (
	"encoding/json"
	"errors"
	"fmt"
	"unicode/utf8"

	"google.golang.org/protobuf/proto"
)

// Codec encodes event payloads. Implementations must be safe for concurrent use.
type Codec interface {
	// ContentType is written to the content_type header, e.g. "application/json".
	ContentType() string
	Marshal(v any) ([]byte, error)
	// Unmarshal decodes data into v, a non-nil pointer.
	Unmarshal(data []byte, v any) error
}

// JSON is the default codec: encoding/json.
var JSON Codec = jsonCodec{}

// Protobuf encodes events that are protocol buffer messages
// (google.golang.org/protobuf). Register the generated struct type T; *T must
// implement proto.Message.
var Protobuf Codec = protobufCodec{}

type jsonCodec struct{}

func (jsonCodec) ContentType() string           { return "application/json" }
func (jsonCodec) Marshal(v any) ([]byte, error) { return json.Marshal(v) }

// Unmarshal rejects a payload that is not valid UTF-8, as JSON must be
// (RFC 8259), instead of letting encoding/json replace the bad bytes with
// U+FFFD and hand the handler altered text.
func (jsonCodec) Unmarshal(data []byte, v any) error {
	if !utf8.Valid(data) {
		return errors.New("payload is not valid UTF-8, as JSON must be")
	}
	return json.Unmarshal(data, v)
}

type protobufCodec struct{}

func (protobufCodec) ContentType() string { return "application/protobuf" }

func (protobufCodec) Marshal(v any) ([]byte, error) {
	m, ok := v.(proto.Message)
	if !ok {
		return nil, fmt.Errorf("events: %T is not a proto.Message", v)
	}
	return proto.Marshal(m)
}

func (protobufCodec) Unmarshal(data []byte, v any) error {
	m, ok := v.(proto.Message)
	if !ok {
		return fmt.Errorf("events: %T is not a proto.Message", v)
	}
	return proto.Unmarshal(data, m)
}
