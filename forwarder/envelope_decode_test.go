package forwarder

import (
	"encoding/json"
	"reflect"
	"testing"

	"github.com/ThreeDotsLabs/watermill/message"
)

func envelopeSeeds(t testing.TB) [][]byte {
	t.Helper()
	msg := message.NewMessage("0190f5d6-6c1e-7a4e-9c39-000000000017", []byte(`{"order_id":"o-17","items":["a"]}`))
	msg.Metadata.Set("name", "orders.order_created")
	msg.Metadata.Set("note", `<a href="x">ü</a>`) // escaped by encoding/json: the slow path
	plain, err := wrap("orders", message.NewMessage("id-1", []byte("binary \x00\xff")))
	if err != nil {
		t.Fatal(err)
	}
	escaped, err := wrap("orders", msg)
	if err != nil {
		t.Fatal(err)
	}
	return [][]byte{
		plain, escaped,
		[]byte(`{"destination_topic":"t","uuid":"u","payload":null,"metadata":null}`),
		[]byte(` { "metadata" : { "k" : "v" , "k" : "w" } , "uuid":"ü","payload":"","destination_topic":"t" } `),
		[]byte(`{"destination_topic":"t","UUID":"u","payload":"","metadata":{}}`),
		[]byte(`{"destination_topic":"t","uuid":"u","payload":"!!","metadata":{}}`),
		[]byte(`{"destination_topic":"t","uuid":"u","payload":"","metadata":{},}`),
		[]byte(`{"destination_topic":"t","uuid":"\xff","payload":"","metadata":{}}`),
		[]byte(`{"destination_topic":"t","destination_topic":"u"}`),
		[]byte(`{}`), []byte(`null`), []byte(`{"uuid":1}`), []byte(`{"uuid":"a"} x`),
	}
}

// TestDecodeEnvelopeFastPath: the envelopes wrap writes for ordinary
// events take the fast path; what it accepts decodes as with
// encoding/json.
func TestDecodeEnvelopeFastPath(t *testing.T) {
	seeds := envelopeSeeds(t)
	var e envelope
	if !decodeEnvelope(seeds[0], &e) || e.UUID != "id-1" || string(e.Payload) != "binary \x00\xff" || e.DestinationTopic != "orders" {
		t.Fatalf("wrap's envelope did not take the fast path: %+v", e)
	}
	for _, s := range seeds {
		checkDecode(t, s)
	}
}

func checkDecode(t *testing.T, data []byte) {
	t.Helper()
	var fast envelope
	if !decodeEnvelope(data, &fast) {
		return
	}
	var slow envelope
	if err := json.Unmarshal(data, &slow); err != nil {
		t.Fatalf("%q: the fast path accepted what encoding/json rejects: %v", data, err)
	}
	if !reflect.DeepEqual(fast, slow) {
		t.Fatalf("%q: fast path %+v, encoding/json %+v", data, fast, slow)
	}
}

func FuzzDecodeEnvelope(f *testing.F) {
	for _, s := range envelopeSeeds(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) { checkDecode(t, data) })
}
