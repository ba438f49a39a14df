package forwarder

import (
	"fmt"
	"strconv"
	"strings"
)

// Dialect is the SQL dialect of the outbox database.
type Dialect int

const (
	// DialectAuto, the zero value, detects the dialect from the driver of
	// the *sql.DB (pgx, lib/pq, go-sql-driver/mysql, modernc.org/sqlite).
	DialectAuto Dialect = iota
	// Postgres is PostgreSQL ≥ 13 (it needs xid8), through database/sql or pgx.
	Postgres
	// MySQL is MySQL 8 or MariaDB ≥ 10.6, through go-sql-driver/mysql.
	MySQL
	// SQLite is SQLite ≥ 3.35, through modernc.org/sqlite (pure Go).
	SQLite
)

func (d Dialect) String() string {
	switch d {
	case DialectAuto:
		return "auto"
	case Postgres:
		return "postgres"
	case MySQL:
		return "mysql"
	case SQLite:
		return "sqlite"
	}
	return "Dialect(" + strconv.Itoa(int(d)) + ")"
}

// Row status values of the status column.
const (
	statusPending   = 0
	statusPublished = 1
	statusFailed    = 2
)

// schema holds every statement of one outbox, with its table names in.
type schema struct {
	d       Dialect
	table   string // quoted messages table
	channel string // PostgreSQL NOTIFY channel
	lease   string // SQLite: quoted lease table
	lockKey string // PostgreSQL / MySQL relay lock key
	// relayLock and relayUnlock (PostgreSQL, MySQL) take and free the
	// session lock of the active relay; their argument is lockKey.
	// relayLock returns true when it got the lock. relayLockTx is the
	// same lock taken in a transaction (PostgreSQL: freed when it ends;
	// MySQL: GET_LOCK, freed by relayUnlock).
	relayLock, relayLockTx, relayUnlock string
	setup                               []string
	// fetch reads pending rows in relay order after a cursor; see fetchArgs.
	fetch string
	// held reports (PostgreSQL) whether any committed row is pending: after
	// a read that found none, they are held back by an older transaction
	// still running, or committed since the read.
	held string
	// settledStart and settledScan (MySQL) track the settled offset: see
	// gaps.go.
	settledStart, settledScan string
}

func newSchema(d Dialect, name string) schema {
	s := schema{d: d}
	tbl := "watermill_" + name
	switch d {
	case Postgres:
		s.table = `"` + tbl + `"`
		s.channel = tbl
		s.lockKey = "eventkit.relay." + name
		s.relayLock = `SELECT pg_try_advisory_lock(hashtextextended($1 || current_schema(), 0))`
		s.relayLockTx = `SELECT pg_try_advisory_xact_lock(hashtextextended($1 || current_schema(), 0))`
		s.relayUnlock = `SELECT pg_advisory_unlock(hashtextextended($1 || current_schema(), 0))`
		idx := func(suffix string) string { return `"` + tbl + "_" + suffix + `"` }
		fn := `"` + tbl + `_notify"`
		s.setup = []string{
			// Watermill's DefaultPostgreSQLSchema table (same columns, types
			// and primary key), so a stock forwarder can drain it, plus the
			// eventkit columns, all defaulted so that stock inserts work.
			`CREATE TABLE IF NOT EXISTS ` + s.table + ` (
				"offset" BIGSERIAL,
				"uuid" VARCHAR(36) NOT NULL,
				"created_at" TIMESTAMPTZ NOT NULL DEFAULT CURRENT_TIMESTAMP,
				"payload" JSON DEFAULT NULL,
				"metadata" JSON DEFAULT NULL,
				"transaction_id" xid8 NOT NULL DEFAULT pg_current_xact_id(),
				"event_name" VARCHAR(200) NOT NULL DEFAULT '',
				"topic" VARCHAR(255) NOT NULL DEFAULT '',
				"status" SMALLINT NOT NULL DEFAULT 0,
				"attempts" INTEGER NOT NULL DEFAULT 0,
				"last_error" TEXT DEFAULT NULL,
				"published_at" TIMESTAMPTZ DEFAULT NULL,
				PRIMARY KEY ("transaction_id", "offset")
			)`,
			// Marking a row published is not a HOT update (status is in an
			// index predicate), so every index gets an entry: keep them few.
			// Pending rows in relay order; failed rows by offset and by id.
			`CREATE INDEX IF NOT EXISTS ` + idx("pending") + ` ON ` + s.table + ` ("transaction_id", "offset") WHERE "status" = 0`,
			`CREATE INDEX IF NOT EXISTS ` + idx("failed") + ` ON ` + s.table + ` ("offset") WHERE "status" = 2`,
			`CREATE INDEX IF NOT EXISTS ` + idx("failed_uuid") + ` ON ` + s.table + ` ("uuid") WHERE "status" = 2`,
			// One notification per inserting statement wakes the relay; Postgres
			// folds identical notifications of one transaction into one.
			`CREATE OR REPLACE FUNCTION ` + fn + `() RETURNS trigger LANGUAGE plpgsql AS $$
			BEGIN PERFORM pg_notify('` + s.channel + `', ''); RETURN NULL; END $$`,
			`DO $$ BEGIN
				IF NOT EXISTS (SELECT 1 FROM pg_trigger WHERE tgname = '` + tbl + `_notify' AND tgrelid = '` + s.table + `'::regclass) THEN
					CREATE TRIGGER "` + tbl + `_notify" AFTER INSERT ON ` + s.table + ` FOR EACH STATEMENT EXECUTE FUNCTION ` + fn + `();
				END IF;
			END $$`,
		}
		// Rows of transactions below the snapshot's xmin are final; ordering
		// by (transaction_id, offset) among them never skips a transaction
		// that commits late (watermill-sql, issue #311).
		// (The xid column is aliased: ORDER BY a name of the output list
		// would sort the text, not the xid8.)
		s.fetch = `SELECT t."offset", t."transaction_id"::text AS xid, t."uuid", t."payload", t."attempts" FROM ` + s.table + ` AS t
			WHERE t."status" = 0 AND t."transaction_id" < pg_snapshot_xmin(pg_current_snapshot())
			AND (t."transaction_id", t."offset") > ($2::text::xid8, $3)
			ORDER BY t."transaction_id", t."offset" LIMIT $1`
		// After a read that found nothing: is anything pending at all? Rows
		// held back then, or committed since, call for a quick new read.
		// The first pending row in relay order, through the pending index
		// whatever the statistics say: for an EXISTS the planner picks a
		// sequential scan when they count many rows pending (a table
		// analyzed during a backlog, or just filled), and that scan reads
		// every published row before the first pending one (0.8–2.5 ms on
		// 20,000 rows, against 0.1 through the index).
		s.held = `SELECT count(*) > 0 FROM (SELECT 1 FROM ` + s.table +
			` WHERE "status" = 0 ORDER BY "transaction_id", "offset" LIMIT 1) AS p`
	case MySQL:
		s.table = "`" + tbl + "`"
		s.lockKey = "eventkit.relay." + name
		const key = `CONCAT('eventkit.', LEFT(SHA1(CONCAT(DATABASE(), '.', ?)), 40))`
		s.relayLock = `SELECT GET_LOCK(` + key + `, 0) = 1`
		// Adopt and hand-over wait up to 2 s: a relay that has just stopped
		// on a connection gone bad frees its lock only when the server
		// ends that session, a moment after the client closed it.
		s.relayLockTx = `SELECT GET_LOCK(` + key + `, 2) = 1`
		s.relayUnlock = `SELECT RELEASE_LOCK(` + key + `)`
		s.setup = []string{
			// Watermill's DefaultMySQLSchema table plus the eventkit columns.
			"CREATE TABLE IF NOT EXISTS " + s.table + ` (
				` + "`offset`" + ` BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
				` + "`uuid`" + ` VARCHAR(36) NOT NULL,
				` + "`created_at`" + ` TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
				` + "`payload`" + ` JSON DEFAULT NULL,
				` + "`metadata`" + ` JSON DEFAULT NULL,
				` + "`event_name`" + ` VARCHAR(200) NOT NULL DEFAULT '',
				` + "`topic`" + ` VARCHAR(255) NOT NULL DEFAULT '',
				` + "`status`" + ` TINYINT NOT NULL DEFAULT 0,
				` + "`attempts`" + ` INT NOT NULL DEFAULT 0,
				` + "`last_error`" + ` TEXT DEFAULT NULL,
				` + "`published_at`" + ` TIMESTAMP(6) NULL DEFAULT NULL,
				KEY ` + "`status_offset` (`status`, `offset`)" + `,
				KEY ` + "`uuid` (`uuid`)" + `
			) ENGINE=InnoDB`,
		}
		// A locking read waits for the transactions still inserting rows in
		// the scanned range, so a row that commits late is not overtaken.
		// It reads up to the settled offset (see gaps.go): above it, an
		// offset may be allocated to an insert not in the index yet.
		s.fetch = "SELECT `offset`, '', `uuid`, `payload`, `attempts` FROM " + s.table +
			" FORCE INDEX (`status_offset`) WHERE `status` = 0 AND `offset` > ? AND `offset` <= ? ORDER BY `offset` LIMIT ? LOCK IN SHARE MODE"
		s.settledStart = "SELECT COALESCE(MAX(`offset`), 0), @@auto_increment_increment FROM " + s.table +
			" WHERE `created_at` < NOW(6) - INTERVAL ? MICROSECOND"
		s.settledScan = "SELECT `offset` FROM " + s.table + " WHERE `offset` > ? ORDER BY `offset` LIMIT ? LOCK IN SHARE MODE"
	case SQLite:
		s.table = `"` + tbl + `"`
		s.lease = `"` + tbl + `_lease"`
		idx := func(suffix string) string { return `"` + tbl + "_" + suffix + `"` }
		s.setup = []string{
			`CREATE TABLE IF NOT EXISTS ` + s.table + ` (
				"offset" INTEGER PRIMARY KEY AUTOINCREMENT,
				"uuid" TEXT NOT NULL,
				"created_at" INTEGER NOT NULL,
				"payload" TEXT,
				"metadata" TEXT,
				"event_name" TEXT NOT NULL DEFAULT '',
				"topic" TEXT NOT NULL DEFAULT '',
				"status" INTEGER NOT NULL DEFAULT 0,
				"attempts" INTEGER NOT NULL DEFAULT 0,
				"last_error" TEXT,
				"published_at" INTEGER
			)`,
			`CREATE INDEX IF NOT EXISTS ` + idx("pending") + ` ON ` + s.table + ` ("offset") WHERE "status" = 0`,
			`CREATE INDEX IF NOT EXISTS ` + idx("failed") + ` ON ` + s.table + ` ("offset") WHERE "status" = 2`,
			`CREATE INDEX IF NOT EXISTS ` + idx("uuid") + ` ON ` + s.table + ` ("uuid")`,
			`CREATE TABLE IF NOT EXISTS ` + s.lease + ` (
				"id" INTEGER PRIMARY KEY CHECK ("id" = 1),
				"owner" TEXT NOT NULL,
				"expires_at" INTEGER NOT NULL
			)`,
		}
		// SQLite has one writer at a time, so offset order is commit order.
		s.fetch = `SELECT "offset", '', "uuid", "payload", "attempts" FROM ` + s.table + `
			WHERE "status" = 0 AND "offset" > ? ORDER BY "offset" LIMIT ?`
	}
	return s
}

// fetchArgs returns the arguments of fetch: up to limit rows after the
// cursor row (nil: from the start).
// On MySQL it reads only up to the settled offset upTo.
func (s schema) fetchArgs(limit int, after *row, upTo int64) []any {
	var xid string
	var off int64
	if after != nil {
		xid, off = after.xid, after.offset
	}
	switch s.d {
	case Postgres:
		if xid == "" {
			xid = "0"
		}
		return []any{limit, xid, off}
	case MySQL:
		return []any{off, upTo, limit}
	default:
		return []any{off, limit}
	}
}

// ph returns the i-th (1-based) placeholder.
func (s schema) ph(i int) string {
	if s.d == Postgres {
		return "$" + strconv.Itoa(i)
	}
	return "?"
}

// col quotes a column name.
func (s schema) col(c string) string {
	if s.d == MySQL {
		return "`" + c + "`"
	}
	return `"` + c + `"`
}

// insert returns the statement inserting n rows; each row takes the args
// uuid, payload, event_name, topic (and created_at on SQLite).
func (s schema) insert(n int) string {
	var b strings.Builder
	b.WriteString("INSERT INTO " + s.table + " (" + s.col("uuid") + ", " + s.col("payload") + ", " +
		s.col("metadata") + ", " + s.col("event_name") + ", " + s.col("topic"))
	per := 4
	if s.d == SQLite {
		b.WriteString(", " + s.col("created_at"))
		per = 5
	}
	b.WriteString(") VALUES ")
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		base := i * per
		fmt.Fprintf(&b, "(%s,%s,'{}',%s,%s", s.ph(base+1), s.ph(base+2), s.ph(base+3), s.ph(base+4))
		if s.d == SQLite {
			b.WriteString("," + s.ph(base+5))
		}
		b.WriteByte(')')
	}
	return b.String()
}

// markPublished returns the statement marking rows published; only rows
// still pending change, so a row requeued meanwhile is never touched. With
// deleteRows (OutboxConfig.DeletePublished) it deletes them instead.
func (s schema) markPublished(rs []*row, nowMicros int64, deleteRows bool) (string, []any) {
	switch s.d {
	case Postgres:
		xids := make([]string, len(rs))
		offs := make([]string, len(rs))
		for i, r := range rs {
			xids[i] = r.xid
			offs[i] = strconv.FormatInt(r.offset, 10)
		}
		args := []any{"{" + strings.Join(xids, ",") + "}", "{" + strings.Join(offs, ",") + "}"}
		// The rows are found one by one through the pending index (the
		// LATERAL … LIMIT 1 cannot be flattened into a join), then changed
		// by ctid. Joined with the unnest directly, the planner hashes the
		// whole table for each batch on tables of a few 10,000 rows: 9–15
		// ms for 1,000 rows of 20,000 against 5–7 ms. A row changed
		// concurrently between the two (nothing does while this relay
		// leads) fails the ctid recheck and stays pending: published again.
		rows := `ARRAY(SELECT p.ctid FROM unnest($1::text::xid8[], $2::text::bigint[]) AS v(x, o),
			LATERAL (SELECT ctid FROM ` + s.table + ` WHERE "transaction_id" = v.x AND "offset" = v.o AND "status" = 0 LIMIT 1) AS p)`
		if deleteRows {
			return `DELETE FROM ` + s.table + ` AS t WHERE t.ctid = ANY (` + rows + `) AND t."status" = 0`, args
		}
		return `UPDATE ` + s.table + ` AS t SET "status" = 1, "published_at" = CURRENT_TIMESTAMP
			WHERE t.ctid = ANY (` + rows + `) AND t."status" = 0`, args
	case MySQL:
		if deleteRows {
			return "DELETE FROM " + s.table + " WHERE `offset` IN (" + offsetList(rs) + ") AND `status` = 0", nil
		}
		return "UPDATE " + s.table + " SET `status` = 1, `published_at` = CURRENT_TIMESTAMP(6) WHERE `offset` IN (" +
			offsetList(rs) + ") AND `status` = 0", nil
	default:
		if deleteRows {
			return `DELETE FROM ` + s.table + ` WHERE "offset" IN (` + offsetList(rs) + `) AND "status" = 0`, nil
		}
		return `UPDATE ` + s.table + ` SET "status" = 1, "published_at" = ` + strconv.FormatInt(nowMicros, 10) +
			` WHERE "offset" IN (` + offsetList(rs) + `) AND "status" = 0`, nil
	}
}

func offsetList(rs []*row) string {
	b := make([]byte, 0, len(rs)*8)
	for i, r := range rs {
		if i > 0 {
			b = append(b, ',')
		}
		b = strconv.AppendInt(b, r.offset, 10)
	}
	return string(b)
}

// reject returns the statement recording a rejection of one row: attempts
// grows by one and the row is parked as failed once it reaches max.
func (s schema) reject(r *row, errText string, maxAttempts int) (string, []any) {
	switch s.d {
	case Postgres:
		return `UPDATE ` + s.table + ` SET "status" = CASE WHEN "attempts" + 1 >= $1 THEN 2 ELSE 0 END,
			"attempts" = "attempts" + 1, "last_error" = $2
			WHERE "transaction_id" = $3::text::xid8 AND "offset" = $4 AND "status" = 0`,
			[]any{maxAttempts, errText, r.xid, r.offset}
	case MySQL:
		// status first: MySQL assigns left to right with updated values.
		return "UPDATE " + s.table + " SET `status` = IF(`attempts` + 1 >= ?, 2, 0), `attempts` = `attempts` + 1, " +
			"`last_error` = ? WHERE `offset` = ? AND `status` = 0", []any{maxAttempts, errText, r.offset}
	default:
		return `UPDATE ` + s.table + ` SET "status" = CASE WHEN "attempts" + 1 >= ? THEN 2 ELSE 0 END,
			"attempts" = "attempts" + 1, "last_error" = ? WHERE "offset" = ? AND "status" = 0`,
			[]any{maxAttempts, errText, r.offset}
	}
}

// order is the relay's order of pending rows.
func (s schema) order() string {
	if s.d == Postgres {
		return `"transaction_id", "offset"`
	}
	return s.col("offset")
}

func (s schema) counts() string {
	return "SELECT " + s.col("status") + ", COUNT(*) FROM " + s.table + " GROUP BY " + s.col("status")
}

// oldestPending returns the age in microseconds of the next row to relay.
func (s schema) oldestPending() string {
	switch s.d {
	case Postgres:
		return `SELECT (EXTRACT(EPOCH FROM (CURRENT_TIMESTAMP - "created_at")) * 1000000)::bigint FROM ` + s.table +
			` WHERE "status" = 0 ORDER BY "transaction_id", "offset" LIMIT 1`
	case MySQL:
		return "SELECT TIMESTAMPDIFF(MICROSECOND, `created_at`, CURRENT_TIMESTAMP(6)) FROM " + s.table +
			" WHERE `status` = 0 ORDER BY `offset` LIMIT 1"
	default:
		return `SELECT ? - "created_at" FROM ` + s.table + ` WHERE "status" = 0 ORDER BY "offset" LIMIT 1`
	}
}

// list returns the rows of one status, oldest first, up to the limit arg;
// created_at comes as unix microseconds.
func (s schema) list(status int) string {
	var created string
	switch s.d {
	case Postgres:
		created = `(EXTRACT(EPOCH FROM "created_at") * 1000000)::bigint`
	case MySQL:
		created = "CAST(UNIX_TIMESTAMP(`created_at`) * 1000000 AS SIGNED)"
	default:
		created = `"created_at"`
	}
	order := s.order()
	if status != statusPending {
		order = s.col("offset")
	}
	return "SELECT " + s.col("uuid") + ", " + s.col("event_name") + ", " + s.col("topic") + ", " +
		s.col("attempts") + ", COALESCE(" + s.col("last_error") + ", ''), " + created +
		" FROM " + s.table + " WHERE " + s.col("status") + " = " + strconv.Itoa(status) +
		" ORDER BY " + order + " LIMIT " + s.ph(1)
}

// requeue returns the statement moving n failed rows, by event id, back
// to pending with a fresh attempt budget.
func (s schema) requeue(n int) string {
	var b strings.Builder
	b.WriteString("UPDATE " + s.table + " SET " + s.col("status") + " = 0, " + s.col("attempts") +
		" = 0 WHERE " + s.col("status") + " = 2 AND " + s.col("uuid") + " IN (")
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(s.ph(i + 1))
	}
	b.WriteByte(')')
	return b.String()
}

// purge returns the statement deleting one batch of published rows older
// than a cutoff; args: age in microseconds (SQLite: the cutoff in unix
// microseconds), batch size. It walks the primary key from the oldest row:
// published rows are old rows, and no index on published_at has to be kept
// up to date by every mark.
func (s schema) purge() string {
	switch s.d {
	case Postgres:
		return `DELETE FROM ` + s.table + ` WHERE ctid = ANY (ARRAY(SELECT ctid FROM ` + s.table + `
			WHERE "status" = 1 AND "published_at" < CURRENT_TIMESTAMP - ($1::bigint * INTERVAL '1 microsecond')
			ORDER BY "transaction_id", "offset" LIMIT $2))`
	case MySQL:
		return "DELETE FROM " + s.table + " WHERE `status` = 1 AND `published_at` < CURRENT_TIMESTAMP(6) - INTERVAL ? MICROSECOND " +
			"ORDER BY `offset` LIMIT ?"
	default:
		return `DELETE FROM ` + s.table + ` WHERE "offset" IN (SELECT "offset" FROM ` + s.table + `
			WHERE "status" = 1 AND "published_at" < ? ORDER BY "offset" LIMIT ?)`
	}
}
