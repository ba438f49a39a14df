// Command eventkit-nemesis proves eventkit's promise — at-least-once on
// the wire, effect once with the inbox — over the real sample flow under
// mixed faults, as Jepsen's nemesis and checker do.
//
// It starts, on infrastructure of its own, a throw-away PostgreSQL cluster
// (initdb and pg_ctl in a temp dir, on its own port) and a three-node
// RabbitMQ cluster (nodes on their own ports and names, quorum queues),
// with a TCP fault proxy in front of each, and the sample services as OS
// processes: two orders (two relays on one outbox), inventory and
// payments. It places orders at a steady rate (one in -poison-every a
// poison order, whose SKU inventory does not stock) while two lanes of a
// seeded random schedule inject faults:
//
//	kill-service                SIGKILL of a service process, then restart
//	rolling-restart             SIGTERM of each process in turn, as a deploy
//	freeze-active-relay         SIGSTOP of the orders process whose relay leads, then SIGCONT
//	rabbitmq-kill-node          SIGKILL of a RabbitMQ node's VM, then restart
//	rabbitmq-stop-node          stop_app / start_app of one node
//	rabbitmq-outage             stop_app of every node, then start_app
//	rabbitmq-close-connections  close_all_connections on every node
//	postgres-terminate-backends pg_terminate_backend of the services' backends
//	postgres-fast-restart       pg_ctl restart -m fast
//	net-latency                 latency added on one link (PostgreSQL or a node)
//	net-partition               one link partitioned: connections hang
//	net-reset                   one link's connections reset
//
// Every kind runs at least once per run. When the load stops, every fault
// is healed and the system drains; then an independent checker reads the
// databases and the dead-letter queues only and reports every broken
// promise with the ids involved (see check). A wire observer counts the
// duplicates the broker carried; they are reported, not hidden.
//
// The seed is printed: -seed N replays the same schedule. -break inbox
// empties the inbox tables every half second during the faults, which
// turns the inbox off: the checker must then fail.
//
// Exit status: 0 when every run shows no violation, 1 when one does, 2 on
// bad flags or when the infrastructure cannot start.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"math/rand/v2"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/b2131a45/eventkit/internal/sample"
)

type options struct {
	duration     time.Duration
	seeds        []uint64
	rate         int
	poisonEvery  int
	drainTimeout time.Duration
	breakWhat    string
	keep         bool
	work         string
	report       string
}

func main() {
	if len(os.Args) > 1 && os.Args[1] == "service" {
		os.Exit(serviceMain(os.Args[2:]))
	}
	o, err := parseFlags(os.Args[1:])
	if err != nil {
		fmt.Fprintln(os.Stderr, "eventkit-nemesis:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, o))
}

func parseFlags(args []string) (options, error) {
	var o options
	var seeds string
	fs := flag.NewFlagSet("eventkit-nemesis", flag.ContinueOnError)
	fs.DurationVar(&o.duration, "duration", time.Minute, "how long the load and the faults run, per seed (every fault kind runs at least once)")
	fs.StringVar(&seeds, "seed", "random", "comma-separated seeds, one run each; \"random\" picks one (printed, to replay)")
	fs.IntVar(&o.rate, "rate", 20, "orders placed per second")
	fs.IntVar(&o.poisonEvery, "poison-every", 40, "one poison order (unknown SKU) in this many; 0: none")
	fs.DurationVar(&o.drainTimeout, "drain-timeout", 4*time.Minute, "how long the system may take to drain once the load stops")
	fs.StringVar(&o.breakWhat, "break", "", "break a guarantee on purpose to show the checker fails: inbox (empties the inbox tables during the faults)")
	fs.BoolVar(&o.keep, "keep", false, "leave PostgreSQL and RabbitMQ running after the run, for another checker (their addresses are printed)")
	fs.StringVar(&o.work, "work", "", "work directory (logs, data); a new temp dir by default, removed unless -keep")
	fs.StringVar(&o.report, "report", "", "also write the report as JSON to this file")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	for _, s := range strings.Split(seeds, ",") {
		s = strings.TrimSpace(s)
		if s == "random" {
			o.seeds = append(o.seeds, rand.Uint64()%1_000_000)
			continue
		}
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			return o, fmt.Errorf("-seed %q: want numbers or \"random\"", s)
		}
		o.seeds = append(o.seeds, n)
	}
	switch {
	case o.duration <= 0:
		return o, fmt.Errorf("-duration %v: want more than 0", o.duration)
	case o.rate <= 0 || o.rate > 1000:
		return o, fmt.Errorf("-rate %d: want 1 to 1000 orders per second", o.rate)
	case o.poisonEvery < 0:
		return o, fmt.Errorf("-poison-every %d: want 0 or more", o.poisonEvery)
	case o.breakWhat != "" && o.breakWhat != "inbox":
		return o, fmt.Errorf("-break %q: want inbox", o.breakWhat)
	}
	return o, nil
}

// serviceMain runs one sample service, as a child process of the run.
func serviceMain(args []string) int {
	if len(args) != 1 {
		fmt.Fprintln(os.Stderr, "usage: eventkit-nemesis service orders|inventory|payments")
		return 2
	}
	run := map[string]func(context.Context, sample.ServiceConfig) error{
		"orders": sample.RunOrders, "inventory": sample.RunInventory, "payments": sample.RunPayments,
	}[args[0]]
	if run == nil {
		fmt.Fprintf(os.Stderr, "eventkit-nemesis service: unknown service %q\n", args[0])
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, sample.ServiceConfigFromEnv()); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// run sets up the infrastructure once and runs one nemesis run per seed.
func run(ctx context.Context, o options) int {
	log.SetFlags(log.Ltime)
	keepLogs := false
	work := o.work
	if work == "" {
		var err error
		if work, err = os.MkdirTemp("", "eventkit-nemesis-"); err != nil {
			log.Print(err)
			return 2
		}
		// Removed at the end unless -keep, or a run found something: then
		// its logs are kept and their place printed.
		defer func() {
			if !o.keep && !keepLogs {
				os.RemoveAll(work)
			} else if keepLogs {
				fmt.Printf("\nlogs kept in %s (one file per process and run; rabbitmq/ and pg/ hold the servers' logs)\n", work)
			}
		}()
	}
	if os.Geteuid() == 0 {
		_ = os.Chmod(work, 0o755) // the postgres and rabbitmq users work in it
	}
	inf, err := startInfra(ctx, work)
	if err != nil {
		log.Printf("eventkit-nemesis: %v", err)
		return 2
	}
	defer inf.stop(o.keep)
	var reports []*report
	exit := 0
	for i, seed := range o.seeds {
		rep, err := runSeed(ctx, o, inf, work, i+1, seed)
		if err != nil {
			log.Printf("eventkit-nemesis: seed %d: %v", seed, err)
			return 2
		}
		rep.print(o)
		reports = append(reports, rep)
		if len(rep.Check.Violations) > 0 {
			exit = 1
		}
		if len(rep.Check.Violations) > 0 || len(rep.Findings) > 0 {
			keepLogs = true
		}
		if ctx.Err() != nil {
			break
		}
	}
	if o.report != "" {
		raw, err := json.MarshalIndent(reports, "", "  ")
		if err == nil {
			err = os.WriteFile(o.report, raw, 0o644)
		}
		if err != nil {
			log.Printf("eventkit-nemesis: -report: %v", err)
			exit = max(exit, 2)
		}
	}
	if o.keep {
		fmt.Printf("\nkept: PostgreSQL %s (user postgres, databases <service>_<run>), RabbitMQ nodes %s (vhosts nemesis-<run>), work dir %s\n",
			inf.pg.addr(), inf.nodeAddrs(), work)
	}
	return exit
}
