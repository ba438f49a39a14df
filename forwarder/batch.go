package forwarder

import (
	"context"
	"fmt"

	"github.com/ThreeDotsLabs/watermill/message"
)

// row is one outbox row in flight.
type row struct {
	offset   int64
	xid      string // PostgreSQL transaction_id
	uuid     string
	attempts int
	topic    string
	msg      *message.Message // nil when the payload does not decode
	bad      error            // why it does not
}

// cursorReset is how many consecutive batches the relay reads after a
// cursor before it reads from the start again, so that a row requeued
// while the relay never catches up is still picked up.
const cursorReset = 64

// fetched is the outcome of one read.
type fetched struct {
	batch []*row
	err   error
}

func (r *Relay) fetch(ctx context.Context, q querier, after *row) ([]*row, error) {
	var upTo int64
	if r.ob.cfg.Dialect == MySQL {
		var err error
		if upTo, err = r.gaps.advance(ctx, q, r); err != nil {
			return nil, err
		}
	}
	rs, err := q.query(ctx, r.ob.s.fetch, r.ob.s.fetchArgs(r.cfg.BatchSize, after, upTo)...)
	if err != nil {
		return nil, err
	}
	defer rs.Close()
	batch := make([]*row, 0, r.cfg.BatchSize)
	var payload borrowed // decoded before the next row
	for rs.Next() {
		rw := &row{}
		if err := rs.Scan(&rw.offset, &rw.xid, &rw.uuid, &payload, &rw.attempts); err != nil {
			return nil, err
		}
		topic, msg, err := unwrap(payload)
		if err != nil {
			rw.bad = fmt.Errorf("undecodable row: %w", err)
		} else {
			rw.topic, rw.msg = topic, msg
		}
		batch = append(batch, rw)
	}
	return batch, rs.Err()
}

// groupByTopic splits rows by topic, keeping their order within a topic;
// topics come in the order of their first row.
func groupByTopic(rows []*row) [][]*row {
	if len(rows) == 0 {
		return nil
	}
	same := true
	for _, rw := range rows[1:] {
		if rw.topic != rows[0].topic {
			same = false
			break
		}
	}
	if same {
		return [][]*row{rows}
	}
	idx := map[string]int{}
	var groups [][]*row
	for _, rw := range rows {
		i, ok := idx[rw.topic]
		if !ok {
			i = len(groups)
			idx[rw.topic] = i
			groups = append(groups, nil)
		}
		groups[i] = append(groups[i], rw)
	}
	return groups
}
