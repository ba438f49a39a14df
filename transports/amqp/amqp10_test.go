package amqp

import (
	"testing"

	amqp091 "github.com/rabbitmq/amqp091-go"
)

// FuzzAMQP10Headers feeds hostile x-amqp-1.0-* headers to unmarshal: never a
// panic, however the sections are cut or nested.
func FuzzAMQP10Headers(f *testing.F) {
	f.Add([]byte("\x00St\xc1\x0b\x02\xa1\x0ecloudEvents:id\xa1\x01x"), []byte("\x00Ss\xc0\x03\x01\xa1\x01m"))
	f.Add([]byte("\x00St\xd1\xff\xff\xff\xff\xff\xff\xff\xff"), []byte("\x00Ss\x45"))
	f.Add([]byte("\x00St\xc1\x05\x02\x00\x00\x00\x00"), []byte("\x00Ss\xd0\x00\x00\x00\x04\x00\x00\x00\x0d"))
	f.Fuzz(func(t *testing.T, app, props []byte) {
		_ = unmarshal(amqp091.Delivery{Headers: amqp091.Table{amqp10AppProperties: app, amqp10Properties: string(props)}})
	})
}
