// Command eventkit-bench measures eventkit's outbox relay side by side with
// stock Watermill (watermill-sql default PostgreSQL schema + the components/
// forwarder + watermill-amqp or watermill-kafka) in one run, and prints
// events/s, latency percentiles and the ratios.
//
// Scenarios (-scenarios, comma separated):
//
//	amqp     drain an outbox of -events rows to RabbitMQ: eventkit, stock with
//	         and without confirms (channel pool 1 and default), and the raw
//	         pipelined-confirm ceiling (no database)
//	kafka    drain to an in-process kfake cluster: eventkit and stock
//	latency  commit→consumer latency at -rate events/s for -duration, eventkit
//	         and stock, through RabbitMQ
//	overflow a RabbitMQ queue with max-length and reject-publish and a slow
//	         consumer: events lost by stock without confirms and by eventkit
//	memory   drain a -backlog row outbox to a discarding publisher, sampling
//	         the heap
//
// Services: PostgreSQL (EVENTKIT_POSTGRES_URL) and RabbitMQ (EVENTKIT_AMQP_URL),
// with the localhost defaults of the tests. Each scenario runs -runs times
// and the medians are reported.
package main

import (
	"context"
	"database/sql"
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
}

func main() {
	var o options
	var scen string
	flag.IntVar(&o.events, "events", 20000, "events in the outbox of a drain run")
	flag.IntVar(&o.runs, "runs", 3, "runs of each measurement; medians are reported")
	flag.IntVar(&o.rate, "rate", 200, "events per second of the latency scenario")
	flag.DurationVar(&o.duration, "duration", 10*time.Second, "length of the latency scenario")
	flag.IntVar(&o.backlog, "backlog", 1000000, "rows of the memory scenario")
	flag.IntVar(&o.batch, "batch", 0, "eventkit RelayConfig.BatchSize (0: the default)")
	flag.StringVar(&o.publisher, "publisher", "transports", "eventkit's publisher: transports (transports.Open) or builtin (the bench's own)")
	flag.StringVar(&scen, "scenarios", "amqp,kafka,latency,overflow", "scenarios to run: amqp,kafka,latency,overflow,memory")
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile of the whole run to this file")
	flag.Parse()
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
	o.scenarios = strings.Split(scen, ",")
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
	db.SetMaxOpenConns(20)
	if err := db.PingContext(ctx); err != nil {
		log.Fatalf("PostgreSQL: %v", err)
	}
	b := &bench{o: o, db: db, reg: registry()}
	exit := 0
	defer func() {
		if exit != 0 {
			pprof.StopCPUProfile()
			os.Exit(exit)
		}
	}()
	for _, s := range o.scenarios {
		var err error
		switch strings.TrimSpace(s) {
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
		case "memory":
			err = b.memory(ctx)
		case "":
		default:
			err = fmt.Errorf("unknown scenario %q", s)
		}
		if err != nil {
			log.Printf("%s: %v", s, err)
			exit = 1
		}
	}
}

type bench struct {
	o   options
	db  *sql.DB
	reg *events.Registry
	seq int
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
