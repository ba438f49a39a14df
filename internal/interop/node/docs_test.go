package node

// The Node.js example of docs/interop.md ("A Node.js service on the other
// side"): its programs are examples/node/publish.js and consume.js, its Go
// side is serve below, and the page shows all of them verbatim.
//
// How a page shows a file: a line
//
//	<!-- file: PATH -->
//	<!-- file: PATH#NAME -->
//
// directly followed by a fenced code block (```lang … ```). The block's
// lines are, byte for byte, the whole file PATH (relative to the repository
// root), or with #NAME the lines strictly between the lines
// "// docs:begin NAME" and "// docs:end NAME" of PATH, less the blank lines
// at either end (gofmt puts one before the end marker). TestDocsShowFiles
// holds the page to that; TestDocsNodeExample runs what it shows.

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	amqp091 "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/require"

	"github.com/b2131a45/eventkit/cqrs"
	"github.com/b2131a45/eventkit/events"
	"github.com/b2131a45/eventkit/internal/testenv"
	"github.com/b2131a45/eventkit/middleware"
	"github.com/b2131a45/eventkit/transports"
	"github.com/b2131a45/eventkit/transports/amqp"
)

// repoRoot is the repository root, seen from this package's folder (where
// go test runs the tests).
const repoRoot = "../../.."

// docsPage is the page whose blocks TestDocsShowFiles checks.
const docsPage = "docs/interop.md"

// docsShown are the files and regions the page must show.
var docsShown = []string{
	"examples/node/package.json",
	"examples/node/publish.js",
	"examples/node/consume.js",
	"internal/interop/node/docs_test.go#go-service",
}

// docs:begin go-service
// OrderCreated is the event publish.js sends and consume.js reads.
type OrderCreated struct {
	OrderID    string `json:"order_id"`
	TotalCents int64  `json:"total_cents"`
}

// PartitionKey keeps an order's events in order on Kafka.
func (e OrderCreated) PartitionKey() string { return e.OrderID }

// serve runs an eventkit service until ctx ends. It publishes in the wire form
// of url ("amqp://guest:guest@localhost:5672/?wire=cloudevents") and reads
// every form. Its handler passes each orders.order_created on topic to
// handled; once consuming, it publishes one order. (Without the Topic fields
// the topic is the event name, orders.order_created.)
func serve(ctx context.Context, url, topic string, handled func(events.Envelope, OrderCreated)) error {
	tr, err := transports.Open(ctx, url)
	if err != nil {
		return err
	}
	defer tr.Close()
	reg := events.NewRegistry()
	events.MustRegister[OrderCreated](reg, "orders.order_created") // the CloudEvents type
	topicOf := func(string) string { return topic }

	router, err := message.NewRouter(message.RouterConfig{}, watermill.NopLogger{})
	if err != nil {
		return err
	}
	proc, err := cqrs.NewProcessor(router, tr.Subscriber, cqrs.ProcessorConfig{Registry: reg, Topic: topicOf,
		DeadLetter: tr.Publisher()}) // what cannot be decoded goes to <topic>.dlq, never loops
	if err != nil {
		return err
	}
	err = proc.AddHandlers(cqrs.NewHandler("inventory", func(ctx context.Context, e *OrderCreated) error {
		env, _ := events.EnvelopeFromContext(ctx) // id, type, source, correlation id… as sent
		handled(env, *e)
		return nil
	}))
	if err != nil {
		return err
	}
	bus, err := cqrs.NewBus(tr.Publisher(), cqrs.BusConfig{Registry: reg, Source: "orders-go", Topic: topicOf})
	if err != nil {
		return err
	}
	ran := make(chan error, 1)
	go func() { ran <- router.Run(ctx) }()
	select {
	case <-router.Running():
	case err := <-ran:
		return err
	}
	ctx = events.WithCorrelationID(ctx, "checkout-42") // the conversation; defaults to the event id
	if err := bus.Publish(ctx, OrderCreated{OrderID: "o-2", TotalCents: 1999}); err != nil {
		_ = router.Close()
		<-ran
		return err
	}
	return <-ran
}

// docs:end go-service

// TestDocsShowFiles: every block of docs/interop.md marked
// "<!-- file: … -->" is that file or region byte for byte, the page shows
// the whole example (and no longer its placeholder), and the example pins
// the Node.js packages the tests run with.
func TestDocsShowFiles(t *testing.T) {
	t.Parallel()
	page := readRepoFile(t, docsPage)
	blocks := docBlocks(t, page)
	for _, b := range blocks {
		t.Run(b.ref, func(t *testing.T) {
			want := shownText(t, b.ref)
			require.Equal(t, want, b.text, "%s line %d: the block marked <!-- file: %s --> differs from the file; copy the file into the page", docsPage, b.line, b.ref)
		})
	}
	t.Run("the page shows the example", func(t *testing.T) {
		refs := map[string]bool{}
		for _, b := range blocks {
			refs[b.ref] = true
		}
		for _, ref := range docsShown {
			require.True(t, refs[ref], "%s shows no block marked <!-- file: %s -->", docsPage, ref)
		}
		scripts, err := filepath.Glob(filepath.Join(repoRoot, "examples", "node", "*.js"))
		require.NoError(t, err)
		require.NotEmpty(t, scripts)
		for _, s := range scripts {
			ref := "examples/node/" + filepath.Base(s)
			require.True(t, refs[ref], "%s shows no block marked <!-- file: %s -->", docsPage, ref)
		}
		require.NotContains(t, string(page), "<!-- node-example -->", "the placeholder is still on the page")
	})
	t.Run("the example pins the tested packages", func(t *testing.T) {
		var example, tested struct{ Dependencies map[string]string }
		require.NoError(t, json.Unmarshal(readRepoFile(t, "examples/node/package.json"), &example))
		require.NoError(t, json.Unmarshal(readRepoFile(t, "internal/interop/node/package.json"), &tested))
		require.NotEmpty(t, example.Dependencies)
		for name, v := range example.Dependencies {
			require.Equal(t, tested.Dependencies[name], v, "examples/node/package.json: %s is not at the version internal/interop/node tests", name)
		}
	})
}

// docBlock is a fenced block of a page marked "<!-- file: ref -->".
type docBlock struct {
	ref  string // PATH or PATH#NAME
	line int    // of the marker, from 1
	text string // the block's lines, each with its newline
}

var fileMarker = regexp.MustCompile(`^<!-- file: (\S+) -->$`)

// docBlocks returns the marked blocks of page, failing on a marker that is
// not directly followed by a fenced block.
func docBlocks(t *testing.T, page []byte) []docBlock {
	t.Helper()
	lines := strings.SplitAfter(string(page), "\n")
	var blocks []docBlock
	for i := 0; i < len(lines); i++ {
		m := fileMarker.FindStringSubmatch(strings.TrimRight(lines[i], "\n"))
		if m == nil {
			continue
		}
		b := docBlock{ref: m[1], line: i + 1}
		require.Less(t, i+1, len(lines), "%s line %d: a marker at the end of the page", docsPage, b.line)
		require.True(t, strings.HasPrefix(lines[i+1], "```"), "%s line %d: <!-- file: %s --> is not directly followed by a ``` block", docsPage, b.line, b.ref)
		var text strings.Builder
		closed := false
		for i += 2; i < len(lines); i++ {
			if strings.TrimRight(lines[i], "\n") == "```" {
				closed = true
				break
			}
			text.WriteString(lines[i])
		}
		require.True(t, closed, "%s line %d: the block of %s is not closed", docsPage, b.line, b.ref)
		b.text = text.String()
		blocks = append(blocks, b)
	}
	return blocks
}

// shownText is what a block marked ref must hold: the file, or its region.
func shownText(t *testing.T, ref string) string {
	t.Helper()
	path, name, isRegion := strings.Cut(ref, "#")
	src := string(readRepoFile(t, path))
	if !isRegion {
		return src
	}
	lines := strings.SplitAfter(src, "\n")
	begin, end := -1, -1
	for i, l := range lines {
		switch strings.TrimSpace(l) {
		case "// docs:begin " + name:
			require.Equal(t, -1, begin, "%s: two regions %s", path, name)
			begin = i
		case "// docs:end " + name:
			require.Equal(t, -1, end, "%s: two ends of region %s", path, name)
			end = i
		}
	}
	require.True(t, begin >= 0 && end > begin, "%s: no region %s (// docs:begin %s … // docs:end %s)", path, name, name, name)
	region := lines[begin+1 : end]
	for len(region) > 0 && strings.TrimSpace(region[0]) == "" {
		region = region[1:]
	}
	for len(region) > 0 && strings.TrimSpace(region[len(region)-1]) == "" {
		region = region[:len(region)-1]
	}
	return strings.Join(region, "")
}

func readRepoFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot, filepath.FromSlash(path)))
	require.NoError(t, err)
	return b
}

// TestDocsNodeExample runs the example of docs/interop.md against RabbitMQ,
// for each wire form the Go side publishes in: consume.js starts first
// (group audit); serve handles the order it publishes itself and the one
// publish.js sends, each with the envelope it was sent with; consume.js
// prints both as the CloudEvents they were, field by field; nothing is
// dead-lettered.
func TestDocsNodeExample(t *testing.T) {
	t.Parallel()
	nodeBin(t)
	for _, w := range []events.Wire{events.WireEventkit, events.WireCloudEvents, events.WireCloudEventsStructured} {
		t.Run(string(w), func(t *testing.T) {
			t.Parallel()
			rabbitMQ(t)
			topic := testenv.Name(t, "docs")
			nodeQueue := amqp.QueueName(topic, "audit")
			cleanupAMQP(t, topic, amqp.QueueName(topic, "inventory"), nodeQueue)

			consume := startScript(t, exampleScript("consume.js"), exampleEnv(topic, "GROUP=audit", "COUNT=2")...)
			waitForConsumer(t, consume, nodeQueue, time.Minute)

			// Go → Go: the order serve publishes once it consumes.
			g := startServe(t, amqpURL(w), topic)
			own := g.await(t, "orders-go", time.Minute)
			require.Equal(t, OrderCreated{OrderID: "o-2", TotalCents: 1999}, own.order)
			require.Equal(t, "orders.order_created", own.env.Name)
			require.Equal(t, "checkout-42", own.env.CorrelationID)
			require.Equal(t, 1, own.env.Version)
			require.Equal(t, "o-2", own.env.PartitionKey)

			// Node → Go: publish.js's event, handled by serve's typed handler.
			publish := startScript(t, exampleScript("publish.js"), exampleEnv(topic)...)
			sentLine := publish.next(t, time.Minute)
			publish.wait(t, time.Minute)
			var sent ceAttrs
			require.NoError(t, json.Unmarshal([]byte(sentLine.Raw), &sent), sentLine.Raw)
			require.Equal(t, "orders.order_created", sent.Type)
			require.Equal(t, "shop-node", sent.Source)
			fromNode := g.await(t, "shop-node", time.Minute)
			require.Equal(t, wantEnvelope(t, &sent), fromNode.env, "the envelope publish.js sent (%s)", sentLine.Raw)
			require.Equal(t, OrderCreated{OrderID: "o-1", TotalCents: 4200}, fromNode.order)
			require.NotEmpty(t, fromNode.env.CorrelationID)

			// Go → Node and Node → Node: consume.js read both.
			got := map[string]map[string]any{}
			for range 2 {
				l := consume.next(t, time.Minute)
				var ce map[string]any
				require.NoError(t, json.Unmarshal([]byte(l.Raw), &ce), l.Raw)
				id, _ := ce["id"].(string)
				got[id] = ce
			}
			consume.wait(t, time.Minute)
			require.Equal(t, map[string]any{
				"specversion":     "1.0",
				"id":              own.env.ID,
				"type":            "orders.order_created",
				"source":          "orders-go",
				"time":            own.env.OccurredAt.UTC().Truncate(time.Millisecond).Format("2006-01-02T15:04:05.000Z"),
				"datacontenttype": "application/json",
				"correlationid":   "checkout-42",
				"eventversion":    "1",
				"partitionkey":    "o-2",
				"data":            map[string]any{"order_id": "o-2", "total_cents": float64(1999)},
			}, got[own.env.ID], "what consume.js read of the order serve published in the %s form", w)
			var sentAll map[string]any
			require.NoError(t, json.Unmarshal([]byte(sentLine.Raw), &sentAll))
			require.Equal(t, sentAll, got[sent.ID], "what consume.js read of publish.js's event")

			require.Equal(t, 2, g.count(), "serve handled each event once")
			require.Zero(t, depth(t, amqp.QueueName(middleware.DeadLetterTopic(topic), middleware.DeadLetterGroupDefault)), "dead letters")
			require.Zero(t, depth(t, nodeQueue), "events left for consume.js")
		})
	}
}

// exampleScript is the path of an example program, from this folder.
func exampleScript(name string) string {
	return filepath.Join(repoRoot, "examples", "node", name)
}

// exampleEnv is the environment of an example program on topic: RabbitMQ,
// and this folder's node_modules, which npm ci installs at the versions the
// example pins (TestDocsShowFiles checks them).
func exampleEnv(topic string, more ...string) []string {
	modules, err := filepath.Abs("node_modules")
	if err != nil {
		panic(err) // only when the working directory is gone
	}
	if p := os.Getenv("NODE_PATH"); p != "" {
		modules += string(os.PathListSeparator) + p
	}
	return append([]string{"AMQP_URL=" + testenv.AMQPURL(), "TOPIC=" + topic, "NODE_PATH=" + modules}, more...)
}

// rabbitMQ stops the test when RabbitMQ is unreachable (skip outside CI,
// fail under CI).
func rabbitMQ(t *testing.T) {
	t.Helper()
	conn, err := amqp091.Dial(testenv.AMQPURL())
	if err != nil {
		testenv.Unavailable(t, "RabbitMQ", err)
	}
	_ = conn.Close()
}

// waitForConsumer waits until queue has a consumer (s, which declared and
// bound it), failing when s exits first or timeout passes.
func waitForConsumer(t *testing.T, s *script, queue string, timeout time.Duration) {
	t.Helper()
	conn, err := amqp091.Dial(testenv.AMQPURL())
	require.NoError(t, err)
	defer conn.Close()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(timeout)
	for {
		// A channel per look: looking at a queue not yet declared closes it.
		ch, err := conn.Channel()
		require.NoError(t, err)
		q, err := ch.QueueDeclarePassive(queue, true, false, false, false, nil)
		if err == nil {
			_ = ch.Close()
			if q.Consumers > 0 {
				return
			}
		} else if !notFound(err) {
			require.NoError(t, err, "queue %s", queue)
		}
		s.mu.Lock()
		exited, exitErr := s.exited, s.err
		s.mu.Unlock()
		if exited {
			t.Fatalf("%s exited (%v) before consuming from %s; stderr:\n%s", s.name, exitErr, queue, s.stderr.String())
		}
		select {
		case <-tick.C:
		case <-deadline:
			t.Fatalf("%s did not consume from %s in %s; stderr:\n%s", s.name, queue, timeout, s.stderr.String())
		}
	}
}

// depth is how many messages wait in queue, 0 when there is no such queue.
func depth(t *testing.T, queue string) int {
	t.Helper()
	conn, err := amqp091.Dial(testenv.AMQPURL())
	require.NoError(t, err)
	defer conn.Close()
	ch, err := conn.Channel()
	require.NoError(t, err)
	defer ch.Close()
	q, err := ch.QueueDeclarePassive(queue, true, false, false, false, nil)
	if notFound(err) {
		return 0
	}
	require.NoError(t, err)
	return q.Messages
}

// served is one event serve's handler got.
type served struct {
	env   events.Envelope
	order OrderCreated
}

// goService is serve running for one test.
type goService struct {
	changed chan struct{} // signalled on each event and when serve returns
	stopped chan struct{} // closed when serve returned

	mu  sync.Mutex
	got []served
	err error // serve's
}

// startServe runs serve on url and topic until t ends.
func startServe(t *testing.T, url, topic string) *goService {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	g := &goService{changed: make(chan struct{}, 1), stopped: make(chan struct{})}
	go func() {
		defer close(g.stopped)
		err := serve(ctx, url, topic, g.handled)
		g.mu.Lock()
		g.err = err
		g.mu.Unlock()
		g.signal()
	}()
	t.Cleanup(func() {
		cancel()
		<-g.stopped
		if g.err != nil && !errors.Is(g.err, context.Canceled) {
			t.Errorf("serve: %v", g.err)
		}
	})
	return g
}

func (g *goService) handled(env events.Envelope, e OrderCreated) {
	g.mu.Lock()
	g.got = append(g.got, served{env: env, order: e})
	g.mu.Unlock()
	g.signal()
}

func (g *goService) signal() {
	select {
	case g.changed <- struct{}{}:
	default:
	}
}

func (g *goService) count() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.got)
}

// await returns the first event from source the handler got, failing when
// serve stops first or timeout passes.
func (g *goService) await(t *testing.T, source string, timeout time.Duration) served {
	t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		g.mu.Lock()
		for _, s := range g.got {
			if s.env.Source == source {
				g.mu.Unlock()
				return s
			}
		}
		err, n := g.err, len(g.got)
		g.mu.Unlock()
		select {
		case <-g.stopped:
			t.Fatalf("serve returned (%v) before handling an event from %s", err, source)
		case <-g.changed:
		case <-deadline.C:
			t.Fatalf("serve handled no event from %s in %s (%d from others)", source, timeout, n)
		}
	}
}
