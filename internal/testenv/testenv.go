// Package testenv gives tests the URLs of the real services they run against,
// the rule for a missing service (skip when CI is unset, fail under CI), and
// names of their own, from which every object a test makes on a service
// derives its name: Main removes those objects after the package's tests.
package testenv

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// Service URLs. Each is read from its environment variable, with the local
// default of a development machine.
func PostgresURL() string {
	return env("EVENTKIT_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/test?sslmode=disable")
}

// MySQLURL is a mysql:// URL as transports.Open takes it.
func MySQLURL() string {
	return env("EVENTKIT_MYSQL_URL", "mysql://root@127.0.0.1:3306/test")
}

// AMQPURL is the RabbitMQ URL.
func AMQPURL() string {
	return env("EVENTKIT_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
}

// AMQPFaultURL is the RabbitMQ node that fault-injection tests stop and
// start (.ci/rabbitmq-fault-node starts it), so that the shared node of
// every other test stays up. Main sweeps it in the processes that ask.
func AMQPFaultURL() string {
	markFault()
	return faultURL()
}

// faultUsed is whether this process asked for AMQPFaultURL.
var faultUsed atomic.Bool

func faultURL() string {
	return env("EVENTKIT_AMQP_FAULT_URL", "amqp://guest:guest@127.0.0.1:5673/")
}

// AMQPFaultNode is the Erlang node name of AMQPFaultURL, for rabbitmqctl -n.
func AMQPFaultNode() string {
	return env("EVENTKIT_RABBITMQ_FAULT_NODE", "eventkit-fault@localhost")
}

// InCI reports whether the tests run under CI (CI set to anything but "" or "false").
func InCI() bool {
	v := strings.ToLower(os.Getenv("CI"))
	return v != "" && v != "false" && v != "0"
}

// Unavailable stops the test because a service it needs is unreachable:
// it skips outside CI and fails under CI, where every service must be up.
func Unavailable(t testing.TB, service string, err error) {
	t.Helper()
	if InCI() {
		t.Fatalf("%s is unavailable under CI: %v", service, err)
	}
	t.Skipf("%s is unavailable (set CI=true to make this a failure): %v", service, err)
}

// LockFaultNode holds, until t ends, a lock that the tests stopping the
// fault node (AMQPFaultURL) take, across test processes: go test runs
// packages in parallel, and two tests stopping and starting one node at
// once would break each other's outage.
func LockFaultNode(t testing.TB) {
	t.Helper()
	unlock, err := lockFaultNode(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(unlock)
}

// lockFaultNode takes the lock of LockFaultNode, waiting until ctx ends.
func lockFaultNode(ctx context.Context) (unlock func(), err error) {
	f, err := os.OpenFile(filepath.Join(os.TempDir(), "eventkit-fault-node.lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open the fault node's lock: %w", err)
	}
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return func() {
				_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
				_ = f.Close()
			}, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			_ = f.Close()
			return nil, fmt.Errorf("lock the fault node: %w", err)
		}
		select {
		case <-ctx.Done():
			_ = f.Close()
			return nil, fmt.Errorf("lock the fault node: %w", ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

var unsafe = regexp.MustCompile(`[^a-z0-9]+`)

// Name returns a name unique to this test run, safe for topics, tables,
// queues and consumer groups: prefix, the test name, and random hex. The
// process records it: Main removes every object whose name contains it, so
// names derived from it (watermill_<name>, <name>_<group>, <name>.dlq)
// must keep it whole.
func Name(t testing.TB, prefix string) string {
	t.Helper()
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	n := unsafe.ReplaceAllString(strings.ToLower(t.Name()), "_")
	if len(n) > 24 {
		n = n[len(n)-24:]
	}
	return Track(strings.Trim(prefix+"_"+n, "_") + "_" + hex.EncodeToString(b))
}

// WithDelayTable returns the postgres:// or mysql:// transport URL rawURL
// with a delay table of t's own (the delay_table option, a Name). A SQL
// subscriber creates its delay table on Subscribe; the default one,
// eventkit_delayed, would be shared by every test process at once, and
// left behind, as no sweep may drop it while another package runs.
func WithDelayTable(t testing.TB, rawURL string) string {
	t.Helper()
	u, err := url.Parse(rawURL)
	if err != nil {
		t.Fatalf("transport URL: %v", err)
	}
	q := u.Query()
	q.Set("delay_table", Name(t, "delayed"))
	u.RawQuery = q.Encode()
	return u.String()
}

func env(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

// FiguresFile is where Figure appends: $EVENTKIT_FIGURES, else
// eventkit-figures.txt in the temporary directory.
func FiguresFile() string {
	return env("EVENTKIT_FIGURES", filepath.Join(os.TempDir(), "eventkit-figures.txt"))
}

// Figure reports a measured figure of a test (a fault test's committed /
// delivered / duplicates / effects): with t.Log, which go test shows only
// with -v, and as a line appended to FiguresFile, which a run of the whole
// suite leaves to read (.ci/run prints it).
func Figure(t testing.TB, format string, args ...any) {
	t.Helper()
	line := fmt.Sprintf(format, args...)
	t.Log(line)
	f, err := os.OpenFile(FiguresFile(), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		t.Logf("figures file: %v", err)
		return
	}
	defer f.Close()
	fmt.Fprintf(f, "%s %s: %s\n", time.Now().UTC().Format(time.RFC3339), t.Name(), line)
}
