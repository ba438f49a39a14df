package amqp

import (
	"fmt"

	amqp "github.com/rabbitmq/amqp091-go"
)

// confirmChannel is a channel in confirm mode used by one Publish call at a
// time. A goroutine collects the messages the broker returns as unroutable;
// it ends when the channel closes.
type confirmChannel struct {
	conn *amqp.Connection
	ch   *amqp.Channel
	wire *corkedConn // conn's network connection; nil when unknown

	take     chan chan []string // asks the collector for the returns so far
	done     chan struct{}      // closed when the collector ends
	leftover []string           // returns collected before the end, read after done
}

func openConfirmChannel(conn *amqp.Connection) (*confirmChannel, error) {
	ch, err := conn.Channel()
	if err != nil {
		return nil, fmt.Errorf("open channel: %w", err)
	}
	if err := ch.Confirm(false); err != nil {
		_ = ch.Close()
		return nil, fmt.Errorf("enable publisher confirms: %w", err)
	}
	c := &confirmChannel{
		conn: conn,
		ch:   ch,
		take: make(chan chan []string),
		done: make(chan struct{}),
	}
	// Unbuffered: the broker sends basic.return before the basic.ack of the
	// same message, and amqp091-go hands it over before it processes the
	// ack. So once a message is confirmed, its return (if any) has been
	// received by the collector.
	go c.collect(ch.NotifyReturn(make(chan amqp.Return)))
	return c, nil
}

func (c *confirmChannel) collect(returns <-chan amqp.Return) {
	var ids []string
	defer func() {
		c.leftover = ids
		close(c.done)
	}()
	for {
		select {
		case r, ok := <-returns:
			if !ok {
				return
			}
			id, _ := r.Headers[UUIDHeader].(string)
			ids = append(ids, id)
		case reply := <-c.take:
			reply <- ids
			ids = nil
		}
	}
}

// returned gives the UUIDs of the messages returned since the last call.
func (c *confirmChannel) returned() []string {
	reply := make(chan []string, 1)
	select {
	case c.take <- reply:
		return <-reply
	case <-c.done:
		ids := c.leftover
		c.leftover = nil
		return ids
	}
}

// usable reports whether the channel is open on the current connection.
func (c *confirmChannel) usable(conn *amqp.Connection) bool {
	return c.conn == conn && !c.ch.IsClosed()
}

// close closes the channel and waits for the collector to end.
func (c *confirmChannel) close() {
	_ = c.ch.Close()
	<-c.done
}
