package node

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/b2131a45/eventkit/internal/testenv"
)

// nodeModules are the packages the scripts need, installed by
// npm ci --prefix internal/interop/node.
var nodeModules = []string{"amqplib", "kafkajs", "cloudevents"}

// nodeBin returns the path of node, or stops the test (skip outside CI,
// fail under CI) when node or this folder's node_modules is missing.
func nodeBin(t *testing.T) string {
	t.Helper()
	bin, err := exec.LookPath("node")
	if err != nil {
		testenv.Unavailable(t, "Node.js", err)
	}
	for _, m := range nodeModules {
		if _, err := os.Stat(filepath.Join("node_modules", m, "package.json")); err != nil {
			testenv.Unavailable(t, "node_modules (npm ci --prefix internal/interop/node)", err)
		}
	}
	return bin
}

// ceAttrs is a CloudEvent as a script prints it: the attributes as
// strings, and the data. A producer prints what it sent (for the forms
// without CloudEvents, the same fields as it wrote them), a consumer what
// the SDK read.
type ceAttrs struct {
	SpecVersion     string          `json:"specversion"`
	ID              string          `json:"id"`
	Type            string          `json:"type"`
	Source          string          `json:"source"`
	Time            string          `json:"time"`
	DataContentType string          `json:"datacontenttype"`
	Subject         string          `json:"subject"`
	CorrelationID   string          `json:"correlationid"`
	CausationID     string          `json:"causationid"`
	EventVersion    string          `json:"eventversion"`
	PartitionKey    string          `json:"partitionkey"`
	Data            json.RawMessage `json:"data"`
}

// amqpProps are the standard AMQP properties amqplib delivered.
type amqpProps struct {
	MessageID     string `json:"messageId"`
	Type          string `json:"type"`
	ContentType   string `json:"contentType"`
	Timestamp     *int64 `json:"timestamp"` // seconds
	CorrelationID string `json:"correlationId"`
	AppID         string `json:"appId"`
	DeliveryMode  int    `json:"deliveryMode"`
}

// nodeLine is one line a script prints.
type nodeLine struct {
	Kind  string `json:"kind"` // ready, sent, received, done
	Case  string `json:"case"` // sent: the plan's case
	Index int    `json:"index"`
	Count int    `json:"count"` // done
	// Event is what was sent, or the CloudEvent the SDK read.
	Event *ceAttrs `json:"event"`
	// Mode is how a consumer read the message: "binary" or "structured"
	// CloudEvents, or "" (no CloudEvent).
	Mode    string            `json:"mode"`
	Props   amqpProps         `json:"props"`
	Headers map[string]string `json:"headers"`
	Body    string            `json:"body"`
	// Kafka records: where the record was, and where kafkajs's default
	// partitioner puts its key.
	Partition         *int32  `json:"partition"`
	ExpectedPartition *int32  `json:"expectedPartition"`
	Offset            string  `json:"offset"`
	Key               *string `json:"key"`
	Timestamp         string  `json:"timestamp"` // epoch ms
	// Raw is the line as printed.
	Raw string `json:"-"`
}

// script is a running Node.js script and the lines it printed so far.
type script struct {
	name    string
	changed chan struct{} // signalled on each line and on exit
	stderr  syncBuffer

	mu     sync.Mutex
	lines  []nodeLine
	read   int
	exited bool
	err    error
}

// startScript runs node name with env added to the environment. The
// script is killed, if still running, when t ends.
func startScript(t *testing.T, name string, env ...string) *script {
	t.Helper()
	bin := nodeBin(t)
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, bin, name)
	cmd.Env = append(os.Environ(), env...)
	cmd.WaitDelay = 5 * time.Second
	s := &script{name: name, changed: make(chan struct{}, 1)}
	cmd.Stderr = &s.stderr
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	done := make(chan struct{})
	go func() {
		defer close(done)
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 64<<10), 16<<20)
		for sc.Scan() {
			var l nodeLine
			if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
				l = nodeLine{Kind: "unparsable"}
			}
			l.Raw = sc.Text()
			s.mu.Lock()
			s.lines = append(s.lines, l)
			s.mu.Unlock()
			s.signal()
		}
		err := cmd.Wait()
		s.mu.Lock()
		s.exited, s.err = true, err
		s.mu.Unlock()
		s.signal()
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	return s
}

func (s *script) signal() {
	select {
	case s.changed <- struct{}{}:
	default:
	}
}

// next returns the next line, failing the test when the script exits first
// or prints nothing for timeout.
func (s *script) next(t *testing.T, timeout time.Duration) nodeLine {
	t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		s.mu.Lock()
		if s.read < len(s.lines) {
			l := s.lines[s.read]
			s.read++
			s.mu.Unlock()
			if l.Kind == "unparsable" {
				t.Fatalf("%s printed a line that is not JSON: %q", s.name, l.Raw)
			}
			return l
		}
		exited, err := s.exited, s.err
		s.mu.Unlock()
		if exited {
			t.Fatalf("%s exited (%v) after %d lines; stderr:\n%s", s.name, err, s.read, s.stderr.String())
		}
		select {
		case <-s.changed:
		case <-deadline.C:
			t.Fatalf("%s printed nothing for %s after %d lines; stderr:\n%s", s.name, timeout, s.read, s.stderr.String())
		}
	}
}

// until returns the lines before the first line of kind, which it returns
// too.
func (s *script) until(t *testing.T, kind string, timeout time.Duration) ([]nodeLine, nodeLine) {
	t.Helper()
	var before []nodeLine
	for {
		l := s.next(t, timeout)
		if l.Kind == kind {
			return before, l
		}
		before = append(before, l)
	}
}

// wait waits for the script to exit and requires it to succeed.
func (s *script) wait(t *testing.T, timeout time.Duration) {
	t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		s.mu.Lock()
		exited, err := s.exited, s.err
		s.mu.Unlock()
		if exited {
			require.NoError(t, err, "%s failed; stderr:\n%s", s.name, s.stderr.String())
			return
		}
		select {
		case <-s.changed:
		case <-deadline.C:
			t.Fatalf("%s still running after %s; stderr:\n%s", s.name, timeout, s.stderr.String())
		}
	}
}

// produce runs a producer script to its end and returns its "sent" lines,
// in the order it sent them.
func produce(t *testing.T, name string, want int, env ...string) []nodeLine {
	t.Helper()
	s := startScript(t, name, env...)
	sent, done := s.until(t, "done", 2*time.Minute)
	s.wait(t, time.Minute)
	require.Equal(t, want, done.Count)
	require.Len(t, sent, want)
	for i, l := range sent {
		require.Equal(t, "sent", l.Kind, "line %d: %s", i, l.Raw)
		require.Equal(t, i, l.Index, "line %d: %s", i, l.Raw)
		require.NotNil(t, l.Event, "line %d: %s", i, l.Raw)
	}
	return sent
}

// consumed reads a consumer script's n "received" lines and waits for it to
// end.
func consumed(t *testing.T, s *script, n int) []nodeLine {
	t.Helper()
	got, done := s.until(t, "done", 2*time.Minute)
	s.wait(t, time.Minute)
	require.Equal(t, n, done.Count)
	require.Len(t, got, n)
	for i, l := range got {
		require.Equal(t, "received", l.Kind, "line %d: %s", i, l.Raw)
	}
	return got
}

// cases returns n cases, cycling through forms, as the CASES variable of a
// producer script.
func cases(n int, forms ...string) string {
	cs := make([]string, n)
	for i := range cs {
		cs[i] = forms[i%len(forms)]
	}
	return "CASES=" + strings.Join(cs, ",")
}

type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	s := b.buf.String()
	if len(s) > 8000 {
		s = fmt.Sprintf("…%s", s[len(s)-8000:])
	}
	return s
}
