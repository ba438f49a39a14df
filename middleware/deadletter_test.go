package middleware_test

import (
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/stretchr/testify/require"

	"github.com/b2131a45/eventkit/middleware"
)

func deadLetterMsg(md map[string]string) *message.Message {
	m := message.NewMessage("id-1", []byte("payload"))
	for k, v := range md {
		m.Metadata.Set(k, v)
	}
	return m
}

func validDeadLetterMetadata() map[string]string {
	return map[string]string{
		middleware.KeyReason:        "panic",
		middleware.KeyError:         "panic: x",
		middleware.KeyAttempts:      "3",
		middleware.KeyOriginalTopic: "orders",
		middleware.KeyHandler:       "h",
		middleware.KeyFailedAt:      "2026-01-02T03:04:05.123456789Z",
		middleware.KeyStack:         "goroutine 1",
		middleware.KeyReplays:       "2",
		"name":                      "orders.order_placed",
	}
}

func TestDeadLetterFromMessage(t *testing.T) {
	t.Parallel()
	dl, err := middleware.DeadLetterFromMessage(deadLetterMsg(validDeadLetterMetadata()))
	require.NoError(t, err)
	require.Equal(t, middleware.DeadLetter{
		EventID:       "id-1",
		Reason:        middleware.ReasonPanic,
		Error:         "panic: x",
		Attempts:      3,
		OriginalTopic: "orders",
		Handler:       "h",
		FailedAt:      time.Date(2026, 1, 2, 3, 4, 5, 123456789, time.UTC),
		Stack:         "goroutine 1",
		Replays:       2,
		Envelope:      dl.Envelope,
		Message:       dl.Message,
	}, dl)
	require.Equal(t, "orders.order_placed", dl.Envelope.Name)
	require.Equal(t, "id-1", dl.Envelope.ID)

	for _, tc := range []struct {
		key, value string
	}{
		{middleware.KeyReason, ""},
		{middleware.KeyOriginalTopic, ""},
		{middleware.KeyAttempts, ""},
		{middleware.KeyAttempts, "0"},
		{middleware.KeyAttempts, "three"},
		{middleware.KeyFailedAt, ""},
		{middleware.KeyFailedAt, "yesterday"},
		{middleware.KeyReplays, "-1"},
	} {
		md := validDeadLetterMetadata()
		md[tc.key] = tc.value
		_, err := middleware.DeadLetterFromMessage(deadLetterMsg(md))
		require.ErrorIs(t, err, middleware.ErrNotDeadLetter, "%s=%q", tc.key, tc.value)
		require.ErrorContains(t, err, tc.key)
	}
	_, err = middleware.DeadLetterFromMessage(nil)
	require.ErrorIs(t, err, middleware.ErrNotDeadLetter)
	_, err = middleware.DeadLetterFromMessage(&message.Message{})
	require.ErrorIs(t, err, middleware.ErrNotDeadLetter)
}

func FuzzDeadLetterFromMessage(f *testing.F) {
	md := validDeadLetterMetadata()
	f.Add(md[middleware.KeyReason], md[middleware.KeyAttempts], md[middleware.KeyFailedAt], md[middleware.KeyReplays], "orders", "event_version", "2")
	f.Add("", "", "", "", "", "", "")
	f.Add("x", "99999999999999999999", "2026-13-45T99:99:99Z", "1e9", "\x00", "occurred_at", "not a time")
	f.Fuzz(func(t *testing.T, reason, attempts, failedAt, replays, topic, key, value string) {
		m := deadLetterMsg(map[string]string{
			middleware.KeyReason:        reason,
			middleware.KeyAttempts:      attempts,
			middleware.KeyFailedAt:      failedAt,
			middleware.KeyReplays:       replays,
			middleware.KeyOriginalTopic: topic,
			key:                         value,
		})
		dl, err := middleware.DeadLetterFromMessage(m)
		if err != nil {
			require.ErrorIs(t, err, middleware.ErrNotDeadLetter)
			return
		}
		require.GreaterOrEqual(t, dl.Attempts, 1)
		require.GreaterOrEqual(t, dl.Replays, 0)
		require.NotEmpty(t, dl.OriginalTopic)
		require.NotEmpty(t, dl.Reason)
	})
}
