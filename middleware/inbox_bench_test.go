package middleware_test

import (
	"context"
	"strconv"
	"sync/atomic"
	"testing"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/stretchr/testify/require"

	"github.com/b2131a45/eventkit/middleware"
)

// BenchmarkPostgresInboxClaimCommit measures a claim and its commit on
// PostgreSQL from 16 goroutines at once (messages in flight), with one
// transaction per claim (database/sql, and a pgx pool), with GroupCommit
// and with GroupTx; ns/op is per message.
//
//	go test -run '^$' -bench PostgresInbox -benchtime 5000x ./middleware/
func BenchmarkPostgresInboxClaimCommit(b *testing.B) {
	for _, bc := range []struct {
		name string
		new  func(b *testing.B) *middleware.SQLInbox
	}{
		{"per-message", func(b *testing.B) *middleware.SQLInbox {
			s, _ := newSQLInbox(b, sqlBackends[0], middleware.InboxConfig{})
			return s
		}},
		{"group-commit", func(b *testing.B) *middleware.SQLInbox {
			s, _ := newSQLInbox(b, sqlBackends[0], middleware.InboxConfig{GroupCommit: true})
			return s
		}},
		{"pool", func(b *testing.B) *middleware.SQLInbox {
			s, _ := newPGInbox(b, pgModes[0], middleware.InboxConfig{}, "")
			return s
		}},
		{"grouptx", func(b *testing.B) *middleware.SQLInbox {
			s, _ := newPGInbox(b, pgModes[1], middleware.InboxConfig{}, "")
			return s
		}},
		{"pool-grouptx", func(b *testing.B) *middleware.SQLInbox {
			s, _ := newPGInbox(b, pgModes[2], middleware.InboxConfig{}, "")
			return s
		}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			s := bc.new(b)
			ctx := context.Background()
			var seq atomic.Int64
			b.SetParallelism(8) // × GOMAXPROCS goroutines
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					k := middleware.InboxKey{Handler: "bench", EventID: strconv.FormatInt(seq.Add(1), 10)}
					c, err := s.Claim(ctx, k)
					require.NoError(b, err)
					require.NoError(b, c.Commit(ctx))
				}
			})
		})
	}
}

// BenchmarkDeduplicatePostgres runs the Deduplicate middleware around a
// handler that does nothing from 16 goroutines, per inbox mode, with and
// without InTx: what a message costs the inbox on the consume path (without
// InTx the database/sql inbox claims without a *sql.Tx, BEGIN and INSERT in
// one round trip). ns/op is per message.
//
//	go test -run '^$' -bench DeduplicatePostgres -benchtime 5000x ./middleware/
func BenchmarkDeduplicatePostgres(b *testing.B) {
	reg := newRegistry(b)
	routerCtx := handlerContext(b)
	for _, bc := range []struct {
		name string
		m    *pgMode // nil: database/sql, per message
		inTx bool
	}{
		{"sql", nil, false}, {"sql-intx", nil, true},
		{"pool", &pgModes[0], false}, {"pool-intx", &pgModes[0], true},
		{"pool-grouptx-intx", &pgModes[2], true},
	} {
		b.Run(bc.name, func(b *testing.B) {
			var s *middleware.SQLInbox
			if bc.m == nil {
				s, _ = newSQLInbox(b, sqlBackends[0], middleware.InboxConfig{})
			} else {
				s, _ = newPGInbox(b, *bc.m, middleware.InboxConfig{}, "")
			}
			d := newDedup(b, s, bc.inTx)
			h := d.Middleware(func(*message.Message) ([]*message.Message, error) { return nil, nil })
			msgs := make([]*message.Message, b.N)
			for i := range msgs {
				msgs[i] = newEvent(b, reg, "o-1")
				msgs[i].SetContext(routerCtx)
			}
			var next atomic.Int64
			b.SetParallelism(8)
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := h(msgs[next.Add(1)-1]); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}

// handlerContext returns the context a router gives a handler (it carries
// the handler name Deduplicate keys by).
func handlerContext(t testing.TB) context.Context {
	t.Helper()
	reg := newRegistry(t)
	tr := newMemory(t)
	got := make(chan context.Context, 1)
	sub, err := tr.Subscriber("capture")
	require.NoError(t, err)
	r := runRouter(t, sub, "bench.handler", "bench", func(m *message.Message) error {
		got <- context.WithoutCancel(m.Context())
		return nil
	})
	require.NoError(t, tr.Publisher().Publish("bench", newEvent(t, reg, "o-1")))
	ctx := <-got
	require.NoError(t, r.Close())
	return ctx
}
