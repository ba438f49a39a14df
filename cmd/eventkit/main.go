// Command eventkit operates eventkit outboxes, dead-letter queues and event
// contracts.
//
//	eventkit migrate --db URL [--outbox NAME]... [--inbox TABLE]...
//	eventkit outbox stats     --db URL [--outbox NAME] [--json]
//	eventkit outbox pending   --db URL [--outbox NAME] [--limit N] [--json]
//	eventkit outbox failed    --db URL [--outbox NAME] [--limit N] [--json]
//	eventkit outbox scheduled --db URL [--outbox NAME] [--limit N] [--json]
//	eventkit outbox requeue   --db URL [--outbox NAME] [--json] EVENT_ID...
//	eventkit outbox purge     --db URL [--outbox NAME] --older-than DURATION [--json]
//	eventkit outbox adopt     --db URL [--outbox NAME] [--forwarder-group G] [--json]
//	eventkit outbox handover  --db URL [--outbox NAME] [--forwarder-group G] [--json]
//	eventkit dlq list   --transport URL --topic TOPIC [--group G] [--handler H] [--reason R]
//	                    [--older-than D] [--newer-than D] [--limit N] [--idle D] [--json]
//	eventkit dlq replay (the flags of dlq list)
//	eventkit console  [--db URL] [--outbox NAME]... [--inbox TABLE]... [--transport URL] [--dlq TOPIC]...
//	                  [--listen 127.0.0.1:8089] [--token T | $EVENTKIT_CONSOLE_TOKEN] [--private] [--mask FIELD]...
//	eventkit contracts export [--service S] [--format json|yaml] SNAPSHOT
//	eventkit contracts check  --against OLD [--mode M] CURRENT
//	eventkit version
//
// Every command and group prints its own usage, flags and defaults with
// --help (also: eventkit help COMMAND). --db defaults to $EVENTKIT_DB, then
// $DATABASE_URL; --transport to $EVENTKIT_TRANSPORT, then $TRANSPORT_URL.
// Database URLs: postgres://…, mysql://…, sqlite:path. Output is a
// human-readable table or sentence, or JSON with --json; every command that
// changes something says how many rows or messages it changed.
//
// The reading commands (outbox stats, pending, failed, scheduled; dlq list)
// create nothing: a missing SQLite file, outbox table or dead-letter topic
// is reported (exit 1), never created or declared; SQLite is opened
// read-only. dlq list browses the dead-letter topic (middleware.BrowseDLQ,
// transports.Transport.Browse): it takes, moves and changes nothing.
//
// Exit codes: 0 success; 1 the operation failed (database or broker error,
// missing outbox or dead-letter topic); 2 bad usage (unknown command or
// flag, a missing required flag, a URL that does not parse or has an
// unknown scheme, an invalid topic, group, outbox or inbox name or flag
// value). Errors go to standard error and never contain passwords.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
