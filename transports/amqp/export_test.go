package amqp

// UnmarshalForTest exposes unmarshal to the external tests.
var UnmarshalForTest = unmarshal

// KickerGets returns how many basic.gets the publisher's delay-queue
// kicker sent (0 when it has none).
func KickerGets(p *Publisher) int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.kick == nil {
		return 0
	}
	return p.kick.gets.Load()
}

// PublisherWrites returns how many writes the publisher's current
// connection made to the network (0 when it has none).
func PublisherWrites(p *Publisher) int64 {
	p.conn.mu.Lock()
	defer p.conn.mu.Unlock()
	if p.conn.wire == nil {
		return 0
	}
	return p.conn.wire.writes.Load()
}
