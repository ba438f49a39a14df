// Command eventkit operates eventkit outboxes and dead-letter queues.
//
//	eventkit migrate --db URL [--outbox NAME]... [--inbox TABLE]...
//	eventkit outbox stats|pending|failed --db URL [--outbox NAME] [--limit N] [--json]
//	eventkit outbox requeue --db URL [--outbox NAME] EVENT_ID...
//	eventkit outbox purge --db URL [--outbox NAME] --older-than DURATION [--json]
//	eventkit dlq list|replay --transport URL --topic TOPIC [filters] [--json]
//
// --db defaults to $EVENTKIT_DB, then $DATABASE_URL; --transport to
// $EVENTKIT_TRANSPORT, then $TRANSPORT_URL. Database URLs: postgres://…,
// mysql://…, sqlite:path. Output is a human-readable table, or JSON with
// --json.
//
// Exit codes: 0 success; 1 the operation failed (database or broker error);
// 2 bad usage (unknown command, bad flag or argument). Errors go to standard
// error and never contain passwords.
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
