// Package sql is the SQL transport for PostgreSQL and MySQL/MariaDB: topics
// are tables, consumer groups are rows of an offsets table, on
// watermill-sql (v4) with its default schemas (DefaultPostgreSQLSchema,
// DefaultMySQLSchema and their offsets adapters), so that stock
// watermill-sql publishers and subscribers with those schemas interoperate
// with it. PostgreSQL is reached through pgx (database/sql driver
// github.com/jackc/pgx/v5/stdlib), MySQL through go-sql-driver/mysql.
//
// # Schema
//
// Topic T is table watermill_T (messages) and watermill_offsets_T (one row
// per consumer group). Both are created when first used. Payloads are
// stored as bytes (BYTEA, LONGBLOB), so any codec fits; metadata as JSON.
// Topic names are limited to letters, digits and - $ : . _, and to 45
// characters so that the table names fit the databases' limits. Rows are
// never deleted: plan retention for busy topics.
//
// # Delivery
//
// Publish inserts the messages of one call in one statement: when it
// returns nil they are committed. Each consumer group reads every message
// of a topic, starting from the first one ever published, so a new group
// receives older events. A subscription reads up to Config.BatchSize rows
// in a transaction that holds the group's offsets row, hands them over one
// at a time, and commits the offset of the last acked one. Delivery is
// at-least-once: messages not acked within Config.AckDeadline, or held by a
// subscriber that stops, are delivered again. A nacked message is delivered
// again after Config.ResendInterval. Subscribers of one group take turns
// (the offsets row is locked), so a group receives a topic in publish order;
// several subscribers give failover, not parallelism.
//
// Caveats of the underlying schemas: on PostgreSQL a long transaction
// anywhere in the database delays delivery until it ends (watermill-sql
// orders rows by transaction id). On MySQL and MariaDB a subscription reads
// under SERIALIZABLE, so while it holds a batch that reached the newest row
// of a topic, inserts into that topic wait for it to commit, at most
// AckDeadline: a slow consumer slows the publishers of its topic. (That lock
// is what keeps rows that commit out of offset order from being skipped.)
//
// # Close
//
// Publisher.Close waits for the Publish calls in flight. Subscriber.Close
// stops its subscriptions; a batch they had not finished is read again by
// the group. A Transport made by Open also closes its database pool.
//
// Where this package sits among the others, and the path of an event through
// them: docs/architecture.md in the repository.
package sql
