package sample

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/b2131a45/eventkit/cqrs"
	"github.com/b2131a45/eventkit/events"
	"github.com/b2131a45/eventkit/forwarder"
	"github.com/b2131a45/eventkit/metrics"
	"github.com/b2131a45/eventkit/middleware"
	"github.com/b2131a45/eventkit/transports"
)

// NodeConfig configures a Node. Name, DB, Transport and Registry are required.
type NodeConfig struct {
	// Name is the service name: the events' source, and the prefix of its
	// outbox and inbox tables.
	Name string
	// Namespace prefixes the node's topics, consumer groups and tables (see
	// Namespace). Defaults to "": the sample services' names.
	Namespace Namespace
	DB        *sql.DB
	Transport *transports.Transport
	Registry  *events.Registry
	// RelayPublisher, if set, is what the relay publishes with instead of
	// Transport.Publisher() (the quickstart wraps it to show a duplicate).
	RelayPublisher message.Publisher
	// NoRelay makes Run leave relaying the outbox to other processes (the
	// replicas that run the relay): the node writes to its outbox, serves
	// and consumes, and its metrics still report the outbox's counters and
	// whether any process's relay holds its lock. Defaults to false: Run
	// runs the relay.
	NoRelay bool
	// Logger receives the library logs and the services' own: one INFO
	// line per event handled and per order placed. Defaults to discarding.
	Logger *slog.Logger
}

// Node is what every sample service wires the same way: an outbox in its
// database with a relay to the transport, and a router whose handlers run
// behind middleware.Default with an inbox in the same database, in InTx
// mode (the handler's writes, its inbox row and the events it adds to the
// outbox commit together). Its Metrics (outbox, relay and handlers) are
// registered in Prometheus, served at /metrics by the services.
type Node struct {
	Name      string
	Namespace Namespace
	Logger    *slog.Logger
	DB        *sql.DB
	Dialect   forwarder.Dialect
	Outbox    *forwarder.Outbox
	Inbox     *middleware.SQLInbox
	Relay     *forwarder.Relay
	Router    *message.Router
	Chain     *middleware.Chain
	Processor *cqrs.Processor
	// Prometheus holds Metrics and the Go runtime collectors, labelled
	// service=Name.
	Prometheus *prometheus.Registry
	Metrics    *metrics.Metrics
	// NoRelay is NodeConfig.NoRelay: Run does not run Relay.
	NoRelay bool
	purger  *middleware.Purger
}

// NewNode creates the node's tables (idempotent) and wires it.
func NewNode(ctx context.Context, cfg NodeConfig) (*Node, error) {
	if cfg.Name == "" || cfg.DB == nil || cfg.Transport == nil || cfg.Registry == nil {
		return nil, errors.New("sample: NodeConfig needs Name, DB, Transport and Registry")
	}
	if err := cfg.Namespace.validate(); err != nil {
		return nil, err
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	ns := cfg.Namespace
	n := &Node{Name: cfg.Name, Namespace: ns, Logger: cfg.Logger, DB: cfg.DB, NoRelay: cfg.NoRelay}
	var err error
	n.Outbox, err = forwarder.NewOutbox(cfg.DB, forwarder.OutboxConfig{
		Registry: cfg.Registry, Source: cfg.Name, Name: ns.Table(cfg.Name + "_outbox"), Topic: ns.Topic, Logger: cfg.Logger,
	})
	if err != nil {
		return nil, fmt.Errorf("%s outbox: %w", cfg.Name, err)
	}
	if err := n.Outbox.Setup(ctx); err != nil {
		return nil, fmt.Errorf("%s outbox: %w", cfg.Name, err)
	}
	n.Dialect = n.Outbox.Dialect()
	inboxCfg := middleware.InboxConfig{Table: ns.Table(cfg.Name + "_inbox")}
	switch n.Dialect {
	case forwarder.Postgres:
		n.Inbox, err = middleware.NewPostgresInbox(cfg.DB, inboxCfg)
	case forwarder.MySQL:
		n.Inbox, err = middleware.NewMySQLInbox(cfg.DB, inboxCfg)
	default:
		n.Inbox, err = middleware.NewSQLiteInbox(cfg.DB, inboxCfg)
	}
	if err != nil {
		return nil, fmt.Errorf("%s inbox: %w", cfg.Name, err)
	}
	if err := n.Inbox.Setup(ctx); err != nil {
		return nil, fmt.Errorf("%s inbox: %w", cfg.Name, err)
	}
	if n.purger, err = middleware.NewPurger(n.Inbox, middleware.PurgerConfig{}); err != nil {
		return nil, fmt.Errorf("%s inbox purger: %w", cfg.Name, err)
	}
	n.Prometheus = prometheus.NewRegistry()
	n.Prometheus.MustRegister(collectors.NewGoCollector())
	if n.Metrics, err = metrics.New(n.Prometheus, metrics.Config{ConstLabels: prometheus.Labels{"service": cfg.Name}}); err != nil {
		return nil, fmt.Errorf("%s metrics: %w", cfg.Name, err)
	}
	n.Metrics.WatchOutbox(n.Outbox)
	relayPub := cfg.RelayPublisher
	if relayPub == nil {
		relayPub = cfg.Transport.Publisher()
	}
	if n.Relay, err = forwarder.NewRelay(n.Outbox, relayPub, forwarder.RelayConfig{Logger: cfg.Logger, Observer: n.Metrics}); err != nil {
		return nil, fmt.Errorf("%s relay: %w", cfg.Name, err)
	}
	if n.Router, err = message.NewRouter(message.RouterConfig{CloseTimeout: 10 * time.Second}, watermill.NewSlogLogger(cfg.Logger)); err != nil {
		return nil, fmt.Errorf("%s router: %w", cfg.Name, err)
	}
	n.Chain, err = middleware.Default(middleware.DefaultConfig{
		Publisher:   cfg.Transport.Publisher(),
		Inbox:       n.Inbox,
		InTx:        true,
		Subscribers: cfg.Transport.Subscriber,
		Retry:       middleware.RetryConfig{MaxAttempts: 3, InitialInterval: 50 * time.Millisecond},
		Logger:      cfg.Logger,
		Observer:    n.Metrics,
	})
	if err != nil {
		return nil, fmt.Errorf("%s middleware: %w", cfg.Name, err)
	}
	n.Router.AddMiddleware(n.Chain.Middlewares()...)
	n.Processor, err = cqrs.NewProcessor(n.Router, cfg.Transport.Subscriber, cqrs.ProcessorConfig{
		DeadLetter: cfg.Transport.Publisher(),
		Registry:   cfg.Registry, Topic: ns.Topic, Logger: cfg.Logger, BrokerHealth: cfg.Transport.Health,
	})
	if err != nil {
		return nil, fmt.Errorf("%s processor: %w", cfg.Name, err)
	}
	return n, nil
}

// Run runs the relay (unless NoRelay), the router and the inbox purger
// until ctx ends, then stops them gracefully. It returns the first error
// that stopped a part.
func (n *Node) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	errs := make(chan error, 3)
	run := func(name string, f func(context.Context) error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := f(ctx); err != nil && !errors.Is(err, context.Canceled) {
				errs <- fmt.Errorf("%s %s: %w", n.Name, name, err)
			}
			cancel() // one part stopping stops the node
		}()
	}
	if !n.NoRelay {
		run("relay", n.Relay.Run)
	}
	run("inbox purger", n.purger.Run)
	run("router", n.Router.Run)
	<-ctx.Done()
	if err := n.Router.Close(); err != nil {
		errs <- fmt.Errorf("%s router: %w", n.Name, err)
	}
	wg.Wait()
	close(errs)
	return <-errs
}

// Publish adds events to the node's outbox in the transaction of the
// handler being run (middleware.TxFromContext), so they are relayed only if
// the handler's transaction commits.
func (n *Node) Publish(ctx context.Context, evts ...any) error {
	tx, ok := middleware.TxFromContext(ctx)
	if !ok {
		return errors.New("sample: Publish outside an InTx handler")
	}
	return n.Outbox.Add(ctx, tx, evts...)
}

// createTables runs the CREATE TABLE IF NOT EXISTS statements ddl in one
// transaction. On PostgreSQL it first takes a transaction-scoped advisory
// lock, because two processes creating the same table at once can collide
// there (a unique violation on pg_type): the two orders processes of the
// nemesis start together. (Found by cmd/eventkit-nemesis.)
func (n *Node) createTables(ctx context.Context, ddl ...string) error {
	tx, err := n.DB.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer func() { _ = tx.Rollback() }()
	if n.Dialect == forwarder.Postgres {
		if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock(hashtext($1))`, "eventkit.sample.setup."+n.Name); err != nil {
			return err
		}
	}
	for _, q := range ddl {
		if _, err := tx.ExecContext(ctx, q); err != nil {
			return err
		}
	}
	return tx.Commit()
}

// Q rewrites a query written with ? placeholders for the node's dialect.
func (n *Node) Q(query string) string {
	if n.Dialect != forwarder.Postgres {
		return query
	}
	var b strings.Builder
	arg := 0
	for _, r := range query {
		if r == '?' {
			arg++
			fmt.Fprintf(&b, "$%d", arg)
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

// Exec runs query (with ? placeholders) in the handler's transaction.
func (n *Node) Exec(ctx context.Context, query string, args ...any) (sql.Result, error) {
	tx, ok := middleware.TxFromContext(ctx)
	if !ok {
		return nil, errors.New("sample: Exec outside an InTx handler")
	}
	return tx.ExecContext(ctx, n.Q(query), args...)
}

// add adds a handler to the node's processor.
func (n *Node) add(h cqrs.Handler) error {
	if err := n.Processor.AddHandlers(h); err != nil {
		return fmt.Errorf("%s: %w", n.Name, err)
	}
	return nil
}

// handler returns the cqrs handler named name (in the node's namespace)
// that runs fn and, when fn succeeds, logs the event at INFO: one line per
// event handled, with the event's name, id and correlation id. The line
// is written when the handler returns, in its transaction; the duplicates
// the inbox drops never reach it, and the events that end in the
// dead-letter queue are logged there instead, at ERROR.
func handler[E any](n *Node, name string, fn func(context.Context, *E) error) cqrs.Handler {
	name = n.Namespace.Handler(name)
	return cqrs.NewHandler(name, func(ctx context.Context, e *E) error {
		if err := fn(ctx, e); err != nil {
			return err
		}
		env, _ := events.EnvelopeFromContext(ctx)
		if env.CorrelationID == "" { // the event started the conversation
			env.CorrelationID = env.ID
		}
		n.Logger.InfoContext(ctx, "event handled",
			slog.String("service", n.Name), slog.String("handler", name),
			slog.String("event_name", env.Name), slog.String("event_id", env.ID),
			slog.String("correlation_id", env.CorrelationID))
		return nil
	})
}
