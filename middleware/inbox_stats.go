package middleware

import (
	"context"
	"database/sql"
	"fmt"
	"time"
)

// InboxStats is what an inbox holds, as SQLInbox.Stats counts it.
type InboxStats struct {
	// Keys is how many keys the inbox holds, counted up to the limit given
	// to Stats; Truncated says the count stopped there.
	Keys      int64
	Truncated bool
	// Handlers counts the keys of each handler among those counted.
	Handlers map[string]int64
	// Oldest is when the oldest key was recorded; zero for an empty inbox.
	Oldest time.Time
	// Expired is how many keys are older than the retention, counted up to
	// the limit: what a Purger deletes at its next round. A Purger that
	// runs keeps it near 0; one that does not, or lags, lets it grow.
	Expired int64
}

// Stats counts the keys of the inbox, per handler, the oldest one and the
// ones past Retention, reading at most limit rows for each count (limit ≤ 0:
// InboxStatsLimitDefault), so that a page or a scrape never scans a table of
// millions: a count that reached limit is reported as Truncated. It reads
// only: no lock, no write.
func (s *SQLInbox) Stats(ctx context.Context, limit int64) (InboxStats, error) {
	if limit <= 0 {
		limit = InboxStatsLimitDefault
	}
	st := InboxStats{Handlers: map[string]int64{}}
	t := s.cfg.Table // validated: safe to splice
	ph := "?"
	if s.dialect == postgres {
		ph = "$1"
	}
	rows, err := s.db.QueryContext(ctx, `SELECT handler, COUNT(*) FROM (SELECT handler FROM `+t+` LIMIT `+fmt.Sprint(limit)+`) AS k GROUP BY handler`)
	if err != nil {
		return st, fmt.Errorf("middleware: inbox stats of %s: %w", t, err)
	}
	defer rows.Close()
	for rows.Next() {
		var h string
		var n int64
		if err := rows.Scan(&h, &n); err != nil {
			return st, fmt.Errorf("middleware: inbox stats of %s: %w", t, err)
		}
		st.Handlers[h] = n
		st.Keys += n
	}
	if err := rows.Err(); err != nil {
		return st, fmt.Errorf("middleware: inbox stats of %s: %w", t, err)
	}
	rows.Close()
	st.Truncated = st.Keys >= limit
	if st.Keys == 0 {
		return st, nil
	}
	// processed_at is indexed: the oldest key and the expired ones are read
	// through the index.
	var age string // of the oldest key, in microseconds
	switch s.dialect {
	case postgres:
		age = `(EXTRACT(EPOCH FROM (CURRENT_TIMESTAMP - MIN(processed_at))) * 1000000)::bigint`
	case mysql:
		age = `TIMESTAMPDIFF(MICROSECOND, MIN(processed_at), UTC_TIMESTAMP(6))` // keys are written in UTC
	default:
		age = fmt.Sprint(time.Now().UnixMicro(), ` - MIN(processed_at)`)
	}
	var micros sql.NullInt64
	if err := s.db.QueryRowContext(ctx, `SELECT `+age+` FROM `+t).Scan(&micros); err != nil {
		return st, fmt.Errorf("middleware: inbox stats of %s: %w", t, err)
	}
	if micros.Valid {
		st.Oldest = time.Now().Add(-time.Duration(micros.Int64) * time.Microsecond).UTC()
	}
	cutoff := s.timeArg(time.Now().Add(-s.cfg.Retention))
	err = s.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM (SELECT 1 FROM `+t+` WHERE processed_at < `+ph+` LIMIT `+fmt.Sprint(limit)+`) AS e`, cutoff).Scan(&st.Expired)
	if err != nil {
		return st, fmt.Errorf("middleware: inbox stats of %s: %w", t, err)
	}
	return st, nil
}

// InboxStatsLimitDefault is the default limit of SQLInbox.Stats.
const InboxStatsLimitDefault = 1_000_000
