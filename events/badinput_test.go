package events_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/stretchr/testify/require"

	"github.com/b2131a45/eventkit/events"
)

// TestDecodeRejectsHostilePayloads: invalid UTF-8 (which encoding/json would
// silently turn into U+FFFD) and payloads over the registry's limit are
// permanent *DecodeErrors that say what is wrong; a negative limit lifts it.
func TestDecodeRejectsHostilePayloads(t *testing.T) {
	t.Parallel()
	msg := func(payload string) *message.Message {
		m := message.NewMessage("id", []byte(payload))
		m.Metadata.Set(events.KeyName, "inventory.stock_reserved")
		m.Metadata.Set(events.KeyVersion, "1")
		return m
	}
	reg := events.NewRegistryWithConfig(events.RegistryConfig{MaxPayloadBytes: 1 << 10})
	require.NoError(t, events.Register[StockReserved](reg, "inventory.stock_reserved"))

	_, _, err := reg.Decode(msg(`{"order_id":"o-` + "\xff\xfe" + `"}`))
	var de *events.DecodeError
	require.ErrorAs(t, err, &de)
	require.True(t, events.IsPermanent(err))
	require.ErrorContains(t, err, "not valid UTF-8")

	_, _, err = reg.Decode(msg(`{"order_id":"` + strings.Repeat("x", 2<<10) + `"}`))
	require.ErrorAs(t, err, &de)
	require.True(t, errors.Is(err, events.ErrPayloadTooLarge))
	require.ErrorContains(t, err, "limit 1024")

	_, v, err := reg.Decode(msg(`{"order_id":"ünïcödé ✓"}`))
	require.NoError(t, err)
	require.Equal(t, "ünïcödé ✓", v.(*StockReserved).OrderID)

	unlimited := events.NewRegistryWithConfig(events.RegistryConfig{MaxPayloadBytes: -1})
	require.NoError(t, events.Register[StockReserved](unlimited, "inventory.stock_reserved"))
	_, _, err = unlimited.Decode(msg(`{"order_id":"` + strings.Repeat("x", events.DefaultMaxPayloadBytes) + `"}`))
	require.NoError(t, err)
}
