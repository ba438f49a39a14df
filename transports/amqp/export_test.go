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
