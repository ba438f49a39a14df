package middleware

import (
	"errors"
	"strconv"
	"testing"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/b2131a45/eventkit/events"
)

// FuzzDeadLetterReplay feeds arbitrary dead-letter records (what eventkit
// dlq list and replay read back from a broker) to the decoder: it must never
// panic, must either succeed with consistent fields or fail with
// ErrNotDeadLetter, and the message a replay would publish must carry the
// original payload without the failure's record.
func FuzzDeadLetterReplay(f *testing.F) {
	f.Add("id-1", "retries_exhausted", "boom", "3", "orders.order_created", "inventory.reserve", "2026-01-02T03:04:05.123456789Z", "", "", []byte(`{"order_id":"o"}`))
	f.Add("id-2", "panic", "runtime error", "1", "t", "h", "2026-01-02T03:04:05Z", "2", "goroutine 1 [running]:", []byte(nil))
	f.Add("", "", "", "", "", "", "", "", "", []byte(nil))
	f.Add("x", "decode", "", "0", "t", "", "2026-13-40T99:99:99Z", "-1", "", []byte("\xff\xfe"))
	f.Add("x", "r", "e", "9999999999999999999999", "t", "h", "not a time", "x", "", []byte(`{`))
	f.Add("x", "r", "e", "+1", "t", "h", "2026-01-02T03:04:05+01:00", "007", "", []byte(`{}`))
	f.Fuzz(func(t *testing.T, id, reason, errText, attempts, topic, handler, failedAt, replays, stack string, payload []byte) {
		msg := message.NewMessage(id, payload)
		msg.Metadata.Set(events.KeyName, "orders.order_created")
		for k, v := range map[string]string{
			KeyReason: reason, KeyError: errText, KeyAttempts: attempts, KeyOriginalTopic: topic,
			KeyHandler: handler, KeyFailedAt: failedAt, KeyReplays: replays, KeyStack: stack,
		} {
			if v != "" {
				msg.Metadata.Set(k, v)
			}
		}
		dl, err := DeadLetterFromMessage(msg)
		if err != nil {
			if !errors.Is(err, ErrNotDeadLetter) {
				t.Fatalf("error does not wrap ErrNotDeadLetter: %v", err)
			}
			return
		}
		if dl.Reason == "" || dl.OriginalTopic == "" || dl.Attempts < 1 || dl.Replays < 0 || dl.FailedAt.IsZero() {
			t.Fatalf("accepted an incomplete record: %+v", dl)
		}
		if dl.EventID != id || string(dl.Reason) != reason || dl.OriginalTopic != topic || dl.Handler != handler {
			t.Fatalf("fields changed: %+v", dl)
		}
		out := dl.replayMessage()
		if out.UUID != id || string(out.Payload) != string(payload) {
			t.Fatalf("replay changed the id or payload")
		}
		for _, k := range recordKeys {
			if _, ok := out.Metadata[k]; ok {
				t.Fatalf("replay kept %s", k)
			}
		}
		if got := out.Metadata.Get(KeyReplays); got != strconv.Itoa(dl.Replays+1) {
			t.Fatalf("replays %q after %d", got, dl.Replays)
		}
	})
}
