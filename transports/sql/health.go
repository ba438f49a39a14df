package sql

import "context"

// Health reports whether the database answers a ping. The error has the
// password redacted.
func (t *Transport) Health(ctx context.Context) error {
	return t.secrets.Error(t.db.PingContext(ctx))
}
