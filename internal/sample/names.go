package sample

import (
	"fmt"
	"regexp"
)

// Namespace keeps one set of the sample's orders, inventory and payments
// apart from another on the same broker and database, so that neither takes
// the other's events: the quickstart runs in QuickstartNamespace while the
// sample services (namespace "") run.
//
// The events keep their names (orders.order_created, the wire contract);
// what a namespace prefixes is where they travel and are kept:
//
//   - topics: quickstart.orders.order_created (and its dead-letter topic
//     quickstart.orders.order_created.dlq);
//   - handlers, which are the consumer groups: quickstart.inventory.reserve-stock,
//     so the AMQP queue is quickstart.orders.order_created_quickstart.inventory.reserve-stock;
//   - tables: quickstart_orders, quickstart_stock, quickstart_orders_outbox
//     (watermill_quickstart_orders_outbox), quickstart_orders_inbox.
//
// The empty namespace is the sample services' names: orders.order_created,
// inventory.reserve-stock, orders, orders_outbox.
type Namespace string

// QuickstartNamespace is the quickstart's namespace.
const QuickstartNamespace Namespace = "quickstart"

var validNamespace = regexp.MustCompile(`^[a-z][a-z0-9_]{0,11}$`)

// validate accepts "" and 1 to 12 of a-z, 0-9 and '_' starting with a
// letter: what table names, topics and consumer groups all take, short
// enough for the outbox names (at most 40 characters).
func (ns Namespace) validate() error {
	if ns != "" && !validNamespace.MatchString(string(ns)) {
		return fmt.Errorf("sample: namespace %q: want 1 to 12 of a-z 0-9 _, starting with a letter", string(ns))
	}
	return nil
}

// Topic is the topic of an event in the namespace.
func (ns Namespace) Topic(eventName string) string { return ns.dotted(eventName) }

// Handler is a handler's name, and so its consumer group, in the namespace.
func (ns Namespace) Handler(name string) string { return ns.dotted(name) }

// Table is a table's name in the namespace.
func (ns Namespace) Table(name string) string {
	if ns == "" {
		return name
	}
	return string(ns) + "_" + name
}

func (ns Namespace) dotted(name string) string {
	if ns == "" {
		return name
	}
	return string(ns) + "." + name
}
