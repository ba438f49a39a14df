package amqp

import (
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/ThreeDotsLabs/watermill/message"
)

// RabbitMQ before 3.13 hands a message that an AMQP 1.0 client published
// (the CloudEvents Go SDK's AMQP binding, .NET and Java AMQP 1.0 clients)
// to AMQP 0-9-1 consumers with its AMQP 1.0 sections encoded, as they came,
// in these headers; the body is the data section. Since 3.13 the broker
// maps them to headers and properties itself.
const (
	amqp10AppProperties = "x-amqp-1.0-app-properties"
	amqp10Properties    = "x-amqp-1.0-properties"
)

// amqp10Props are the AMQP 1.0 properties eventkit reads.
type amqp10Props struct {
	messageID, correlationID, contentType string
	creationTime                          time.Time
}

// decodeAMQP10Headers adds the application properties of an AMQP 1.0
// message to md (without overwriting) and returns its properties. A section
// that does not decode is left out: the message then lacks what it held,
// and the registry says what is missing.
func decodeAMQP10Headers(headers map[string]any, md message.Metadata) amqp10Props {
	if raw, ok := headerBytes(headers[amqp10AppProperties]); ok {
		if m, err := decodeSection(raw, 0x74); err == nil {
			if entries, ok := m.([]any); ok && len(entries)%2 == 0 {
				for i := 0; i < len(entries); i += 2 {
					k, ok := entries[i].(string)
					if !ok {
						continue
					}
					if v, ok := amqp10Text(entries[i+1]); ok && md[k] == "" {
						md[k] = v
					}
				}
			}
		}
	}
	var p amqp10Props
	if raw, ok := headerBytes(headers[amqp10Properties]); ok {
		if l, err := decodeSection(raw, 0x73); err == nil {
			fields, _ := l.([]any)
			at := func(i int) any {
				if i < len(fields) {
					return fields[i]
				}
				return nil
			}
			p.messageID, _ = amqp10Text(at(0))
			p.correlationID, _ = amqp10Text(at(5))
			p.contentType, _ = amqp10Text(at(6))
			p.creationTime, _ = at(9).(time.Time)
		}
	}
	return p
}

func headerBytes(v any) ([]byte, bool) {
	switch v := v.(type) {
	case string:
		return []byte(v), true
	case []byte:
		return v, true
	}
	return nil, false
}

// amqp10Text formats a decoded AMQP 1.0 value as metadata text.
func amqp10Text(v any) (string, bool) {
	switch v := v.(type) {
	case nil:
		return "", false
	case string:
		return v, true
	case symbol:
		return string(v), true
	case []byte:
		return string(v), true
	case time.Time:
		return v.UTC().Format(time.RFC3339Nano), true
	case []any:
		return "", false
	}
	return fmt.Sprint(v), true
}

type symbol string

var errAMQP10 = errors.New("amqp: malformed AMQP 1.0 section")

// decodeSection decodes a described AMQP 1.0 section whose descriptor is the
// small ulong code, and returns its value: a map as []any of alternating
// keys and values, a list as []any.
func decodeSection(b []byte, code byte) (any, error) {
	if len(b) < 3 || b[0] != 0x00 {
		return nil, errAMQP10
	}
	desc, rest, err := decodeValue(b[1:], 0)
	if err != nil {
		return nil, err
	}
	if d, ok := desc.(uint64); !ok || d != uint64(code) {
		return nil, fmt.Errorf("%w: descriptor %v, want 0x%x", errAMQP10, desc, code)
	}
	v, _, err := decodeValue(rest, 0)
	return v, err
}

// maxDepth bounds nesting, so hostile input cannot exhaust the stack.
const maxDepth = 16

// decodeValue decodes one AMQP 1.0 value (section 1.6 of the AMQP 1.0 types)
// and returns it with the bytes after it. Lists and maps are []any; arrays
// are skipped (nil); decimals and chars are returned as text.
func decodeValue(b []byte, depth int) (any, []byte, error) {
	if len(b) == 0 || depth > maxDepth {
		return nil, nil, errAMQP10
	}
	code, b := b[0], b[1:]
	fixed := func(n int) ([]byte, []byte, error) {
		if len(b) < n {
			return nil, nil, errAMQP10
		}
		return b[:n], b[n:], nil
	}
	variable := func(width int) ([]byte, []byte, error) {
		size, rest, err := fixed(width)
		if err != nil {
			return nil, nil, err
		}
		n := int(size[0])
		if width == 4 {
			n64 := binary.BigEndian.Uint32(size)
			if n64 > uint32(len(rest)) {
				return nil, nil, errAMQP10
			}
			n = int(n64)
		}
		if n > len(rest) {
			return nil, nil, errAMQP10
		}
		return rest[:n], rest[n:], nil
	}
	switch code {
	case 0x00: // a described value inside: keep the value, drop the descriptor
		_, rest, err := decodeValue(b, depth+1)
		if err != nil {
			return nil, nil, err
		}
		return decodeValue(rest, depth+1)
	case 0x40:
		return nil, b, nil
	case 0x41:
		return true, b, nil
	case 0x42:
		return false, b, nil
	case 0x43, 0x44:
		return uint64(0), b, nil
	case 0x45:
		return []any{}, b, nil
	case 0x56:
		v, rest, err := fixed(1)
		if err != nil {
			return nil, nil, err
		}
		return v[0] != 0, rest, nil
	case 0x50, 0x52, 0x53:
		v, rest, err := fixed(1)
		if err != nil {
			return nil, nil, err
		}
		return uint64(v[0]), rest, nil
	case 0x51, 0x54, 0x55:
		v, rest, err := fixed(1)
		if err != nil {
			return nil, nil, err
		}
		return int64(int8(v[0])), rest, nil
	case 0x60:
		v, rest, err := fixed(2)
		if err != nil {
			return nil, nil, err
		}
		return uint64(binary.BigEndian.Uint16(v)), rest, nil
	case 0x61:
		v, rest, err := fixed(2)
		if err != nil {
			return nil, nil, err
		}
		return int64(int16(binary.BigEndian.Uint16(v))), rest, nil
	case 0x70:
		v, rest, err := fixed(4)
		if err != nil {
			return nil, nil, err
		}
		return uint64(binary.BigEndian.Uint32(v)), rest, nil
	case 0x71:
		v, rest, err := fixed(4)
		if err != nil {
			return nil, nil, err
		}
		return int64(int32(binary.BigEndian.Uint32(v))), rest, nil
	case 0x72:
		v, rest, err := fixed(4)
		if err != nil {
			return nil, nil, err
		}
		return float64(math.Float32frombits(binary.BigEndian.Uint32(v))), rest, nil
	case 0x73: // char: one UTF-32BE code point
		v, rest, err := fixed(4)
		if err != nil {
			return nil, nil, err
		}
		r := rune(binary.BigEndian.Uint32(v))
		if !utf8.ValidRune(r) {
			r = utf8.RuneError
		}
		return string(r), rest, nil
	case 0x74, 0x84, 0x94: // decimal32/64/128: kept as hex, eventkit has no use for them
		n := map[byte]int{0x74: 4, 0x84: 8, 0x94: 16}[code]
		v, rest, err := fixed(n)
		if err != nil {
			return nil, nil, err
		}
		return "0x" + hex.EncodeToString(v), rest, nil
	case 0x80:
		v, rest, err := fixed(8)
		if err != nil {
			return nil, nil, err
		}
		return binary.BigEndian.Uint64(v), rest, nil
	case 0x81:
		v, rest, err := fixed(8)
		if err != nil {
			return nil, nil, err
		}
		return int64(binary.BigEndian.Uint64(v)), rest, nil
	case 0x82:
		v, rest, err := fixed(8)
		if err != nil {
			return nil, nil, err
		}
		return math.Float64frombits(binary.BigEndian.Uint64(v)), rest, nil
	case 0x83: // timestamp: milliseconds since the epoch
		v, rest, err := fixed(8)
		if err != nil {
			return nil, nil, err
		}
		return time.UnixMilli(int64(binary.BigEndian.Uint64(v))).UTC(), rest, nil
	case 0x98:
		v, rest, err := fixed(16)
		if err != nil {
			return nil, nil, err
		}
		h := hex.EncodeToString(v)
		return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:], rest, nil
	case 0xa0, 0xb0:
		v, rest, err := variable(widthOf(code))
		if err != nil {
			return nil, nil, err
		}
		return append([]byte(nil), v...), rest, nil
	case 0xa1, 0xb1:
		v, rest, err := variable(widthOf(code))
		if err != nil {
			return nil, nil, err
		}
		return string(v), rest, nil
	case 0xa3, 0xb3:
		v, rest, err := variable(widthOf(code))
		if err != nil {
			return nil, nil, err
		}
		return symbol(v), rest, nil
	case 0xc0, 0xd0, 0xc1, 0xd1: // list8/32, map8/32: size, count, elements
		w := widthOf(code)
		body, rest, err := variable(w)
		if err != nil {
			return nil, nil, err
		}
		if len(body) < w {
			return nil, nil, errAMQP10
		}
		count := int(body[0])
		if w == 4 {
			c := binary.BigEndian.Uint32(body)
			if c > uint32(len(body)) { // every element takes a byte at least
				return nil, nil, errAMQP10
			}
			count = int(c)
		}
		body = body[w:]
		items := make([]any, 0, count)
		for range count {
			var v any
			v, body, err = decodeValue(body, depth+1)
			if err != nil {
				return nil, nil, err
			}
			items = append(items, v)
		}
		return items, rest, nil
	case 0xe0, 0xf0: // arrays: skipped whole
		_, rest, err := variable(widthOf(code))
		return nil, rest, err
	}
	return nil, nil, fmt.Errorf("%w: unknown type code 0x%s", errAMQP10, strconv.FormatUint(uint64(code), 16))
}

// widthOf is the width of the size field of a variable-width type code:
// 0xa?, 0xc?, 0xe? have one byte, 0xb?, 0xd?, 0xf? four.
func widthOf(code byte) int {
	if code>>4 == 0xa || code>>4 == 0xc || code>>4 == 0xe {
		return 1
	}
	return 4
}
