package forwarder

import (
	"context"
	"testing"
)

// BenchmarkMarkPublished marks (or deletes) a batch of 1,000 rows of a
// PostgreSQL outbox a relay has been draining, just filled and not yet
// analyzed: 100,000 rows published and 20,000 pending. Each run's
// transaction is rolled back, so every run marks the same rows; ns/op is
// per batch.
//
//	go test -run '^$' -bench MarkPublished -count 6 ./forwarder/
func BenchmarkMarkPublished(b *testing.B) {
	db, s, rs := markTable(b, "markbench", 100_000, 20_000, false)
	ctx := context.Background()
	for _, bc := range []struct {
		name string
		del  bool
	}{{"mark", false}, {"delete", true}} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				stmt, args := s.markPublished(rs, 0, bc.del)
				tx, err := db.BeginTx(ctx, nil)
				if err != nil {
					b.Fatal(err)
				}
				res, err := tx.ExecContext(ctx, stmt, args...)
				if err != nil {
					b.Fatal(err)
				}
				if n, _ := res.RowsAffected(); n != int64(len(rs)) {
					b.Fatalf("%d rows changed, want %d", n, len(rs))
				}
				if err := tx.Rollback(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
