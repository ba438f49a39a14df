package middleware_test

import (
	"context"
	"strconv"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/b2131a45/eventkit/middleware"
)

// BenchmarkPostgresInboxClaimCommit measures a claim and its commit on
// PostgreSQL from 16 goroutines at once (messages in flight), with one
// transaction per claim and with GroupCommit; ns/op is per message.
//
//	go test -run '^$' -bench PostgresInbox -benchtime 5000x ./middleware/
func BenchmarkPostgresInboxClaimCommit(b *testing.B) {
	for _, bc := range []struct {
		name  string
		group bool
	}{{"per-message", false}, {"group-commit", true}} {
		b.Run(bc.name, func(b *testing.B) {
			s, _ := newSQLInbox(b, sqlBackends[0], middleware.InboxConfig{GroupCommit: bc.group})
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
