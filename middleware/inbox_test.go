package middleware_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/b2131a45/eventkit/events"
	"github.com/b2131a45/eventkit/middleware"
)

type storeCase struct {
	name string
	new  func(t *testing.T) middleware.InboxStore
}

func storeCases() []storeCase {
	cases := []storeCase{{name: "memory", new: func(t *testing.T) middleware.InboxStore {
		s, err := middleware.NewMemoryInbox(middleware.InboxConfig{})
		require.NoError(t, err)
		return s
	}}}
	for _, b := range sqlBackends {
		cases = append(cases, storeCase{name: b.name, new: func(t *testing.T) middleware.InboxStore {
			s, _ := newSQLInbox(t, b, middleware.InboxConfig{})
			return s
		}})
	}
	cases = append(cases, storeCase{name: "postgres-groupcommit", new: func(t *testing.T) middleware.InboxStore {
		s, _ := newSQLInbox(t, sqlBackends[0], middleware.InboxConfig{GroupCommit: true})
		return s
	}})
	for _, m := range pgModes {
		cases = append(cases, storeCase{name: m.name, new: func(t *testing.T) middleware.InboxStore {
			s, _ := newPGInbox(t, m, middleware.InboxConfig{}, "")
			return s
		}})
	}
	return cases
}

func contains(t *testing.T, s middleware.InboxStore, k middleware.InboxKey) bool {
	t.Helper()
	c, ok := s.(interface {
		Contains(context.Context, middleware.InboxKey) (bool, error)
	})
	require.True(t, ok)
	got, err := c.Contains(context.Background(), k)
	require.NoError(t, err)
	return got
}

// TestInboxStores runs the same contract against every store.
func TestInboxStores(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	for _, sc := range storeCases() {
		t.Run(sc.name, func(t *testing.T) {
			t.Parallel()

			t.Run("CommitRecordsRollbackDoesNot", func(t *testing.T) {
				s := sc.new(t)
				k := middleware.InboxKey{Handler: "h", EventID: "e-1"}
				c, err := s.Claim(ctx, k)
				require.NoError(t, err)
				require.NoError(t, c.Rollback())
				require.False(t, contains(t, s, k))

				c, err = s.Claim(ctx, k)
				require.NoError(t, err, "a rolled-back claim leaves no key")
				require.NoError(t, c.Commit(ctx))
				require.NoError(t, c.Rollback(), "rollback after commit is a no-op")
				require.True(t, contains(t, s, k))

				_, err = s.Claim(ctx, k)
				require.ErrorIs(t, err, middleware.ErrDuplicate)
				c, err = s.Claim(ctx, middleware.InboxKey{Handler: "other", EventID: "e-1"})
				require.NoError(t, err, "keys are per handler")
				require.NoError(t, c.Commit(ctx))
			})

			t.Run("ConcurrentClaimWaitsForTheFirst", func(t *testing.T) {
				s := sc.new(t)
				for _, commit := range []bool{true, false} {
					k := middleware.InboxKey{Handler: "h", EventID: "e-" + map[bool]string{true: "c", false: "r"}[commit]}
					first, err := s.Claim(ctx, k)
					require.NoError(t, err)
					type result struct {
						c   middleware.InboxClaim
						err error
					}
					second := make(chan result, 1)
					// The claim lives as long as its context: cancel it
					// only when the test is over.
					claimCtx, cancel := context.WithTimeout(ctx, 20*time.Second)
					t.Cleanup(cancel)
					go func() {
						c, err := s.Claim(claimCtx, k)
						second <- result{c, err}
					}()
					select {
					case r := <-second:
						t.Fatalf("second claim returned while the first was open: %v", r.err)
					case <-time.After(200 * time.Millisecond):
					}
					if commit {
						require.NoError(t, first.Commit(ctx))
						r := <-second
						require.ErrorIs(t, r.err, middleware.ErrDuplicate)
					} else {
						require.NoError(t, first.Rollback())
						r := <-second
						require.NoError(t, r.err, "the first rolled back: the second gets the claim")
						require.NoError(t, r.c.Commit(ctx))
					}
					require.True(t, contains(t, s, k))
				}
			})

			t.Run("PurgeDeletesExpiredKeysInBatches", func(t *testing.T) {
				s := sc.new(t)
				for i := range 5 {
					c, err := s.Claim(ctx, middleware.InboxKey{Handler: "h", EventID: string(rune('a' + i))})
					require.NoError(t, err)
					require.NoError(t, c.Commit(ctx))
				}
				n, err := s.Purge(ctx, time.Now().Add(-time.Hour), 10)
				require.NoError(t, err)
				require.Zero(t, n, "nothing is older than an hour")
				var got []int64
				for range 4 {
					n, err := s.Purge(ctx, time.Now().Add(time.Hour), 2)
					require.NoError(t, err)
					got = append(got, n)
				}
				require.Equal(t, []int64{2, 2, 1, 0}, got)
				require.False(t, contains(t, s, middleware.InboxKey{Handler: "h", EventID: "a"}))
			})

			t.Run("BadKeysArePermanentErrors", func(t *testing.T) {
				s := sc.new(t)
				for _, k := range []middleware.InboxKey{
					{Handler: "", EventID: "e"},
					{Handler: "h", EventID: ""},
					{Handler: "h", EventID: strings.Repeat("x", middleware.MaxEventIDBytes+1)},
					{Handler: strings.Repeat("h", middleware.MaxHandlerNameBytes+1), EventID: "e"},
				} {
					_, err := s.Claim(ctx, k)
					require.Error(t, err)
					require.True(t, events.IsPermanent(err), "%v", err)
				}
				c, err := s.Claim(ctx, middleware.InboxKey{Handler: strings.Repeat("h", middleware.MaxHandlerNameBytes), EventID: strings.Repeat("é", middleware.MaxEventIDBytes/2)})
				require.NoError(t, err, "the longest keys fit")
				require.NoError(t, c.Commit(ctx))
			})

			t.Run("RetentionDefault", func(t *testing.T) {
				require.Equal(t, middleware.InboxRetentionDefault, sc.new(t).Retention())
			})
		})
	}
}

func TestSQLInboxConfig(t *testing.T) {
	t.Parallel()
	for _, b := range sqlBackends {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			for _, table := range []string{
				"inbox; DROP TABLE users", "Inbox", "in-box", `inbox"`, "1inbox", "public.inbox",
				"inbox--", strings.Repeat("x", 49), "inbox ", "ınbox",
			} {
				_, err := b.new(nil, middleware.InboxConfig{Table: table})
				require.Error(t, err, table)
				_, err = b.new(&sqlDBPlaceholder, middleware.InboxConfig{Table: table})
				require.ErrorContains(t, err, "InboxConfig.Table", table)
			}
			_, err := b.new(&sqlDBPlaceholder, middleware.InboxConfig{Retention: -time.Second})
			require.ErrorContains(t, err, "InboxConfig.Retention")
			s, err := b.new(&sqlDBPlaceholder, middleware.InboxConfig{})
			require.NoError(t, err)
			require.Equal(t, middleware.InboxTableDefault, s.Table())
		})
	}
}

func TestSQLInboxSetupIsIdempotentAndConcurrent(t *testing.T) {
	t.Parallel()
	for _, b := range sqlBackends {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			s, db := newSQLInbox(t, b, middleware.InboxConfig{})
			other, err := b.new(db, middleware.InboxConfig{Table: s.Table()})
			require.NoError(t, err)
			errs := make(chan error, 4)
			for range 4 {
				go func() { errs <- other.Setup(context.Background()) }()
			}
			for range 4 {
				require.NoError(t, <-errs)
			}
		})
	}
}
