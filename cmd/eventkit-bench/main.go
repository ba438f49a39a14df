// Command eventkit-bench measures eventkit side by side with stock
// Watermill (watermill-sql default PostgreSQL schema + the components/
// forwarder + watermill-amqp or watermill-kafka) in one run, and prints
// events/s, latency percentiles, medians and the eventkit/stock ratios.
//
// Scenarios (-scenarios, comma separated; "all" is every one of them):
//
//	drain    amqp then kafka
//	amqp     drain an outbox of -events rows to RabbitMQ: eventkit, stock with
//	         and without confirms (channel pool 1 and default), and the raw
//	         pipelined-confirm ceiling (no database), measured right before
//	         and right after eventkit's drains in each round
//	kafka    drain to an in-process kfake cluster: eventkit and stock
//	direct   the raw pipelined-confirm publish to RabbitMQ on its own
//	latency  commit→consumer latency at -rate events/s for -duration, eventkit
//	         and stock, through RabbitMQ
//	consume  handler throughput from RabbitMQ: a bare Watermill handler vs
//	         an eventkit handler behind middleware.Default + PostgreSQL inbox,
//	         one transaction per message and with InboxConfig.GroupCommit
//	         and GroupTx (with amqp concurrency=32; 4 for one transaction per
//	         message)
//	overflow a RabbitMQ queue with max-length and reject-publish and a slow
//	         consumer: events lost by stock without confirms and by eventkit
//	backlog  (alias memory) drain a -backlog row outbox to a discarding
//	         publisher, sampling the heap and the peak RSS; run in a child
//	         process when other scenarios share the run, so that their memory
//	         does not count
//	recover  one RabbitMQ consumer behind middleware.Default with a memory
//	         inbox, -recover-events events of which one in ten fails its
//	         first attempt: events/s of the other nine in ten with
//	         in-process retry (the backoff slept holding the message) and
//	         with delayed retry (a 1 s delay queue, the consumer goes on),
//	         alternating each round
//	schema   runtime schema validation (package contracts) in process:
//	         -events events published through a cqrs.Bus with and without
//	         BusConfig.Validate, and handled behind Default on mem:// with
//	         and without the Validator's middleware, alternating each round
//
// Every drain, direct, latency, consume, recover and schema run counts the events a
// consumer received by id: a missing event fails the run and the program
// exits non-zero with a message saying EVENTS LOST. -plot out.png draws
// the medians (throughput and p99 latency, eventkit vs stock) as a PNG.
//
// Services: PostgreSQL (EVENTKIT_POSTGRES_URL) and RabbitMQ (EVENTKIT_AMQP_URL),
// with the localhost defaults of the tests. Each scenario runs -runs times
// and the medians are reported.
package main

import (
	"context"
	"database/sql"
	"errors"
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"runtime/pprof"
	"slices"
	"strings"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/b2131a45/eventkit/events"
	"github.com/b2131a45/eventkit/internal/testenv"
)

type options struct {
	events    int
	runs      int
	rate      int
	duration  time.Duration
	backlog   int
	batch     int
	publisher string
	scenarios []string
	pgURL     string
	amqpURL   string
	plot      string
	consumers int
	// inboxConns caps the consume scenario's inbox connections (0: one per
	// claim in flight).
	inboxConns int
	// variants, when set, keeps only the consume variants of these queue
	// groups (the bare handlers always run).
	variants []string
	// recoverEvents is the number of events of the recover scenario.
	recoverEvents int
	resultsTo     string // a child process writes its results here (JSON)
}

// allScenarios is the order of -scenarios all.
var allScenarios = []string{"amqp", "kafka", "direct", "latency", "consume", "recover", "schema", "overflow", "backlog"}

func main() {
	var o options
	var scen string
	flag.IntVar(&o.events, "events", 20000, "events in the outbox of a drain run")
	flag.IntVar(&o.runs, "runs", 3, "runs of each measurement; medians are reported")
	flag.IntVar(&o.rate, "rate", 200, "events per second of the latency scenario")
	flag.DurationVar(&o.duration, "duration", 10*time.Second, "length of the latency scenario")
	flag.IntVar(&o.backlog, "backlog", 1000000, "rows of the backlog scenario")
	flag.IntVar(&o.batch, "batch", 0, "eventkit RelayConfig.BatchSize (0: the default)")
	flag.StringVar(&o.publisher, "publisher", "transports", "eventkit's publisher: transports (transports.Open) or builtin (the bench's own)")
	flag.StringVar(&scen, "scenarios", "all", "scenarios to run: all, or some of drain,amqp,kafka,direct,latency,consume,recover,schema,overflow,backlog (alias memory)")
	flag.IntVar(&o.consumers, "consumers", 8, "competing consumers (one router each) of the consume scenario's tuned variants")
	flag.IntVar(&o.inboxConns, "inbox-conns", 0, "database connections of the consume scenario's inboxes (0: one per claim in flight, consumers×4+8, at least 20)")
	variants := flag.String("variants", "", "consume scenario: only these eventkit variants, comma-separated groups (ek1, ekk, ekconc, ekpool, ekpoolconc, ekintx, ekpoolintx, ekgrouptx, ekgroup, ekasync); the bare handlers always run")
	flag.IntVar(&o.recoverEvents, "recover-events", 2000, "events of the recover scenario, one in ten failing its first attempt")
	flag.StringVar(&o.plot, "plot", "", "write a PNG chart of the medians (throughput and p99 latency, eventkit vs stock) to this file")
	flag.StringVar(&o.resultsTo, "results-json", "", "write the medians as JSON to this file (used for the backlog child process)")
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile of the whole run to this file")
	flag.Parse()
	if *variants != "" {
		o.variants = strings.Split(*variants, ",")
	}
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err != nil {
			log.Fatal(err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			log.Fatal(err)
		}
		defer pprof.StopCPUProfile()
	}
	for _, s := range strings.Split(scen, ",") {
		switch s = strings.TrimSpace(s); s {
		case "all":
			o.scenarios = append(o.scenarios, allScenarios...)
		case "drain":
			o.scenarios = append(o.scenarios, "amqp", "kafka")
		case "memory":
			o.scenarios = append(o.scenarios, "backlog")
		case "":
		default:
			o.scenarios = append(o.scenarios, s)
		}
	}
	if o.publisher != "transports" && o.publisher != "builtin" {
		log.Fatalf("-publisher %q: want transports or builtin", o.publisher)
	}
	o.pgURL, o.amqpURL = testenv.PostgresURL(), testenv.AMQPURL()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	db, err := sql.Open("pgx", o.pgURL)
	if err != nil {
		log.Fatal(err)
	}
	defer db.Close()
	db.SetMaxOpenConns(max(20, o.consumers+8)) // the consume scenario holds one per message in flight
	if err := db.PingContext(ctx); err != nil {
		log.Fatalf("PostgreSQL: %v", err)
	}
	b := &bench{o: o, db: db, reg: registry(),
		rabbit: newServer("RabbitMQ", o.amqpURL), postgres: newServer("PostgreSQL", o.pgURL)}
	exit := 0
	defer func() {
		if exit != 0 {
			pprof.StopCPUProfile()
			os.Exit(exit)
		}
	}()
	for _, s := range o.scenarios {
		var err error
		switch s {
		case "amqp":
			err = b.amqpDrain(ctx, false)
		case "amqp-eventkit":
			err = b.amqpDrain(ctx, true)
		case "kafka":
			err = b.kafkaDrain(ctx)
		case "latency":
			err = b.latency(ctx)
		case "overflow":
			err = b.overflow(ctx)
		case "direct":
			err = b.direct(ctx)
		case "consume":
			err = b.consume(ctx)
		case "recover":
			err = b.recovery(ctx)
		case "schema":
			err = b.schema(ctx)
		case "backlog":
			if len(o.scenarios) > 1 {
				err = b.backlogChild(ctx, *cpuprofile)
			} else {
				err = b.memory(ctx)
			}
		default:
			err = fmt.Errorf("unknown scenario %q", s)
		}
		if err != nil {
			log.Printf("FAIL %s: %v%s", s, err, lostConnection(err))
			exit = 1
		}
	}
	b.summary()
	if o.resultsTo != "" {
		if err := b.writeResults(o.resultsTo); err != nil {
			log.Printf("-results-json: %v", err)
			exit = 1
		}
	}
	if o.plot != "" {
		if err := plot(o.plot, b.results); err != nil {
			log.Printf("-plot: %v", err)
			exit = 1
		} else {
			fmt.Printf("\nchart written to %s\n", o.plot)
		}
	}
	if exit != 0 {
		log.Printf("FAILED: see the FAIL lines above")
	}
}

type bench struct {
	o       options
	db      *sql.DB
	reg     *events.Registry
	seq     int
	results []result
	// cpuPerEvent is this process's CPU per event of the last drain or
	// raw publish; brokerCPU and dbCPU are RabbitMQ's and PostgreSQL's
	// (-1 when unknown: not on this machine).
	cpuPerEvent, brokerCPU, dbCPU time.Duration
	rabbit, postgres              server
	checkpointRefused             bool // CHECKPOINT failed once (no privilege)
}

// BenchEvent is the event of every scenario (about 200 bytes of JSON).
type BenchEvent struct {
	OrderID  string   `json:"order_id"`
	Customer string   `json:"customer"`
	Total    int      `json:"total_cents"`
	Seq      int      `json:"seq"`
	Items    []string `json:"items"`
}

func (e BenchEvent) PartitionKey() string { return e.OrderID }

func registry() *events.Registry {
	reg := events.NewRegistry()
	events.MustRegister[BenchEvent](reg, "bench.order_created")
	return reg
}

// name returns a fresh outbox name.
func (b *bench) name(prefix string) string {
	b.seq++
	return fmt.Sprintf("bench_%s_%d_%d", prefix, os.Getpid()%100000, b.seq)
}

// lostConnection says so when err is the loss of the connection to
// RabbitMQ, which ends the scenario but not the run.
func lostConnection(err error) string {
	var aerr *amqp.Error
	if errors.Is(err, amqp.ErrClosed) || (errors.As(err, &aerr) && (aerr.Code == amqp.ChannelError || aerr.Code == amqp.ConnectionForced)) {
		return " (the connection to RabbitMQ was lost mid-scenario; going on with the next scenario)"
	}
	return ""
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s) == 0 {
		return 0
	}
	return s[len(s)/2]
}

func ratio(a, b float64) string {
	if b == 0 {
		return "n/a"
	}
	return fmt.Sprintf("%.2f×", a/b)
}

func pass(ok bool) string {
	if ok {
		return "PASS"
	}
	return "MISS"
}
