package sample

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/b2131a45/eventkit/events"
	"github.com/b2131a45/eventkit/health"
	"github.com/b2131a45/eventkit/internal/dburl"
	"github.com/b2131a45/eventkit/transports"
)

// maxOpenConns bounds each service's database pool.
const maxOpenConns = 32

// RelayMode says whether a service runs the relay of its outbox (RELAY).
type RelayMode string

// Relay modes. The empty RelayMode is RelayOn.
const (
	// RelayOn: the service relays its outbox (one relay of all the
	// replicas holds the outbox's lock and publishes; the others wait).
	RelayOn RelayMode = "on"
	// RelayOff: the service writes to its outbox, serves and consumes,
	// and leaves relaying to the replicas that run with RelayOn (a
	// deployment of API replicas and relay replicas). Its /healthz has no
	// relay check (the relay is not its part); its /metrics still shows
	// the outbox's lag and whether any process's relay holds the lock.
	RelayOff RelayMode = "off"
)

func (m RelayMode) validate() error {
	switch m {
	case "", RelayOn, RelayOff:
		return nil
	}
	return fmt.Errorf("RELAY %q: want on or off", string(m))
}

// ServiceConfig is what a sample service reads from its environment: the
// broker and the database are the only wiring, so switching RabbitMQ ↔ Kafka
// is one variable.
type ServiceConfig struct {
	// TransportURL is TRANSPORT_URL: amqp://…, kafka://…, mem:// (tests).
	// Required unless Transport is set.
	TransportURL string
	// DatabaseURL is DATABASE_URL: postgres://…, mysql://…, sqlite:path.
	// Required unless DB is set.
	DatabaseURL string
	// Transport, if set, is an open transport the service uses instead of
	// opening TransportURL, and does not close: several services of one
	// process share it (examples/demo, on mem://, where the services must
	// share one transport to see each other's events). Defaults to nil:
	// the service opens TransportURL and closes it when it stops.
	Transport *transports.Transport
	// DB, if set, is an open database pool the service uses instead of
	// opening DatabaseURL, and neither closes nor resizes: several services
	// of one process share it (one SQLite file needs one pool, so that its
	// single writer is queued in one place). Defaults to nil: the service
	// opens DatabaseURL with at most 32 connections and closes it.
	DB *sql.DB
	// Relay is RELAY: RelayOn or RelayOff ("on", "off"). Defaults to
	// RelayOn.
	Relay RelayMode
	// HTTPAddr is HTTP_ADDR, the address to listen on. Defaults to ":8080".
	HTTPAddr string
	// Stock is STOCK, inventory only: "SKU-1=100,SKU-2=5", the levels of
	// the SKUs not stocked yet (a restart keeps what reservations left).
	// Defaults to "SKU-1=100,SKU-2=100".
	Stock string
	// Logger defaults to JSON logs on standard error.
	Logger *slog.Logger
	// Ready, if set, is called with the HTTP address once the service
	// serves and consumes.
	Ready func(addr string)
	// Wired, if set, is called with the service's Node once it is wired,
	// before it runs: for a program that runs services in-process and shows
	// their outbox, relay and inbox (examples/demo's console). It must not
	// run or close the node. Defaults to nil.
	Wired func(n *Node)
}

// ServiceConfigFromEnv reads a ServiceConfig from the environment.
func ServiceConfigFromEnv() ServiceConfig {
	return ServiceConfig{
		TransportURL: os.Getenv("TRANSPORT_URL"),
		DatabaseURL:  os.Getenv("DATABASE_URL"),
		HTTPAddr:     os.Getenv("HTTP_ADDR"),
		Stock:        os.Getenv("STOCK"),
		Relay:        RelayMode(os.Getenv("RELAY")),
	}
}

func (c ServiceConfig) withDefaults() ServiceConfig {
	if c.HTTPAddr == "" {
		c.HTTPAddr = ":8080"
	}
	if c.Stock == "" {
		c.Stock = "SKU-1=100,SKU-2=100"
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.NewJSONHandler(os.Stderr, nil))
	}
	return c
}

// RunOrders runs the orders service until ctx ends: POST /orders places an
// order (order row + OrderCreated in one transaction), GET /orders/{id}
// shows it, and PaymentProcessed marks it paid. Its error names the
// service once, as its first word ("orders: …", "orders relay: …").
func RunOrders(ctx context.Context, cfg ServiceConfig) error {
	return serve(ctx, "orders", cfg, func(ctx context.Context, n *Node, mux *http.ServeMux) error {
		o := &Orders{Node: n}
		if err := o.Setup(ctx); err != nil {
			return err
		}
		o.Routes(mux)
		return nil
	})
}

// RunInventory runs the inventory service until ctx ends: it reserves stock
// for OrderCreated and publishes StockReserved; GET /stock/{sku} shows stock.
func RunInventory(ctx context.Context, cfg ServiceConfig) error {
	stock, err := parseStock(cfg.withDefaults().Stock)
	if err != nil {
		return fmt.Errorf("inventory: %w", err)
	}
	return serve(ctx, "inventory", cfg, func(ctx context.Context, n *Node, mux *http.ServeMux) error {
		i := &Inventory{Node: n}
		if err := i.Setup(ctx, stock); err != nil {
			return err
		}
		i.Routes(mux)
		return nil
	})
}

// RunPayments runs the payments service until ctx ends: it charges orders on
// StockReserved and publishes PaymentProcessed.
func RunPayments(ctx context.Context, cfg ServiceConfig) error {
	return serve(ctx, "payments", cfg, func(ctx context.Context, n *Node, mux *http.ServeMux) error {
		p := &Payments{Node: n}
		return p.Setup(ctx)
	})
}

// serve wires a Node from cfg, lets setup add handlers and routes, and runs
// the node and the HTTP server (with GET /healthz, GET /metrics and the
// service's AsyncAPI document, AsyncAPIRoutes) until ctx
// ends. Every error it returns names the service once, as its first word:
// serve prefixes its own ("orders: …", "orders http: …"); those of the node
// and of setup already start with it ("orders outbox: …").
func serve(ctx context.Context, name string, cfg ServiceConfig, setup func(context.Context, *Node, *http.ServeMux) error) error {
	cfg = cfg.withDefaults()
	if (cfg.TransportURL == "" && cfg.Transport == nil) || (cfg.DatabaseURL == "" && cfg.DB == nil) {
		return fmt.Errorf("%s: TRANSPORT_URL and DATABASE_URL are required", name)
	}
	if err := cfg.Relay.validate(); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	db := cfg.DB
	if db == nil {
		var err error
		if db, err = dburl.Open(cfg.DatabaseURL); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		defer db.Close()
		// A bounded pool: while the database hangs (a partition), requests
		// wait for a connection instead of opening one each until the server
		// refuses more clients. The relay, the purger and one handler per
		// subscription need a few; the rest serve HTTP.
		db.SetMaxOpenConns(maxOpenConns)
	}
	t := cfg.Transport
	if t == nil {
		var err error
		if t, err = transports.OpenConfig(ctx, cfg.TransportURL, transports.Config{Logger: cfg.Logger}); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		defer t.Close()
	}
	reg, err := NewRegistry()
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	n, err := NewNode(ctx, NodeConfig{Name: name, DB: db, Transport: t, Registry: reg, Logger: cfg.Logger, NoRelay: cfg.Relay == RelayOff})
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	if err := setup(ctx, n, mux); err != nil {
		return err
	}
	if err := AsyncAPIRoutes(mux, name, n.Namespace); err != nil {
		return err
	}
	if cfg.Wired != nil {
		cfg.Wired(n)
	}
	// 200 when the relay runs with the database and broker reachable and
	// the router consumes; 503 with the failed checks otherwise. With
	// RELAY=off there is no relay check: relaying is other replicas' part.
	checks := health.Checks{"processor": n.Processor.Health}
	if !n.NoRelay {
		checks["relay"] = n.Relay.Health
	}
	mux.Handle("GET /healthz", health.Handler(checks, health.Config{}))
	mux.Handle("GET /metrics", promhttp.HandlerFor(n.Prometheus, promhttp.HandlerOpts{}))
	ln, err := net.Listen("tcp", cfg.HTTPAddr)
	if err != nil {
		return fmt.Errorf("%s http: %w", name, err)
	}
	srv := &http.Server{Handler: jsonErrors(mux), ReadHeaderTimeout: 5 * time.Second}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	errs := make(chan error, 2)
	wg.Add(2)
	go func() {
		defer wg.Done()
		defer cancel()
		if err := n.Run(ctx); err != nil {
			errs <- err
		}
	}()
	go func() {
		defer wg.Done()
		defer cancel()
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			errs <- fmt.Errorf("%s http: %w", name, err)
		}
	}()
	select {
	case <-n.Router.Running():
		cfg.Logger.Info("service running", slog.String("service", name), slog.String("addr", ln.Addr().String()), slog.String("transport", t.String()),
			slog.Bool("relay", !n.NoRelay))
		if cfg.Ready != nil {
			cfg.Ready(ln.Addr().String())
		}
	case <-ctx.Done():
	}
	<-ctx.Done()
	shutdown, stop := context.WithTimeout(context.Background(), 10*time.Second)
	defer stop()
	_ = srv.Shutdown(shutdown)
	wg.Wait()
	close(errs)
	return <-errs
}

// placeRequest is the body of POST /orders.
type placeRequest struct {
	CustomerEmail string      `json:"customer_email"`
	TotalCents    int64       `json:"total_cents"`
	Items         []OrderItem `json:"items"`
}

// Routes adds the orders API to mux: POST /orders and GET /orders/{id}.
// Errors are JSON ({"error": "…"}): 400 for a bad order, 404 for an unknown
// order, 413 for a body over 1 MiB, 500 (logged, the cause not shown) when
// the database fails.
func (o *Orders) Routes(mux *http.ServeMux) {
	mux.HandleFunc("POST /orders", o.handlePlace)
	mux.HandleFunc("GET /orders/{id}", o.handleGet)
}

func (o *Orders) handlePlace(w http.ResponseWriter, r *http.Request) {
	var req placeRequest
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			httpError(w, http.StatusRequestEntityTooLarge, fmt.Errorf("bad order: the body is larger than %d bytes", tooLarge.Limit))
			return
		}
		httpError(w, http.StatusBadRequest, fmt.Errorf("bad order: %w", err))
		return
	}
	if err := req.validate(); err != nil {
		httpError(w, http.StatusBadRequest, err)
		return
	}
	id, err := events.NewID()
	if err != nil {
		o.internalError(w, r, "could not place the order", err)
		return
	}
	correlation := r.Header.Get("X-Correlation-ID")
	if correlation == "" {
		correlation = "http-" + id
	}
	e := OrderCreated{OrderID: id, CustomerEmail: req.CustomerEmail, TotalCents: req.TotalCents, Items: req.Items}
	if err := o.Place(events.WithCorrelationID(r.Context(), correlation), e); err != nil {
		o.internalError(w, r, "could not place the order", err)
		return
	}
	writeJSON(w, http.StatusCreated, map[string]string{"order_id": id, "correlation_id": correlation, "status": "created"})
}

func (req placeRequest) validate() error {
	if req.CustomerEmail == "" || len(req.Items) == 0 || req.TotalCents < 0 {
		return errors.New("bad order: customer_email, items and a total ≥ 0 are required")
	}
	seen := map[string]bool{}
	for _, it := range req.Items {
		if it.SKU == "" || it.Quantity <= 0 {
			return errors.New("bad order: every item needs a sku and a quantity > 0")
		}
		if seen[it.SKU] {
			// inventory reserves one row per order and SKU
			return fmt.Errorf("bad order: sku %q is listed twice: give it once with the total quantity", it.SKU)
		}
		seen[it.SKU] = true
	}
	return nil
}

func (o *Orders) handleGet(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	status, err := o.Status(r.Context(), id)
	switch {
	case errors.Is(err, ErrNotFound):
		httpError(w, http.StatusNotFound, fmt.Errorf("no such order %q", id))
	case err != nil:
		o.internalError(w, r, "could not read the order", err)
	default:
		writeJSON(w, http.StatusOK, map[string]string{"order_id": id, "status": status})
	}
}

// Routes adds the inventory API to mux: GET /stock/{sku} shows a SKU's
// level, 404 for a SKU that is not stocked; PUT /stock/{sku} with
// {"available": N} sets it (stocking the SKU if need be: the fix for
// orders dead-lettered for a SKU nobody sold), 400 for a bad body, N < 0 or
// a SKU over 64 bytes, 413 for a body over 1 MiB. Errors are JSON; 500
// (logged, the cause not shown) when the database fails.
func (i *Inventory) Routes(mux *http.ServeMux) {
	mux.HandleFunc("GET /stock/{sku}", func(w http.ResponseWriter, r *http.Request) {
		sku := r.PathValue("sku")
		n, err := i.Available(r.Context(), sku)
		switch {
		case errors.Is(err, ErrNotFound):
			httpError(w, http.StatusNotFound, fmt.Errorf("no such SKU %q", sku))
		case err != nil:
			i.internalError(w, r, "could not read the stock", err)
		default:
			writeJSON(w, http.StatusOK, map[string]any{"sku": sku, "available": n})
		}
	})
	mux.HandleFunc("PUT /stock/{sku}", i.handleSetStock)
}

// stockRequest is the body of PUT /stock/{sku}.
type stockRequest struct {
	Available *int `json:"available"`
}

func (i *Inventory) handleSetStock(w http.ResponseWriter, r *http.Request) {
	sku := r.PathValue("sku")
	if len(sku) > maxSKU {
		httpError(w, http.StatusBadRequest, fmt.Errorf("bad stock: sku %q is longer than %d bytes", sku[:16]+"…", maxSKU))
		return
	}
	var req stockRequest
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			httpError(w, http.StatusRequestEntityTooLarge, fmt.Errorf("bad stock: the body is larger than %d bytes", tooLarge.Limit))
			return
		}
		httpError(w, http.StatusBadRequest, fmt.Errorf("bad stock: %w", err))
		return
	}
	if req.Available == nil || *req.Available < 0 {
		httpError(w, http.StatusBadRequest, errors.New(`bad stock: want {"available": N} with N ≥ 0`))
		return
	}
	if err := i.SetAvailable(r.Context(), sku, *req.Available); err != nil {
		i.internalError(w, r, "could not set the stock", err)
		return
	}
	i.Logger.InfoContext(r.Context(), "stock set", slog.String("service", i.Name), slog.String("sku", sku), slog.Int("available", *req.Available))
	writeJSON(w, http.StatusOK, map[string]any{"sku": sku, "available": *req.Available})
}

// internalError answers 500 with msg and logs msg with the cause, which the
// client does not see (it may be a driver's error, naming tables).
func (n *Node) internalError(w http.ResponseWriter, r *http.Request, msg string, err error) {
	n.Logger.ErrorContext(r.Context(), msg, slog.String("service", n.Name),
		slog.String("method", r.Method), slog.String("path", r.URL.Path), slog.String("error", err.Error()))
	httpError(w, http.StatusInternalServerError, errors.New(msg))
}

// jsonErrors answers, in JSON like the routes, the requests that no route
// of mux takes: 404 for an unknown path, 405 (with Allow) for a known path
// and another method.
func jsonErrors(mux *http.ServeMux) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h, pattern := mux.Handler(r)
		if pattern != "" {
			mux.ServeHTTP(w, r)
			return
		}
		probe := &statusProbe{header: http.Header{}}
		h.ServeHTTP(probe, r)
		switch probe.code {
		case http.StatusNotFound:
			httpError(w, http.StatusNotFound, fmt.Errorf("no route for %s %s", r.Method, r.URL.Path))
		case http.StatusMethodNotAllowed:
			w.Header().Set("Allow", probe.header.Get("Allow"))
			httpError(w, http.StatusMethodNotAllowed, fmt.Errorf("%s %s is not allowed (allowed: %s)", r.Method, r.URL.Path, probe.header.Get("Allow")))
		default: // a redirect to the clean path
			mux.ServeHTTP(w, r)
		}
	})
}

// statusProbe records the status a handler answers with and drops the body.
type statusProbe struct {
	header http.Header
	code   int
}

func (p *statusProbe) Header() http.Header { return p.header }

func (p *statusProbe) WriteHeader(code int) {
	if p.code == 0 {
		p.code = code
	}
}

func (p *statusProbe) Write(b []byte) (int, error) {
	p.WriteHeader(http.StatusOK)
	return len(b), nil
}

func parseStock(s string) (map[string]int, error) {
	stock := map[string]int{}
	for _, kv := range strings.Split(s, ",") {
		sku, n, ok := strings.Cut(strings.TrimSpace(kv), "=")
		q, err := strconv.Atoi(n)
		if !ok || sku == "" || err != nil || q < 0 {
			return nil, fmt.Errorf("STOCK: %q is not SKU=quantity", kv)
		}
		stock[sku] = q
	}
	return stock, nil
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func httpError(w http.ResponseWriter, code int, err error) {
	writeJSON(w, code, map[string]string{"error": err.Error()})
}

// Healthcheck asks the service listening on addr (HTTP_ADDR, ":8080" when
// empty) for GET /healthz and returns the exit code for a container health
// check: 0 healthy, 1 not. The images have no shell or curl, so the service
// binaries check themselves: "orders healthcheck".
func Healthcheck(addr string) int {
	if addr == "" {
		addr = ":8080"
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "healthcheck:", err)
		return 1
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "127.0.0.1"
	}
	client := http.Client{Timeout: 2 * time.Second}
	resp, err := client.Get("http://" + net.JoinHostPort(host, port) + "/healthz")
	if err != nil {
		fmt.Fprintln(os.Stderr, "healthcheck:", err)
		return 1
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		fmt.Fprintln(os.Stderr, "healthcheck: status", resp.Status)
		return 1
	}
	return 0
}
