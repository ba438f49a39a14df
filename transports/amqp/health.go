package amqp

import "context"

// Health reports whether the broker is reachable: the publisher's connection
// is open (it is dialed again if it was lost), and so is the subscribers'
// connection once a subscriber dialed it. The error, password redacted,
// wraps ErrNotConnected while the broker is unreachable.
func (t *Transport) Health(ctx context.Context) error {
	if _, err := t.pub.conn.get(ctx); err != nil {
		return t.secrets.Error(err)
	}
	t.consume.mu.Lock()
	dialed := t.consume.conn != nil || t.consume.lastErr != nil
	t.consume.mu.Unlock()
	if dialed {
		if _, err := t.consume.get(ctx); err != nil {
			return t.secrets.Error(err)
		}
	}
	return nil
}
