package testenv

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// KeepEnv is the environment variable that, set to anything, makes Main
// keep what the tests left on the services, to look at after a failure.
const KeepEnv = "EVENTKIT_TEST_KEEP"

// minTracked is the shortest name Track takes: every object whose name
// contains a tracked name is removed, so a short one would match too much.
const minTracked = 8

// sweepTimeout bounds the whole sweep of one test binary.
const sweepTimeout = 3 * time.Minute

var tracked struct {
	sync.Mutex
	names   []string
	journal *os.File // Main's, see journal.go
}

// Track records name as one of this test process's names, as Name does
// for the names it returns, and returns it: Main removes every object
// whose name contains it. It is for names a test does not get from Name,
// such as the topics a third-party suite generates. It panics on a name
// shorter than 8 bytes, which could match other processes' objects.
func Track(name string) string {
	if len(name) < minTracked {
		panic(fmt.Sprintf("testenv.Track(%q): want a name of at least %d bytes", name, minTracked))
	}
	tracked.Lock()
	defer tracked.Unlock()
	tracked.names = append(tracked.names, name)
	journalLine(name)
	return name
}

// trackedNames returns a copy of the names recorded so far.
func trackedNames() []string {
	tracked.Lock()
	defer tracked.Unlock()
	return append([]string(nil), tracked.names...)
}

// owned reports whether object belongs to this process: its name contains
// one of names (every object a test makes derives its name from one:
// watermill_<name>, <topic>_<group>, <topic>.dlq, …).
func owned(object string, names []string) bool {
	for _, n := range names {
		if strings.Contains(object, n) {
			return true
		}
	}
	return false
}

// Main runs the package's tests as goleak.VerifyTestMain(m, opts...) does,
// and before the goroutine check removes what they left on the shared
// services: every PostgreSQL schema, table, view, sequence and function,
// MariaDB table and database, and RabbitMQ queue, exchange and virtual
// host (on the shared node, and on the fault node when the process asked
// for AMQPFaultURL, holding LockFaultNode) whose name contains a name
// that Name or Track handed out in this process. Objects of other
// processes, and shared ones such as the SQL transport's default delay
// table, are never touched. Call it from TestMain:
//
//	func TestMain(m *testing.M) { testenv.Main(m, goleak.IgnoreTopFunction(…)) }
//
// A service that is down is skipped (its tests skip or fail on their own).
// A listing or removal that fails is reported on stderr and, under CI,
// fails a run that passed; a failed run stays failed. With -v, what was
// removed is listed: objects the tests' own cleanup missed. With
// EVENTKIT_TEST_KEEP set the sweep is skipped: the objects stay until the
// next run without it.
//
// A test binary that dies before its sweep (a panic, -timeout, Ctrl-C) is
// swept by the next Main to start: Main journals the names it hands out in
// os.TempDir()/eventkit-testenv (see journal.go).
func Main(m *testing.M, opts ...goleak.Option) {
	goleak.VerifyTestMain(sweeping{m}, opts...)
}

// sweeping runs the tests, then the sweep.
type sweeping struct{ m *testing.M }

func (s sweeping) Run() int {
	if !flag.Parsed() {
		flag.Parse() // for testing.Verbose; m.Run parses them otherwise
	}
	keep := os.Getenv(KeepEnv) != ""
	if !keep {
		ctx, cancel := context.WithTimeout(context.Background(), sweepTimeout)
		for _, rep := range sweepOrphans(ctx) {
			if testing.Verbose() {
				fmt.Fprintf(os.Stderr, "testenv: the sweep of what an earlier test process left (it died before its own):\n%s", rep)
			}
		}
		cancel()
	}
	journal, err := startJournal()
	if err != nil {
		fmt.Fprintf(os.Stderr, "testenv: no journal of the names (a crash would leave objects behind): %v\n", err)
	}
	code := s.m.Run()
	if keep {
		closeJournal(journal, false) // the next run without it sweeps them
		return code
	}
	ctx, cancel := context.WithTimeout(context.Background(), sweepTimeout)
	defer cancel()
	rep := sweep(ctx, trackedNames(), faultUsed.Load())
	closeJournal(journal, err == nil && len(rep.errs) == 0 && len(rep.notes) == 0)
	if testing.Verbose() {
		for _, line := range rep.notes {
			fmt.Fprintln(os.Stderr, "testenv:", line)
		}
		if len(rep.removed) > 0 {
			fmt.Fprintf(os.Stderr, "testenv: removed %d object(s) the tests left:\n\t%s\n", len(rep.removed), strings.Join(rep.removed, "\n\t"))
		}
	}
	if err := errors.Join(rep.errs...); err != nil {
		fmt.Fprintf(os.Stderr, "testenv: the sweep of what the tests left failed, objects may remain:\n%v\n", err)
		if InCI() && code == 0 {
			code = 1
		}
	}
	return code
}

// report is what a sweep did: objects removed, services skipped, errors.
type report struct {
	mu      sync.Mutex
	removed []string
	notes   []string
	errs    []error
}

func (r *report) remove(kind, name string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.removed = append(r.removed, kind+" "+name)
}

func (r *report) note(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.notes = append(r.notes, fmt.Sprintf(format, args...))
}

func (r *report) fail(err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.errs = append(r.errs, err)
}

// errDown marks a service that could not be reached: a note, not an error.
var errDown = errors.New("unreachable")

// service is one service a sweep visits.
type service struct {
	name string
	run  func(ctx context.Context, names []string, rep *report) error
}

// sweep removes the objects names own on every service (the fault node
// too with fault), one goroutine per service.
func sweep(ctx context.Context, names []string, fault bool) *report {
	rep := &report{}
	if len(names) == 0 {
		return rep
	}
	services := []service{
		{"PostgreSQL", sweepPostgres},
		{"MariaDB", sweepMySQL},
		{"RabbitMQ", func(ctx context.Context, names []string, rep *report) error {
			return sweepRabbitMQ(ctx, AMQPURL(), AMQPNode(), true, names, rep)
		}},
	}
	if fault {
		services = append(services, service{"the fault RabbitMQ node", func(ctx context.Context, names []string, rep *report) error {
			// Not while another package's test has the node stopped.
			unlock, err := lockFaultNode(ctx)
			if err != nil {
				return err
			}
			defer unlock()
			return sweepRabbitMQ(ctx, faultURL(), AMQPFaultNode(), false, names, rep)
		}})
	}
	var wg sync.WaitGroup
	for _, s := range services {
		wg.Add(1)
		go func() {
			defer wg.Done()
			switch err := s.run(ctx, names, rep); {
			case errors.Is(err, errDown):
				rep.note("%s skipped: %v", s.name, err)
			case err != nil:
				rep.fail(fmt.Errorf("%s: %w", s.name, err))
			}
		}()
	}
	wg.Wait()
	return rep
}
