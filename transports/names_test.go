package transports_test

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"testing"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/stretchr/testify/require"

	"github.com/b2131a45/eventkit/internal/testenv"
	"github.com/b2131a45/eventkit/transports"
)

// hostileNames are topic and group names that must never reach SQL or a
// broker: quotes and statement separators, whitespace, paths, NUL and
// other control characters, non-ASCII, empty after a prefix, too long.
var hostileNames = []string{
	`orders"; DROP TABLE watermill_offsets_x; --`,
	"orders`; DROP TABLE x",
	"orders' OR '1'='1",
	"orders topic",
	"../../etc/passwd",
	"orders\x00",
	"orders\n.dlq",
	"örders",
	"-orders",
	".",
	strings.Repeat("a", 250),
}

// TestHostileNamesAreRejected publishes to and subscribes with hostile
// topic and consumer-group names on every transport through transports.Open (mem:// too, so that code
// tested in memory behaves as on a broker):
// each is refused before it reaches SQL or the broker, with an error that
// wraps ErrInvalidName, is permanent, and quotes the bad value. The same
// transport still works afterwards with a valid name.
func TestHostileNamesAreRejected(t *testing.T) {
	t.Parallel()
	for _, s := range services() {
		t.Run(string(s.kind), func(t *testing.T) {
			t.Parallel()
			tr := open(t, s)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			isInvalid := func(err error, name string) {
				t.Helper()
				require.Error(t, err, "%q was accepted", name)
				require.ErrorIs(t, err, transports.ErrInvalidName, name)
				var p interface{ Permanent() bool }
				require.True(t, errors.As(err, &p) && p.Permanent(), "not permanent: %v", err)
				q := strconv.Quote(name)
				if len(q) > 40 {
					q = q[:40]
				}
				require.Contains(t, err.Error(), q, "the error names the bad value")
			}
			for _, name := range hostileNames {
				isInvalid(tr.Publisher().Publish(name, message.NewMessage(watermill.NewUUID(), []byte("x"))), name)
				_, err := tr.Subscriber(name)
				isInvalid(err, name)
			}
			good := testenv.Name(t, "names")
			sub, err := tr.Subscriber("g")
			require.NoError(t, err)
			defer sub.Close()
			for _, name := range hostileNames {
				_, err := sub.Subscribe(ctx, name)
				isInvalid(err, name)
			}
			if s.kind == transports.KindKafka {
				err := tr.Publisher().Publish(good+":x", message.NewMessage(watermill.NewUUID(), []byte("x")))
				require.ErrorIs(t, err, transports.ErrInvalidName)
				require.ErrorContains(t, err, "cannot contain ':'")
			}

			// Valid names still work on the same transport.
			msgs, err := sub.Subscribe(ctx, good)
			require.NoError(t, err)
			sent := message.NewMessage(watermill.NewUUID(), []byte("ok"))
			require.NoError(t, tr.Publisher().Publish(good, sent))
			select {
			case got := <-msgs:
				require.Equal(t, sent.UUID, got.UUID)
				got.Ack()
			case <-ctx.Done():
			}
		})
	}
}
