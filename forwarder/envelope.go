package forwarder

import (
	"encoding/json"
	"errors"
	"fmt"

	"github.com/ThreeDotsLabs/watermill/message"
)

// envelope is Watermill's forwarder envelope (components/forwarder
// envelope.go), byte for byte: the JSON written to the payload column of an
// outbox row. A stock Watermill forwarder unwraps it and publishes the inner
// message, with its UUID and metadata, to DestinationTopic.
type envelope struct {
	DestinationTopic string            `json:"destination_topic"`
	UUID             string            `json:"uuid"`
	Payload          []byte            `json:"payload"`
	Metadata         map[string]string `json:"metadata"`
}

func wrap(topic string, msg *message.Message) ([]byte, error) {
	if topic == "" {
		return nil, errors.New("empty destination topic")
	}
	md := msg.Metadata
	if md == nil {
		md = map[string]string{}
	}
	return json.Marshal(envelope{DestinationTopic: topic, UUID: msg.UUID, Payload: msg.Payload, Metadata: md})
}

func unwrap(data []byte) (topic string, msg *message.Message, err error) {
	var e envelope
	if !decodeEnvelope(data, &e) {
		e = envelope{}
		if err := json.Unmarshal(data, &e); err != nil {
			return "", nil, fmt.Errorf("decode forwarder envelope: %w", err)
		}
	}
	if e.DestinationTopic == "" {
		return "", nil, errors.New("forwarder envelope has no destination topic")
	}
	msg = message.NewMessage(e.UUID, e.Payload)
	if e.Metadata != nil {
		msg.Metadata = e.Metadata
	}
	return e.DestinationTopic, msg, nil
}
