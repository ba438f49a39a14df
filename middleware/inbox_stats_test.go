package middleware_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/b2131a45/eventkit/middleware"
)

// TestSQLInboxStats counts keys per handler, the oldest key and the keys
// past retention, bounded by the limit, on every SQL store.
func TestSQLInboxStats(t *testing.T) {
	t.Parallel()
	for _, b := range sqlBackends {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			s, _ := newSQLInbox(t, b, middleware.InboxConfig{Retention: 400 * time.Millisecond})

			st, err := s.Stats(ctx, 0)
			require.NoError(t, err)
			require.Zero(t, st.Keys)
			require.True(t, st.Oldest.IsZero())

			record := func(handler string, n int) {
				for i := range n {
					c, err := s.Claim(ctx, middleware.InboxKey{Handler: handler, EventID: fmt.Sprintf("%s-%d", handler, i)})
					require.NoError(t, err)
					require.NoError(t, c.Commit(ctx))
				}
			}
			before := time.Now()
			record("a", 3)
			record("b", 2)
			st, err = s.Stats(ctx, 0)
			require.NoError(t, err)
			require.Equal(t, int64(5), st.Keys)
			require.False(t, st.Truncated)
			require.Equal(t, map[string]int64{"a": 3, "b": 2}, st.Handlers)
			require.WithinDuration(t, before, st.Oldest, 2*time.Second)
			require.Zero(t, st.Expired)

			limited, err := s.Stats(ctx, 4)
			require.NoError(t, err)
			require.Equal(t, int64(4), limited.Keys)
			require.True(t, limited.Truncated)

			require.Eventually(t, func() bool {
				st, err = s.Stats(ctx, 0)
				require.NoError(t, err)
				return st.Expired == 5
			}, 10*time.Second, 50*time.Millisecond, "keys past retention: %d", st.Expired)
			n, err := s.Purge(ctx, time.Now().Add(-s.Retention()), 100)
			require.NoError(t, err)
			require.Equal(t, int64(5), n)
			st, err = s.Stats(ctx, 0)
			require.NoError(t, err)
			require.Zero(t, st.Keys)
			require.Zero(t, st.Expired)
		})
	}
}
