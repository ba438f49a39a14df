package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/b2131a45/eventkit/console"
	"github.com/b2131a45/eventkit/health"
	"github.com/b2131a45/eventkit/internal/dburl"
	"github.com/b2131a45/eventkit/internal/sample"
	"github.com/b2131a45/eventkit/middleware"
	"github.com/b2131a45/eventkit/transports"
)

const (
	tokenEnv = console.TokenEnv
	// poisonSKU is the SKU of the poison orders: nobody sells it.
	poisonSKU = "SKU-404"
	// poisonOrders is how many poison orders are placed at start.
	poisonOrders = 3
	// settleTimeout bounds the wait for the orders placed at start to be
	// paid or dead-lettered.
	settleTimeout = time.Minute
)

// services are the sample services the demo runs, in the order it prints
// them.
var services = []struct {
	name string
	run  func(context.Context, sample.ServiceConfig) error
}{
	{"orders", sample.RunOrders},
	{"inventory", sample.RunInventory},
	{"payments", sample.RunPayments},
}

// eventTopics are the topics of the sample's events, whose dead-letter
// topics the console shows.
var eventTopics = []string{sample.OrderCreatedName, sample.StockReservedName, sample.PaymentProcessedName}

// started is a running service.
type started struct {
	node *sample.Node
	base string // http://host:port
}

// run runs the demo until ctx ends; see the package documentation.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	o, err := parseFlags(args, getenv, stderr)
	if err != nil {
		return err
	}
	level := slog.LevelWarn
	if o.verbose {
		level = slog.LevelInfo
	}
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	t, err := transports.OpenConfig(ctx, o.transport, transports.Config{Logger: logger})
	if err != nil {
		var ue *transports.URLError
		if errors.As(err, &ue) {
			return usageError{fmt.Errorf("-transport: %w", err)}
		}
		return fmt.Errorf("-transport: %w", err)
	}
	defer t.Close()
	dbURL, temporary := o.db, o.db == ""
	if temporary {
		dir, err := os.MkdirTemp("", "eventkit-demo-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		dbURL = "sqlite:" + filepath.Join(dir, "demo.db")
	}
	db, err := dburl.Open(dbURL)
	if err != nil {
		return usageError{fmt.Errorf("-db: %w", err)}
	}
	defer db.Close()
	db.SetMaxOpenConns(64) // shared by three services: their relays, purgers, handlers and APIs
	if err := db.PingContext(ctx); err != nil {
		return fmt.Errorf("-db %s: %w", redact(dbURL), err)
	}
	if err := declareDeadLetters(t); err != nil {
		return err
	}

	// The services, sharing t and db, which they do not close.
	svcCtx, stopServices := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() { stopServices(); wg.Wait() }() // before t and db close
	failed := make(chan error, len(services))
	ready := make(chan string, len(services))
	var mu sync.Mutex
	svc := map[string]*started{}
	for _, s := range services {
		addr := map[string]string{"orders": o.ordersAddr, "inventory": o.inventoryAddr, "payments": o.paymentsAddr}[s.name]
		cfg := sample.ServiceConfig{Transport: t, DB: db, HTTPAddr: addr, Stock: o.stock, Logger: logger,
			Wired: func(n *sample.Node) { mu.Lock(); svc[s.name] = &started{node: n}; mu.Unlock() },
			Ready: func(addr string) { mu.Lock(); svc[s.name].base = "http://" + addr; mu.Unlock(); ready <- s.name },
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := s.run(svcCtx, cfg); err != nil {
				failed <- err
			} else if svcCtx.Err() == nil {
				failed <- fmt.Errorf("%s stopped", s.name)
			}
		}()
	}
	for range services {
		select {
		case <-ready:
		case err := <-failed:
			return err
		case <-ctx.Done():
			return nil
		}
	}

	fmt.Fprintln(stdout, "eventkit demo: orders, inventory, payments and the web console in one process")
	where := redact(dbURL)
	if temporary {
		where += " (a temporary file, removed when the demo stops)"
	}
	fmt.Fprintf(stdout, "  transport %s, database %s\n", t, where)
	for _, s := range services {
		fmt.Fprintf(stdout, "  %-9s %s\n", s.name, svc[s.name].base)
	}

	// The console, over the services' own outboxes, relays and inboxes.
	token, generated := o.token, o.token == ""
	if generated {
		b := make([]byte, 16)
		_, _ = rand.Read(b) // never fails (crypto/rand)
		token = hex.EncodeToString(b)
	}
	cfg := console.Config{Title: "eventkit demo", Transport: t, Token: token, SampleInterval: 5 * time.Second,
		Secrets: console.URLPasswords(o.db, o.transport), Health: health.Checks{},
		Logger: slog.New(slog.NewTextHandler(stderr, nil))} // the audit log, at INFO
	for _, s := range services {
		n := svc[s.name].node
		cfg.Outboxes = append(cfg.Outboxes, console.Outbox{Outbox: n.Outbox, Relay: n.Relay, Database: redact(dbURL)})
		cfg.Inboxes = append(cfg.Inboxes, console.Inbox{Inbox: n.Inbox, Database: redact(dbURL)})
		cfg.Health[s.name+" processor"] = n.Processor.Health
	}
	for _, topic := range eventTopics {
		cfg.DeadLetters = append(cfg.DeadLetters, console.DeadLetterTopic{Topic: middleware.DeadLetterTopic(topic)})
	}
	c, err := console.New(cfg)
	if err != nil {
		return usageError{errors.New(strings.ReplaceAll(err.Error(), "Config.Token", "$"+tokenEnv))}
	}
	defer c.Close()
	ln, err := net.Listen("tcp", o.consoleAdr)
	if err != nil {
		return fmt.Errorf("console: %w", err)
	}
	consoleURL := "http://" + ln.Addr().String()
	consoleCtx, stopConsole := context.WithCancel(ctx)
	served := make(chan struct{})
	var serveErr error
	go func() { defer close(served); serveErr = c.Serve(consoleCtx, ln) }()
	defer func() { stopConsole(); <-served }() // before c.Close
	fmt.Fprintf(stdout, "  %-9s %s/\n", "console", consoleURL)
	if w := console.ExposureWarning(o.consoleAdr, false); w != "" {
		fmt.Fprintln(stdout, w)
	}
	if generated {
		fmt.Fprintf(stdout, "  operator token %s (made for this run: set $%s to choose one)\n", token, tokenEnv)
	} else {
		fmt.Fprintf(stdout, "  operator token from $%s\n", tokenEnv)
	}
	var seeded *seed
	if !o.noOrders {
		if seeded, err = placeOrders(ctx, t, svc["orders"].base, failed); err != nil {
			if ctx.Err() != nil {
				return nil // interrupted
			}
			return err
		}
		seeded.print(stdout)
	}
	nextSteps(stdout, consoleURL, svc["orders"].base, svc["inventory"].base, seeded)

	select {
	case <-ctx.Done():
		err = nil
	case err = <-failed:
	case <-served:
		err = serveErr
		if err == nil {
			err = errors.New("the console stopped")
		}
	}
	stopConsole()
	<-served
	if err == nil {
		err = serveErr
	}
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, "demo stopped")
	return nil
}

// declareDeadLetters declares the dead-letter topics of the event topics
// for middleware.DeadLetterGroupDefault, as the first dead letter would, so
// that the console shows them from the start (on RabbitMQ a topic exists
// for a group once its queue is declared).
func declareDeadLetters(t *transports.Transport) error {
	sub, err := t.Subscriber(middleware.DeadLetterGroupDefault)
	if err != nil {
		return fmt.Errorf("dead-letter topics: %w", err)
	}
	defer sub.Close()
	si, ok := sub.(message.SubscribeInitializer)
	if !ok {
		return nil // nothing to declare: the topic exists once published to
	}
	for _, topic := range eventTopics {
		if err := si.SubscribeInitialize(middleware.DeadLetterTopic(topic)); err != nil {
			return fmt.Errorf("dead-letter topic %s: %w", middleware.DeadLetterTopic(topic), err)
		}
	}
	return nil
}

// seed is what placeOrders did.
type seed struct {
	good         string   // the good order's id
	goodStatus   string   // its status once settled
	poison       []string // the poison orders' ids
	deadLetters  int64    // in orders.order_created.dlq once settled
	deadBefore   int64    // there before (a database and broker of an earlier run)
	deadLetterTo string
}

// placeOrders places one good order and three poison orders over the
// orders API at base, and waits until the good one is paid and the three
// poison ones are dead letters.
func placeOrders(ctx context.Context, t *transports.Transport, base string, failed <-chan error) (*seed, error) {
	s := &seed{deadLetterTo: middleware.DeadLetterTopic(sample.OrderCreatedName)}
	var err error
	if s.deadBefore, err = t.Depth(ctx, s.deadLetterTo, middleware.DeadLetterGroupDefault); err != nil {
		return nil, err
	}
	if s.good, err = placeOrder(ctx, base, "ada@example.com", "SKU-1", 2, 4990); err != nil {
		return nil, err
	}
	for range poisonOrders {
		id, err := placeOrder(ctx, base, "bob@example.com", poisonSKU, 1, 1990)
		if err != nil {
			return nil, err
		}
		s.poison = append(s.poison, id)
	}
	deadline := time.Now().Add(settleTimeout)
	for {
		if s.goodStatus, err = orderStatus(ctx, base, s.good); err != nil {
			return nil, err
		}
		if s.deadLetters, err = t.Depth(ctx, s.deadLetterTo, middleware.DeadLetterGroupDefault); err != nil {
			return nil, err
		}
		if s.goodStatus == "paid" && s.deadLetters >= s.deadBefore+poisonOrders {
			return s, nil
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("the orders placed at start did not settle in %s: order %s is %s, %d dead letter(s) in %s",
				settleTimeout, s.good, s.goodStatus, s.deadLetters-s.deadBefore, s.deadLetterTo)
		}
		select {
		case err := <-failed:
			return nil, err
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func (s *seed) print(w io.Writer) {
	fmt.Fprintf(w, "\nplaced 1 order of 2 × SKU-1: %s is %s\n", s.good, s.goodStatus)
	fmt.Fprintf(w, "placed %d orders of 1 × %s, which nobody sells: %s\n", len(s.poison), poisonSKU, strings.Join(s.poison, ", "))
	fmt.Fprintf(w, "  inventory failed them for good: %s holds %d dead letter(s)", s.deadLetterTo, s.deadLetters)
	if s.deadBefore > 0 {
		fmt.Fprintf(w, ", %d of them from this run", s.deadLetters-s.deadBefore)
	}
	fmt.Fprintln(w)
}

// nextSteps prints what a new user does next.
func nextSteps(w io.Writer, consoleURL, orders, inventory string, s *seed) {
	dlq := middleware.DeadLetterTopic(sample.OrderCreatedName)
	fmt.Fprintf(w, "\nNext steps:\n")
	fmt.Fprintf(w, "  1. Open %s/dlq/%s: the poison orders are one group, under one error (inventory.reserve-stock, permanent, unknown SKU %q).\n",
		consoleURL, dlq, poisonSKU)
	fmt.Fprintf(w, "  2. Fix the cause, stock %s:\n       curl -s -XPUT %s/stock/%s -d '{\"available\":10}'\n", poisonSKU, inventory, poisonSKU)
	fmt.Fprintf(w, "  3. In the console, log in with the operator token, click \"replay…\" on the group and confirm:\n"+
		"     each is published again with its event id, and handled once.\n")
	fmt.Fprintf(w, "  4. See them handled:\n       curl -s %s/stock/%s        # 10 less one per order\n", inventory, poisonSKU)
	order := "<order_id>"
	if s != nil && len(s.poison) > 0 {
		order = s.poison[0]
	}
	fmt.Fprintf(w, "       curl -s %s/orders/%s   # \"paid\"\n", orders, order)
	fmt.Fprintf(w, "  Place more: curl -s -XPOST %s/orders -d '{\"customer_email\":\"ada@example.com\",\"total_cents\":990,\"items\":[{\"sku\":\"%s\",\"quantity\":1}]}'\n", orders, poisonSKU)
	fmt.Fprintln(w, "Ctrl-C stops the demo.")
}

// placeOrder places an order over the orders API and returns its id.
func placeOrder(ctx context.Context, base, email, sku string, quantity int, cents int64) (string, error) {
	body, _ := json.Marshal(map[string]any{"customer_email": email, "total_cents": cents,
		"items": []map[string]any{{"sku": sku, "quantity": quantity}}})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/orders", bytes.NewReader(body))
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", "application/json")
	var out map[string]string
	if err := call(req, http.StatusCreated, &out); err != nil {
		return "", fmt.Errorf("place an order: %w", err)
	}
	return out["order_id"], nil
}

// orderStatus reads an order's status over the orders API.
func orderStatus(ctx context.Context, base, id string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/orders/"+url.PathEscape(id), nil)
	if err != nil {
		return "", err
	}
	var out map[string]string
	if err := call(req, http.StatusOK, &out); err != nil {
		return "", fmt.Errorf("read order %s: %w", id, err)
	}
	return out["status"], nil
}

var client = &http.Client{Timeout: 10 * time.Second}

// call sends req and decodes its JSON answer into out, which must come
// with status want.
func call(req *http.Request, want int, out any) error {
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode != want {
		return fmt.Errorf("%s %s: %s: %s", req.Method, req.URL.Path, resp.Status, bytes.TrimSpace(b))
	}
	return json.Unmarshal(b, out)
}

// redact returns a database URL with its password replaced by xxxxx.
func redact(raw string) string {
	if !strings.Contains(raw, "://") {
		return raw
	}
	u, err := url.Parse(raw)
	if err != nil {
		return "(a URL that does not parse)"
	}
	return u.Redacted()
}
