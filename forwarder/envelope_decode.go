package forwarder

import (
	"bytes"
	"encoding/base64"
	"unicode/utf8"

	"github.com/b2131a45/eventkit/events"
)

// decodeEnvelope decodes the JSON of an envelope without reflection, for
// the shape encoding/json writes (wrap's, and a stock Watermill
// forwarder's): one object with the four fields in any order, strings
// without escapes, payload base64 or null, metadata an object of strings
// or null. It reports false for anything else, which the caller then
// decodes with encoding/json: on what it accepts, it gives what
// encoding/json gives (FuzzDecodeEnvelope checks it). It is the relay's
// per-row decode, which encoding/json made its largest CPU cost.
//
// Its strings (topic, uuid, metadata values) share one copy of data, made
// once: a handful of small allocations per row less than one each.
func decodeEnvelope(data []byte, e *envelope) bool {
	d := envDecoder{data: data, text: string(data)}
	if !d.byte('{') {
		return false
	}
	var seen [4]bool
	for first := true; ; first = false {
		d.space()
		if d.peek() == '}' && first {
			d.i++
			break
		}
		key, ok := d.str()
		if !ok || !d.byte(':') {
			return false
		}
		var field int
		switch string(key) {
		case "destination_topic":
			field = 0
		case "uuid":
			field = 1
		case "payload":
			field = 2
		case "metadata":
			field = 3
		default:
			return false // unknown or differently cased: encoding/json decides
		}
		if seen[field] {
			return false
		}
		seen[field] = true
		d.space()
		switch field {
		case 0, 1:
			s, ok := d.str()
			if !ok {
				return false
			}
			if field == 0 {
				e.DestinationTopic = d.string(s)
			} else {
				e.UUID = d.string(s)
			}
		case 2:
			if d.null() {
				break
			}
			s, ok := d.str()
			if !ok {
				return false
			}
			p := make([]byte, base64.StdEncoding.DecodedLen(len(s)))
			n, err := base64.StdEncoding.Decode(p, s)
			if err != nil || bytes.ContainsAny(s, "\r\n") {
				return false
			}
			e.Payload = p[:n]
		case 3:
			if d.null() {
				break
			}
			md, ok := d.strings()
			if !ok {
				return false
			}
			e.Metadata = md
		}
		d.space()
		if d.peek() == ',' {
			d.i++
			continue
		}
		if !d.byte('}') {
			return false
		}
		break
	}
	d.space()
	return d.i == len(d.data)
}

type envDecoder struct {
	data []byte
	text string // string(data)
	i    int
}

// string returns b, a subslice of d.data, as the same bytes of d.text:
// without a copy.
func (d *envDecoder) string(b []byte) string {
	start := cap(d.data) - cap(b) // b = d.data[start:start+len(b)]
	return d.text[start : start+len(b)]
}

func (d *envDecoder) space() {
	for d.i < len(d.data) {
		switch d.data[d.i] {
		case ' ', '\t', '\n', '\r':
			d.i++
		default:
			return
		}
	}
}

func (d *envDecoder) peek() byte {
	if d.i < len(d.data) {
		return d.data[d.i]
	}
	return 0
}

// byte skips space and then c.
func (d *envDecoder) byte(c byte) bool {
	d.space()
	if d.peek() != c {
		return false
	}
	d.i++
	return true
}

func (d *envDecoder) null() bool {
	if bytes.HasPrefix(d.data[d.i:], []byte("null")) {
		d.i += 4
		return true
	}
	return false
}

// str reads a string without escapes, valid UTF-8 without control
// characters; it returns the bytes between the quotes.
func (d *envDecoder) str() ([]byte, bool) {
	d.space()
	if d.peek() != '"' {
		return nil, false
	}
	start := d.i + 1
	ascii := true
	for j := start; j < len(d.data); j++ {
		switch c := d.data[j]; {
		case c == '"':
			s := d.data[start:j]
			if !ascii && !utf8.Valid(s) {
				return nil, false // encoding/json replaces invalid bytes
			}
			d.i = j + 1
			return s, true
		case c == '\\' || c < 0x20:
			return nil, false
		case c >= 0x80:
			ascii = false
		}
	}
	return nil, false
}

// strings reads an object whose values are strings.
func (d *envDecoder) strings() (map[string]string, bool) {
	if !d.byte('{') {
		return nil, false
	}
	md := make(map[string]string, 10)
	d.space()
	if d.peek() == '}' {
		d.i++
		return md, true
	}
	for {
		k, ok := d.str()
		if !ok || !d.byte(':') {
			return nil, false
		}
		v, ok := d.str()
		if !ok {
			return nil, false
		}
		md[d.metadataKey(k)] = d.string(v) // a repeated key: the last wins, as with encoding/json
		d.space()
		switch d.peek() {
		case ',':
			d.i++
		case '}':
			d.i++
			return md, true
		default:
			return nil, false
		}
	}
}

// metadataKey returns k as a string: the constant for the keys every
// eventkit envelope has (map keys the same across rows), a substring of
// the row otherwise.
func (d *envDecoder) metadataKey(k []byte) string {
	switch string(k) {
	case events.KeyName:
		return events.KeyName
	case events.KeyEventID:
		return events.KeyEventID
	case events.KeyVersion:
		return events.KeyVersion
	case events.KeyOccurredAt:
		return events.KeyOccurredAt
	case events.KeyCorrelationID:
		return events.KeyCorrelationID
	case events.KeyCausationID:
		return events.KeyCausationID
	case events.KeySource:
		return events.KeySource
	case events.KeyPartitionKey:
		return events.KeyPartitionKey
	case events.KeyContentType:
		return events.KeyContentType
	case events.KeyTraceParent:
		return events.KeyTraceParent
	case events.KeyTraceState:
		return events.KeyTraceState
	}
	return d.string(k)
}
