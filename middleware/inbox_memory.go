package middleware

import (
	"context"
	"database/sql"
	"sync"
	"time"
)

// MemoryInbox is an InboxStore in process memory, for tests, examples and
// single-process programs: it forgets everything when the process stops,
// so it deduplicates only within one process lifetime. It has no
// transaction (Deduplicate's InTx mode needs a SQLInbox). Memory grows with
// the keys recorded within the retention: run a Purger.
type MemoryInbox struct {
	retention time.Duration

	mu   sync.Mutex
	done map[InboxKey]time.Time
	busy map[InboxKey]*memClaim
}

// NewMemoryInbox returns an empty memory inbox. Only cfg.Retention is used.
// It returns an error if cfg is invalid.
func NewMemoryInbox(cfg InboxConfig) (*MemoryInbox, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	return &MemoryInbox{
		retention: cfg.Retention,
		done:      map[InboxKey]time.Time{},
		busy:      map[InboxKey]*memClaim{},
	}, nil
}

// Retention returns InboxConfig.Retention.
func (m *MemoryInbox) Retention() time.Duration { return m.retention }

// Claim implements InboxStore.
func (m *MemoryInbox) Claim(ctx context.Context, key InboxKey) (InboxClaim, error) {
	if err := key.validate(); err != nil {
		return nil, Permanent(err)
	}
	for {
		m.mu.Lock()
		if _, ok := m.done[key]; ok {
			m.mu.Unlock()
			return nil, ErrDuplicate
		}
		open, busy := m.busy[key]
		if !busy {
			c := &memClaim{m: m, key: key}
			m.busy[key] = c
			m.mu.Unlock()
			return c, nil
		}
		if open.ended == nil { // the first waiter makes the channel
			open.ended = make(chan struct{})
		}
		wait := open.ended
		m.mu.Unlock()
		select {
		case <-wait:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// Purge implements InboxStore.
func (m *MemoryInbox) Purge(_ context.Context, cutoff time.Time, limit int) (int64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var n int64
	for k, t := range m.done {
		if n >= int64(limit) {
			break
		}
		if t.Before(cutoff) {
			delete(m.done, k)
			n++
		}
	}
	return n, nil
}

// Contains reports whether key is recorded.
func (m *MemoryInbox) Contains(_ context.Context, key InboxKey) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	_, ok := m.done[key]
	return ok, nil
}

// Len returns how many keys are recorded.
func (m *MemoryInbox) Len() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.done)
}

type memClaim struct {
	m   *MemoryInbox
	key InboxKey
	// guarded by m.mu:
	done  bool
	ended chan struct{} // closed at the end; made only when someone waits
}

func (c *memClaim) Tx() *sql.Tx { return nil }

func (c *memClaim) Commit(context.Context) error {
	c.end(true)
	return nil
}

func (c *memClaim) Rollback() error {
	c.end(false)
	return nil
}

func (c *memClaim) end(record bool) {
	c.m.mu.Lock()
	defer c.m.mu.Unlock()
	if c.done {
		return
	}
	c.done = true
	if record {
		c.m.done[c.key] = time.Now()
	}
	delete(c.m.busy, c.key)
	if c.ended != nil {
		close(c.ended)
	}
}
