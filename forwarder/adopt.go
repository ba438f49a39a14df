package forwarder

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
)

// Errors of AdoptForwarderProgress and HandOverToForwarder.
var (
	// ErrNoForwarderProgress is returned by AdoptForwarderProgress when
	// there is no stock forwarder position to adopt: the offsets table
	// does not exist, or the consumer group has no row in it.
	ErrNoForwarderProgress = errors.New("forwarder: no stock forwarder progress to adopt")
	// ErrRelayActive is returned by AdoptForwarderProgress and
	// HandOverToForwarder when a relay of the outbox is active.
	ErrRelayActive = errors.New("forwarder: a relay is active on the outbox")
)

// maxOffset stands for "no such row" in the MySQL position queries.
const maxOffset = "9223372036854775807"

// AdoptForwarderProgress takes over the progress of a stock Watermill
// forwarder (components/forwarder over a watermill-sql subscriber with
// DefaultPostgreSQLSchema/DefaultMySQLSchema and their default offsets
// adapters, topic Name) that drained this outbox: every pending row at or
// before the forwarder's position marks published, so that the Relay does
// not publish it again. It returns how many rows it changed.
//
// consumerGroup is the SubscriberConfig.ConsumerGroup of the stock
// forwarder's subscriber; components/forwarder sets none, so it is ""
// unless the subscriber was given one. The position is the group's row in
// the watermill-sql offsets table "watermill_offsets_" + Name: on
// PostgreSQL the rows with (transaction_id, offset) <= (
// last_processed_transaction_id, offset_acked), on MySQL the rows with
// offset <= offset_acked, which is exactly what the stock forwarder
// acknowledged. Rows after it stay pending, failed rows and rows already
// published are not touched, and the offsets table is only read. All of it
// happens in one transaction (on one connection) that holds the relay lock
// of the outbox, so no relay starts publishing meanwhile, and the group's
// offsets row (FOR UPDATE), so a stock forwarder still in the middle of a
// batch is waited for. Running it again changes nothing more (it returns 0).
//
// Moving from a stock forwarder to the relay:
//
//  1. stop the stock forwarder (every instance);
//  2. call AdoptForwarderProgress with its consumer group (or run
//     "eventkit outbox adopt");
//  3. start the Relay.
//
// Nothing is lost: every row the stock forwarder had not acknowledged is
// still pending and the relay publishes it. Nothing the stock forwarder
// published is sent again, except what at-least-once already allows: a
// stock forwarder killed in the middle of a batch had published rows of it
// without committing their acknowledgement, and the relay publishes those
// again (consumers remove duplicates by event id). Rows the stock forwarder
// acknowledged without publishing them (AckWhenCannotUnwrap, or a middleware
// that acks after errors) are marked published too. A row an earlier relay
// had parked as failed stays failed even when the stock forwarder published
// it afterwards (Requeue would publish it once more).
//
// On MySQL the stock forwarder reads offset > offset_acked without waiting
// for inserts still in flight, so a row whose transaction committed after
// a higher offset was acknowledged is skipped by it for good. Such a row lies
// below the position and is marked published as well: AdoptForwarderProgress
// cannot tell it from the rows the stock forwarder published. (The relay
// waits for such rows, see Order in the package documentation.)
// PostgreSQL's stock forwarder reads only transactions below the snapshot
// xmin, as the relay does, and skips no row.
//
// Nothing else is shared: the relay neither reads nor advances the stock
// offsets table. Running a stock forwarder again after the relay ran sends
// again everything the relay published since the adoption, unless the
// stock offset is moved first with HandOverToForwarder.
//
// It returns ErrRelayActive when a relay of the outbox is active (stop it
// first; standby relays must be stopped too, or they take over as soon as
// this returns), an error wrapping ErrNoForwarderProgress when the offsets
// table does not exist (no stock forwarder has run on this outbox) or has
// no row for consumerGroup, and an error on SQLite, which has no stock
// forwarder.
func (o *Outbox) AdoptForwarderProgress(ctx context.Context, consumerGroup string) (int64, error) {
	if o.cfg.Dialect == SQLite {
		return 0, o.noStockForwarder("adopt stock forwarder progress")
	}
	st := o.stockStatements()
	var n int64
	err := o.inTxRelaysLocked(ctx, func(q querier) error {
		exists, err := o.offsetsTableExists(ctx, q)
		if err != nil {
			return err
		}
		if !exists {
			return fmt.Errorf("%w in outbox %s: table %s does not exist, so no stock Watermill forwarder has run on this outbox",
				ErrNoForwarderProgress, o.cfg.Name, o.offsetsTable())
		}
		var xid string
		var off int64
		dest := []any{&xid, &off}
		if o.cfg.Dialect == MySQL {
			dest = []any{&off}
		}
		if err := scanOne(ctx, q, dest, st.position, consumerGroup); err != nil {
			if errors.Is(err, sql.ErrNoRows) {
				return o.unknownGroup(ctx, q, consumerGroup)
			}
			return err
		}
		args := []any{off}
		if o.cfg.Dialect == Postgres {
			args = []any{xid, off}
		}
		n, err = q.exec(ctx, st.adopt, args...)
		return err
	})
	if err != nil {
		return 0, o.adoptErr("adopt stock forwarder progress in outbox "+o.cfg.Name, err)
	}
	o.log.Info("eventkit: adopted stock forwarder progress",
		slog.String("consumer_group", consumerGroup), slog.Int64("rows", n))
	return n, nil
}

// HandOverToForwarder is the reverse of AdoptForwarderProgress: it writes
// the stock forwarder position of consumerGroup (its row in the
// watermill-sql offsets table "watermill_offsets_" + Name, created with
// watermill-sql's own schema if missing) so that a stock Watermill
// forwarder started afterwards goes on where the relay stopped. It returns
// how many rows the relay had published after that position, which the
// stock forwarder publishes again (usually 0).
//
// The position is the last row the relay published contiguously in relay
// order: the last published row before the first row that is pending or
// failed (or the last published row, when none is). Rows of transactions
// still in flight come after it, so none is lost. Rows the relay published
// after a failed row, or after a pending one (a requeued row, or on MySQL a
// row that committed after RelayConfig.GapTimeout), are sent again. A
// failed row is handed over like a pending one: the stock
// forwarder has no parking, so it retries a row the broker keeps rejecting
// forever and the rows behind it wait; deliver failed rows first (Requeue
// and run the relay) when the broker rejected them for good reasons.
//
// Moving from the relay back to a stock forwarder:
//
//  1. stop every relay of the outbox (the active one and the standbys);
//  2. call HandOverToForwarder with the consumer group of the stock
//     forwarder's subscriber ("" by default);
//  3. start the stock forwarder.
//
// The outbox rows keep their status: a relay started later publishes again
// what the stock forwarder published, unless AdoptForwarderProgress runs
// first. Rows already purged from the outbox are not sent again.
//
// Like AdoptForwarderProgress it runs in one transaction holding the relay
// lock. The stock forwarder must not run meanwhile: its row is
// overwritten. It returns ErrRelayActive when a relay of the outbox is
// active, and an error on SQLite, which has no stock forwarder.
func (o *Outbox) HandOverToForwarder(ctx context.Context, consumerGroup string) (int64, error) {
	if o.cfg.Dialect == SQLite {
		return 0, o.noStockForwarder("hand over to a stock forwarder")
	}
	st := o.stockStatements()
	// Not in the transaction: DDL commits it on MySQL.
	if _, err := o.db.exec(ctx, st.createOffsets); err != nil {
		return 0, o.adoptErr("hand over outbox "+o.cfg.Name+" to a stock forwarder", err)
	}
	var resent int64
	err := o.inTxRelaysLocked(ctx, func(q querier) error {
		if o.cfg.Dialect == Postgres {
			return o.handOverPostgres(ctx, q, st, consumerGroup, &resent)
		}
		return o.handOverMySQL(ctx, q, st, consumerGroup, &resent)
	})
	if err != nil {
		return 0, o.adoptErr("hand over outbox "+o.cfg.Name+" to a stock forwarder", err)
	}
	o.log.Info("eventkit: handed over to a stock forwarder",
		slog.String("consumer_group", consumerGroup), slog.Int64("resent", resent))
	return resent, nil
}

// adoptErr wraps a database error; the errors that explain themselves
// (ErrRelayActive, ErrNoForwarderProgress) are returned as they are.
func (o *Outbox) adoptErr(what string, err error) error {
	if errors.Is(err, ErrRelayActive) || errors.Is(err, ErrNoForwarderProgress) {
		return err
	}
	return fmt.Errorf("forwarder: %s: %w", what, err)
}

func (o *Outbox) handOverPostgres(ctx context.Context, q querier, st stockSQL, group string, resent *int64) error {
	// The first row not published, then the last published row before it.
	xid, off := "0", int64(0)
	var fx string
	var fo int64
	err := scanOne(ctx, q, []any{&fx, &fo}, st.firstUnpublished)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		err = scanOne(ctx, q, []any{&xid, &off}, st.lastPublished)
	case err == nil:
		err = scanOne(ctx, q, []any{&xid, &off}, st.lastPublishedBefore, fx, fo)
	}
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return err
	}
	if err := scanOne(ctx, q, []any{resent}, st.publishedAfter, xid, off); err != nil {
		return err
	}
	_, err = q.exec(ctx, st.writePosition, group, off, xid)
	return err
}

func (o *Outbox) handOverMySQL(ctx context.Context, q querier, st stockSQL, group string, resent *int64) error {
	var first, off int64
	if err := scanOne(ctx, q, []any{&first}, st.firstUnpublished); err != nil {
		return err
	}
	if err := scanOne(ctx, q, []any{&off}, st.lastPublishedBefore, first); err != nil {
		return err
	}
	if err := scanOne(ctx, q, []any{resent}, st.publishedAfter, off); err != nil {
		return err
	}
	_, err := q.exec(ctx, st.writePosition, off, off, group)
	return err
}

// inTxRelaysLocked runs fn in a transaction that holds the lock of the
// active relay, so that no relay publishes meanwhile; ErrRelayActive when
// a relay holds it. One connection does it all: a pool of one is enough.
func (o *Outbox) inTxRelaysLocked(ctx context.Context, fn func(q querier) error) error {
	return o.db.inTx(ctx, func(q querier) (err error) {
		var got sql.NullBool
		if err := scanOne(ctx, q, []any{&got}, o.s.relayLockTx, o.s.lockKey); err != nil {
			return err
		}
		if !got.Bool {
			return fmt.Errorf("%w %s: stop every relay of the outbox first", ErrRelayActive, o.cfg.Name)
		}
		if o.cfg.Dialect == MySQL {
			// GET_LOCK belongs to the connection, not the transaction. Freed
			// before the commit, it lets a relay read the rows changed
			// here: its locking read waits for the commit.
			defer func() {
				_, uerr := q.exec(context.WithoutCancel(ctx), o.s.relayUnlock, o.s.lockKey)
				err = errors.Join(err, uerr)
			}()
		}
		return fn(q)
	})
}

func (o *Outbox) noStockForwarder(what string) error {
	return fmt.Errorf("forwarder: %s: outbox %s is on SQLite, and stock Watermill forwarders (watermill-sql) "+
		"run on PostgreSQL and MySQL only", what, o.cfg.Name)
}

// offsetsTable is the (unquoted) watermill-sql offsets table of a stock
// forwarder whose ForwarderTopic is Name.
func (o *Outbox) offsetsTable() string { return "watermill_offsets_" + o.cfg.Name }

func (o *Outbox) offsetsTableExists(ctx context.Context, q querier) (bool, error) {
	var n int64
	var err error
	if o.cfg.Dialect == Postgres {
		// Resolved like the unqualified name in watermill-sql's queries.
		err = scanOne(ctx, q, []any{&n}, `SELECT COUNT(to_regclass($1::text))`, `"`+o.offsetsTable()+`"`)
	} else {
		err = scanOne(ctx, q, []any{&n},
			`SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = DATABASE() AND table_name = ?`, o.offsetsTable())
	}
	return n > 0, err
}

// unknownGroup is the error for a consumer group without a row, naming
// the groups that have one.
func (o *Outbox) unknownGroup(ctx context.Context, q querier, group string) error {
	const show = 20
	found, err := o.consumerGroups(ctx, q, show+1)
	var more string
	switch {
	case err != nil:
		more = fmt.Sprintf(" (listing its groups failed: %v)", err)
	case len(found) == 0:
		more = "; the table has no rows, so no stock forwarder has acknowledged a message yet"
	case len(found) > show:
		more = "; groups found: " + strings.Join(found[:show], ", ") + ", …"
	default:
		more = "; groups found: " + strings.Join(found, ", ")
	}
	return fmt.Errorf("%w in outbox %s: consumer group %q has no row in table %s%s",
		ErrNoForwarderProgress, o.cfg.Name, group, o.offsetsTable(), more)
}

// consumerGroups returns up to limit groups of the offsets table, quoted.
func (o *Outbox) consumerGroups(ctx context.Context, q querier, limit int) ([]string, error) {
	rs, err := q.query(ctx, o.stockStatements().groups, limit)
	if err != nil {
		return nil, err
	}
	defer rs.Close()
	var found []string
	for rs.Next() {
		var g string
		if err := rs.Scan(&g); err != nil {
			return nil, err
		}
		found = append(found, strconv.Quote(g))
	}
	return found, rs.Err()
}

// stockSQL holds the statements on a stock forwarder's offsets table.
type stockSQL struct {
	createOffsets string // watermill-sql's own DDL of the offsets table
	groups        string // consumer groups, arg: limit
	position      string // a group's position, locked; arg: group
	adopt         string // marks pending rows up to a position published
	// firstUnpublished, lastPublished(Before) and publishedAfter find the
	// position of HandOverToForwarder; writePosition stores it.
	firstUnpublished, lastPublished, lastPublishedBefore, publishedAfter, writePosition string
}

func (o *Outbox) stockStatements() stockSQL {
	t := o.s.table
	switch o.cfg.Dialect {
	case Postgres:
		off := `"` + o.offsetsTable() + `"`
		return stockSQL{
			// As DefaultPostgreSQLOffsetsAdapter.SchemaInitializingQueries.
			createOffsets: `CREATE TABLE IF NOT EXISTS ` + off + ` (
				consumer_group VARCHAR(255) NOT NULL,
				offset_acked BIGINT,
				last_processed_transaction_id xid8 NOT NULL,
				PRIMARY KEY(consumer_group)
			)`,
			groups: `SELECT consumer_group FROM ` + off + ` ORDER BY consumer_group LIMIT $1`,
			// A NULL offset_acked reads as 0, as in the stock SelectQuery
			// (no row of that transaction is at or before it).
			position: `SELECT last_processed_transaction_id::text, COALESCE(offset_acked, 0) FROM ` + off +
				` WHERE consumer_group = $1 FOR UPDATE`,
			adopt: `UPDATE ` + t + ` SET "status" = 1, "published_at" = CURRENT_TIMESTAMP
				WHERE "status" = 0 AND ("transaction_id", "offset") <= ($1::text::xid8, $2::bigint)`,
			// Through the partial indexes of pending and failed rows. (The
			// xid is aliased: ORDER BY its output name would sort text.)
			firstUnpublished: `SELECT f."transaction_id"::text AS xid, f."offset" FROM (
				(SELECT "transaction_id", "offset" FROM ` + t + ` WHERE "status" = 0 ORDER BY "transaction_id", "offset" LIMIT 1)
				UNION ALL
				(SELECT "transaction_id", "offset" FROM ` + t + ` WHERE "status" = 2 ORDER BY "transaction_id", "offset" LIMIT 1)
			) AS f ORDER BY f."transaction_id", f."offset" LIMIT 1`,
			lastPublished: `SELECT p."transaction_id"::text AS xid, p."offset" FROM ` + t + ` AS p
				WHERE p."status" = 1 ORDER BY p."transaction_id" DESC, p."offset" DESC LIMIT 1`,
			lastPublishedBefore: `SELECT p."transaction_id"::text AS xid, p."offset" FROM ` + t + ` AS p
				WHERE p."status" = 1 AND (p."transaction_id", p."offset") < ($1::text::xid8, $2::bigint)
				ORDER BY p."transaction_id" DESC, p."offset" DESC LIMIT 1`,
			publishedAfter: `SELECT COUNT(*) FROM ` + t + `
				WHERE "status" = 1 AND ("transaction_id", "offset") > ($1::text::xid8, $2::bigint)`,
			// As DefaultPostgreSQLOffsetsAdapter.AckMessageQuery.
			writePosition: `INSERT INTO ` + off + ` (consumer_group, offset_acked, last_processed_transaction_id)
				VALUES ($1, $2, $3::text::xid8) ON CONFLICT (consumer_group) DO UPDATE SET
				offset_acked = excluded.offset_acked, last_processed_transaction_id = excluded.last_processed_transaction_id`,
		}
	default:
		off := "`" + o.offsetsTable() + "`"
		return stockSQL{
			// As DefaultMySQLOffsetsAdapter.SchemaInitializingQueries.
			createOffsets: `CREATE TABLE IF NOT EXISTS ` + off + ` (
				consumer_group VARCHAR(255) NOT NULL,
				offset_acked BIGINT,
				offset_consumed BIGINT NOT NULL,
				PRIMARY KEY(consumer_group)
			)`,
			groups: `SELECT consumer_group FROM ` + off + ` ORDER BY consumer_group LIMIT ?`,
			// A NULL offset_acked (a group that consumed but acked nothing)
			// reads as 0, as in the stock NextOffsetQuery.
			position: `SELECT COALESCE(offset_acked, 0) FROM ` + off + ` WHERE consumer_group = ? FOR UPDATE`,
			adopt:    "UPDATE " + t + " SET `status` = 1, `published_at` = CURRENT_TIMESTAMP(6) WHERE `status` = 0 AND `offset` <= ?",
			firstUnpublished: "SELECT LEAST(COALESCE((SELECT MIN(`offset`) FROM " + t + " WHERE `status` = 0), " + maxOffset + "), " +
				"COALESCE((SELECT MIN(`offset`) FROM " + t + " WHERE `status` = 2), " + maxOffset + "))",
			lastPublishedBefore: "SELECT COALESCE(MAX(`offset`), 0) FROM " + t + " WHERE `status` = 1 AND `offset` < ?",
			publishedAfter:      "SELECT COUNT(*) FROM " + t + " WHERE `status` = 1 AND `offset` > ?",
			// As DefaultMySQLOffsetsAdapter.AckMessageQuery.
			writePosition: `INSERT INTO ` + off + ` (offset_consumed, offset_acked, consumer_group) VALUES (?, ?, ?)
				ON DUPLICATE KEY UPDATE offset_consumed = VALUES(offset_consumed), offset_acked = VALUES(offset_acked)`,
		}
	}
}
