// Command quickstart runs the seed's integration-event story in one process,
// on embedded defaults (a SQLite database in a temporary directory and the
// mem:// transport), or on real services with -transport and -db:
//
//  1. orders writes an order and its OrderCreated event to its outbox in one
//     transaction; its relay moves the event to the broker;
//  2. inventory reserves stock in an idempotent handler (inbox, writes and
//     outbox in one transaction) and publishes StockReserved;
//  3. payments charges the order and publishes PaymentProcessed;
//  4. orders marks the order paid.
//
// Along the way the relay publishes one event twice (as after a crash between
// the broker's confirmation and the outbox update) and the inbox removes the
// duplicate; an order for a product nobody sells is a poison event that ends
// in the dead-letter queue. Each hop is printed with its event id,
// correlation id and causation id, then a summary. It exits 0 when the story
// completed, 1 otherwise.
//
// Its topics, consumer groups and tables are its own, prefixed "quickstart"
// (sample.QuickstartNamespace: quickstart.orders.order_created,
// quickstart.inventory.reserve-stock, quickstart_orders_outbox…), so it runs
// on the broker and database of the sample services while they run, without
// taking their events or they its.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/b2131a45/eventkit/events"
	"github.com/b2131a45/eventkit/internal/dburl"
	"github.com/b2131a45/eventkit/internal/sample"
	"github.com/b2131a45/eventkit/middleware"
	"github.com/b2131a45/eventkit/transports"
)

func main() {
	transportURL := flag.String("transport", envOr("TRANSPORT_URL", "mem://"), "broker URL: mem://, amqp://…, kafka://…, postgres://…, mysql://…")
	dbURL := flag.String("db", os.Getenv("DATABASE_URL"), "database URL: postgres://…, mysql://…, sqlite:file.db (default: SQLite in a temporary directory)")
	timeout := flag.Duration("timeout", 60*time.Second, "give up after this long")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, os.Stdout, *transportURL, *dbURL, *timeout); err != nil {
		fmt.Fprintln(os.Stderr, "quickstart:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, out io.Writer, transportURL, dbURL string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	if dbURL == "" {
		dir, err := os.MkdirTemp("", "eventkit-quickstart-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		dbURL = "sqlite:" + filepath.Join(dir, "quickstart.db")
	}
	db, err := dburl.Open(dbURL)
	if err != nil {
		return err
	}
	defer db.Close()
	t, err := transports.Open(ctx, transportURL)
	if err != nil {
		return err
	}
	defer t.Close()
	reg, err := sample.NewRegistry()
	if err != nil {
		return err
	}
	ns := sample.QuickstartNamespace
	fmt.Fprintf(out, "eventkit quickstart: transport %s, database %s\n", t, redacted(dbURL))
	fmt.Fprintf(out, "names of its own, apart from the sample services': topics %s.*, consumer groups %s.*, tables %s\n\n",
		ns, ns, ns.Table("*"))

	var printMu sync.Mutex
	var handled atomic.Int64
	var poisonID atomic.Value // the poison event's id, for the DLQ listing
	poisonID.Store("")
	hook := func(service string, env events.Envelope) {
		handled.Add(1)
		if strings.HasSuffix(env.CorrelationID, "-poison") {
			poisonID.Store(env.ID)
		}
		printMu.Lock()
		defer printMu.Unlock()
		fmt.Fprintf(out, "%-9s ← %-26s v%d  event=%s  correlation=%s  causation=%s\n",
			service, env.Name, env.Version, env.ID, env.CorrelationID, or(env.CausationID, "-"))
	}

	// The relay of orders publishes the first OrderCreated twice.
	dup := &duplicatingPublisher{Publisher: t.Publisher(), topic: ns.Topic(sample.OrderCreatedName), onDuplicate: func(id string) {
		printMu.Lock()
		defer printMu.Unlock()
		fmt.Fprintf(out, "relay     ⟳ published event=%s again, as after a crash before the outbox marked it; the inbox will drop it\n", id)
	}}
	node := func(name string, relayPub message.Publisher) (*sample.Node, error) {
		return sample.NewNode(ctx, sample.NodeConfig{Name: name, Namespace: ns, DB: db, Transport: t, Registry: reg, RelayPublisher: relayPub})
	}
	on, err := node("orders", dup)
	if err != nil {
		return err
	}
	in, err := node("inventory", nil)
	if err != nil {
		return err
	}
	pn, err := node("payments", nil)
	if err != nil {
		return err
	}
	orders := &sample.Orders{Node: on, Hook: hook}
	inventory := &sample.Inventory{Node: in, Hook: hook}
	payments := &sample.Payments{Node: pn, Hook: hook}
	if err := orders.Setup(ctx); err != nil {
		return err
	}
	if err := inventory.Setup(ctx, map[string]int{"SKU-1": 10}); err != nil {
		return err
	}
	if err := payments.Setup(ctx); err != nil {
		return err
	}

	runCtx, stopNodes := context.WithCancel(ctx)
	var wg sync.WaitGroup
	nodeErrs := make(chan error, 3)
	for _, n := range []*sample.Node{on, in, pn} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := n.Run(runCtx); err != nil {
				nodeErrs <- err
			}
		}()
	}
	defer func() { stopNodes(); wg.Wait() }()
	for _, n := range []*sample.Node{on, in, pn} {
		select {
		case <-n.Router.Running():
		case err := <-nodeErrs:
			return err
		case <-ctx.Done():
			return fmt.Errorf("%s did not start: %w", n.Name, ctx.Err())
		}
	}

	relayedBefore, err := published(ctx, on, in, pn) // a reused database has earlier runs
	if err != nil {
		return err
	}
	suffix := time.Now().UTC().Format("150405.000")
	good := sample.OrderCreated{OrderID: "order-" + suffix, CustomerEmail: "ada@example.com", TotalCents: 4990,
		Items: []sample.OrderItem{{SKU: "SKU-1", Quantity: 2}}}
	poison := sample.OrderCreated{OrderID: "order-" + suffix + "-poison", CustomerEmail: "bob@example.com", TotalCents: 100,
		Items: []sample.OrderItem{{SKU: "SKU-404", Quantity: 1}}}
	fmt.Fprintf(out, "orders    → placing %s (2 × SKU-1) and %s (SKU-404, sold by nobody)\n", good.OrderID, poison.OrderID)
	if err := orders.Place(events.WithCorrelationID(ctx, "checkout-"+suffix), good); err != nil {
		return fmt.Errorf("place order: %w", err)
	}
	if err := orders.Place(events.WithCorrelationID(ctx, "checkout-"+suffix+"-poison"), poison); err != nil {
		return fmt.Errorf("place order: %w", err)
	}

	// Wait for the story to complete: the good order paid, the duplicate
	// removed, the poison event dead-lettered.
	for {
		status, err := orders.Status(ctx, good.OrderID)
		if err != nil {
			return err
		}
		if status == "paid" && inventory.Chain.Duplicates() >= 1 && inventory.Chain.DeadLettered() >= 1 {
			break
		}
		select {
		case err := <-nodeErrs:
			return err
		case <-ctx.Done():
			return fmt.Errorf("the flow did not complete (order %s, %d duplicates removed, %d dead letters): %w",
				status, inventory.Chain.Duplicates(), inventory.Chain.DeadLettered(), ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}

	dlqTopic := middleware.DeadLetterTopic(ns.Topic(sample.OrderCreatedName))
	thisRun := func(d middleware.DeadLetter) bool { return d.EventID == poisonID.Load() }
	dead, err := middleware.ListDLQ(ctx, t.Subscriber, t.Publisher(), middleware.ReplayConfig{
		Topic: dlqTopic, Filter: thisRun, IdleTimeout: time.Second, Logger: quiet()})
	if err != nil {
		return fmt.Errorf("list dead letters: %w", err)
	}
	fmt.Fprintf(out, "\ndead letters in %s:\n", dlqTopic)
	for _, d := range dead {
		fmt.Fprintf(out, "  event=%s  handler=%s  reason=%s  attempts=%d\n  error: %s\n", d.EventID, d.Handler, d.Reason, d.Attempts, d.Error)
	}

	stock, err := inventory.Available(ctx, "SKU-1")
	if err != nil {
		return err
	}
	relayed, err := published(ctx, on, in, pn)
	if err != nil {
		return err
	}
	relayed -= relayedBefore
	dups := on.Chain.Duplicates() + in.Chain.Duplicates() + pn.Chain.Duplicates()
	deadCount := on.Chain.DeadLettered() + in.Chain.DeadLettered() + pn.Chain.DeadLettered()
	fmt.Fprintf(out, "\nsummary: 2 orders placed, %d events relayed from outboxes, %d handled, %d duplicate removed, %d dead letter; SKU-1 stock 10 → %d, order %s paid\n",
		relayed, handled.Load(), dups, deadCount, stock, good.OrderID)
	if stock != 8 {
		return fmt.Errorf("stock of SKU-1 is %d, want 8: the duplicate changed state", stock)
	}
	if len(dead) != 1 || dead[0].Reason != middleware.ReasonPermanent {
		return fmt.Errorf("want one permanent dead letter, got %d", len(dead))
	}
	stopNodes()
	wg.Wait()
	close(nodeErrs)
	return errors.Join(drain(nodeErrs)...)
}

// duplicatingPublisher publishes the first message bound for topic twice,
// as a relay does when it crashes after the broker confirmed a batch and
// before the outbox recorded it.
type duplicatingPublisher struct {
	message.Publisher
	topic       string
	onDuplicate func(eventID string)
	once        sync.Once
}

func (p *duplicatingPublisher) Publish(topic string, msgs ...*message.Message) error {
	if err := p.Publisher.Publish(topic, msgs...); err != nil {
		return err
	}
	var err error
	if topic == p.topic && len(msgs) > 0 {
		p.once.Do(func() {
			if err = p.Publisher.Publish(topic, msgs[0].Copy()); err == nil {
				p.onDuplicate(msgs[0].UUID)
			}
		})
	}
	return err
}

func published(ctx context.Context, nodes ...*sample.Node) (int64, error) {
	var n int64
	for _, node := range nodes {
		s, err := node.Outbox.Stats(ctx)
		if err != nil {
			return 0, err
		}
		n += s.Published
	}
	return n, nil
}

func drain(errs <-chan error) []error {
	var all []error
	for err := range errs {
		all = append(all, err)
	}
	return all
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

func or(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
