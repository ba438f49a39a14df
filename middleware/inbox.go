package middleware

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"regexp"
	"time"
)

// Inbox defaults, used for the zero value of each InboxConfig field.
const (
	InboxTableDefault     = "eventkit_inbox"
	InboxRetentionDefault = 7 * 24 * time.Hour
)

// Limits on the parts of an inbox key; longer ones are rejected with a
// permanent error (they cannot be stored, so the message cannot be
// deduplicated).
const (
	MaxHandlerNameBytes = 200
	MaxEventIDBytes     = 255
)

// ErrDuplicate is returned by InboxStore.Claim when the key was recorded
// before: the handler already handled the event.
var ErrDuplicate = errors.New("middleware: event already handled")

// InboxKey identifies one handling: a handler (consumer group) and an event.
type InboxKey struct {
	Handler string
	EventID string
}

func (k InboxKey) validate() error {
	switch {
	case k.Handler == "":
		return errors.New("middleware: inbox key has no handler name")
	case k.EventID == "":
		return errors.New("middleware: inbox key has no event id")
	case len(k.Handler) > MaxHandlerNameBytes:
		return fmt.Errorf("middleware: handler name is longer than %d bytes", MaxHandlerNameBytes)
	case len(k.EventID) > MaxEventIDBytes:
		return fmt.Errorf("middleware: event id is longer than %d bytes", MaxEventIDBytes)
	}
	return nil
}

// InboxStore is the durable inbox behind Deduplicate: the set of keys whose
// handling succeeded, kept for Retention. Implementations must be safe for
// concurrent use.
type InboxStore interface {
	// Claim starts handling key. It returns ErrDuplicate if key was
	// recorded. While a claim on key is open, a second Claim of the same key
	// waits until the first one is committed (then ErrDuplicate) or rolled
	// back (then it gets the claim), or until ctx ends.
	Claim(ctx context.Context, key InboxKey) (InboxClaim, error)
	// Purge deletes at most limit keys recorded before cutoff and returns how
	// many it deleted.
	Purge(ctx context.Context, cutoff time.Time, limit int) (int64, error)
	// Retention is how long a recorded key is kept: duplicates that arrive
	// later are not recognised.
	Retention() time.Duration
}

// InboxClaim is an open claim on an inbox key.
type InboxClaim interface {
	// Tx is the claim's database transaction, or nil for a store without
	// one. The inbox row is written in it; Commit commits it.
	Tx() *sql.Tx
	// Commit records the key: later claims get ErrDuplicate.
	Commit(ctx context.Context) error
	// Rollback releases the claim without recording the key. It is safe to
	// call after Commit, where it does nothing.
	Rollback() error
}

// InboxConfig configures an inbox store. The zero value of every field is its
// documented default.
type InboxConfig struct {
	// Table is the name of the inbox table (SQL stores): 1 to 48 of
	// [a-z0-9_], starting with a letter or '_'. Defaults to
	// InboxTableDefault.
	Table string
	// Retention is how long recorded keys are kept before Purge may delete
	// them. It must outlast every redelivery of a handled event: the retry
	// horizon (Default checks it), transport redeliveries, and DLQ replays.
	// Defaults to InboxRetentionDefault.
	Retention time.Duration
	// GroupCommit makes a PostgreSQL inbox record the keys of messages
	// handled at the same time in one shared transaction (group commit):
	// the claims made while a group is open are inserted by one statement,
	// and the group commits once, when its last member commits or rolls
	// back. It cuts the database round trips and commits per message by the
	// number of messages in flight (competing consumers, handlers), which is
	// what bounds a per-message inbox's throughput. A group is as large as
	// the claims in flight, so give it many: with 8 consumers, 32 messages
	// in flight each (`?concurrency=32` on an AMQP URL) did 0.92–0.97 of a
	// bare handler's rate in cmd/eventkit-bench, 8 each 0.80–0.90.
	//
	// Every guarantee of a per-message claim holds: a key is recorded only
	// if its handler succeeded and Commit returned nil, and two deliveries
	// of one event never run at once (in-process they wait for each other;
	// across processes on the row lock). The costs: a member's Commit waits
	// for the group's slowest handler, so use it for handlers of similar,
	// short duration; a failed group transaction (a lost connection, or a
	// deadlock between two processes claiming the same events in opposite
	// orders, which PostgreSQL breaks) fails every member, whose messages
	// are then retried; claims have no transaction of their own, so
	// Deduplicate's InTx cannot be used (NewDeduplicate rejects it); and a
	// key released by a member (rolled back) is free again only when its
	// group ends, so one goroutine must not hold a claim while it makes
	// another on the same inbox (Deduplicate never does).
	//
	// PostgreSQL only: NewMySQLInbox and NewSQLiteInbox reject it; a
	// MemoryInbox ignores it. Defaults to false: one transaction per claim.
	GroupCommit bool
	// GroupTx makes a PostgreSQL inbox run the claims in flight in a few
	// shared transactions (group commit that Deduplicate's InTx can use):
	// each member of a group holds the group's connection from its claim
	// to its Commit or Rollback, so the members of one group run one after
	// the other, each in a SAVEPOINT of its own; a member that fails (or
	// whose handler's statement failed) rolls back to its savepoint, which
	// undoes its own writes and inbox row only; the group commits once,
	// when its last member has committed or rolled back. Up to 4 groups
	// take members at once, each on its own connection, of at most 32
	// members (PostgreSQL keeps 64 subtransactions per transaction in
	// shared memory). As with GroupCommit, the more messages in flight the
	// larger the groups (32 per consumer in cmd/eventkit-bench).
	//
	// Every guarantee of a per-message claim holds, InTx's included: a
	// key and the writes its handler made through the claim's transaction
	// are recorded only if the handler succeeded and Commit returned nil.
	// The costs: handlers of a group run one at a time while they hold
	// the transaction, and a member's Commit waits for its group's last
	// member, so use it for short handlers that write only to this
	// database; a failed group transaction (a lost connection, a deadlock
	// between two processes, a statement cancelled because its message
	// context ended) fails every member, whose messages are then retried;
	// with database/sql the members share one *sql.Tx (TxFromContext),
	// which a handler must not commit, roll back or keep; with a pgx pool
	// (NewPostgresInboxPool) each gets a view of it (PgxTxFromContext)
	// that refuses both and closes when the member ends; a claim must not
	// be made while the same goroutine holds another on the inbox.
	//
	// PostgreSQL through pgx only (a pool, or database/sql with the "pgx"
	// driver); it excludes GroupCommit. Defaults to false.
	GroupTx bool
}

var validTable = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,47}$`)

func (c InboxConfig) withDefaults() InboxConfig {
	if c.Table == "" {
		c.Table = InboxTableDefault
	}
	if c.Retention == 0 {
		c.Retention = InboxRetentionDefault
	}
	return c
}

func (c InboxConfig) validate() error {
	if !validTable.MatchString(c.Table) {
		return fmt.Errorf("middleware: InboxConfig.Table %q is invalid: use 1 to 48 of [a-z0-9_], starting with a letter or '_'", c.Table)
	}
	if c.Retention < 0 {
		return fmt.Errorf("middleware: InboxConfig.Retention must be positive, got %s", c.Retention)
	}
	if c.GroupTx && c.GroupCommit {
		return errors.New("middleware: InboxConfig.GroupTx and InboxConfig.GroupCommit exclude each other: GroupTx is the group commit that InTx can use")
	}
	return nil
}
