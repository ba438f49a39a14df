package forwarder

import (
	"context"
	"fmt"
	"strings"
	"time"
)

// maxHeldWait caps the polling interval while committed rows wait for an
// older transaction to end.
const maxHeldWait = 100 * time.Millisecond

// idle waits for d, a notification (when listening) or the end of ctx.
func (r *Relay) idle(ctx context.Context, l *leader, d time.Duration) error {
	if !l.listen {
		sleep(ctx, d)
		return nil
	}
	wctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	if _, err := l.sess.waitNotification(wctx); err != nil && ctx.Err() == nil {
		return fmt.Errorf("wait for notification: %w", err)
	}
	return nil
}

// retryable reports database errors worth an immediate new read: MySQL
// lock waits and deadlocks, SQLite busy.
func retryable(err error) bool {
	s := err.Error()
	return isBusy(err) || strings.Contains(s, "Error 1205") || strings.Contains(s, "Error 1213")
}
