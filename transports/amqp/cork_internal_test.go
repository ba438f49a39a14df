package amqp

import (
	"bytes"
	"errors"
	"net"
	"strings"
	"sync"
	"testing"
)

// wireLog is a net.Conn that records each write; it fails writes with err
// once err is set.
type wireLog struct {
	net.Conn // nil: only Write and Close are called
	mu       sync.Mutex
	writes   [][]byte
	err      error
	closed   bool
}

func (w *wireLog) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.err != nil {
		return 0, w.err
	}
	w.writes = append(w.writes, bytes.Clone(p))
	return len(p), nil
}

func (w *wireLog) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.closed = true
	return nil
}

func (w *wireLog) sent() (writes int, data string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	var b strings.Builder
	for _, p := range w.writes {
		b.Write(p)
	}
	return len(w.writes), b.String()
}

func TestCorkedConn_HoldsWritesUntilUncork(t *testing.T) {
	log := &wireLog{}
	c := &corkedConn{Conn: log}

	// Uncorked, every write goes out at once.
	mustWrite(t, c, "a")
	if n, data := log.sent(); n != 1 || data != "a" {
		t.Fatalf("uncorked: %d writes %q, want 1 write \"a\"", n, data)
	}

	c.cork()
	for _, s := range []string{"b", "c", "d"} {
		mustWrite(t, c, s)
	}
	if n, _ := log.sent(); n != 1 {
		t.Fatalf("corked: %d writes reached the connection, want none beyond the first", n-1)
	}
	if err := c.uncork(); err != nil {
		t.Fatal(err)
	}
	if n, data := log.sent(); n != 2 || data != "abcd" {
		t.Fatalf("after uncork: %d writes %q, want 2 writes \"abcd\"", n, data)
	}
}

func TestCorkedConn_WritesAtCorkMax(t *testing.T) {
	log := &wireLog{}
	c := &corkedConn{Conn: log}
	c.cork()
	frame := strings.Repeat("x", 1000)
	for range corkMax/1000 + 1 {
		mustWrite(t, c, frame)
	}
	if n, _ := log.sent(); n != 1 {
		t.Fatalf("corked past corkMax: %d writes, want 1", n)
	}
	mustWrite(t, c, "tail")
	if err := c.uncork(); err != nil {
		t.Fatal(err)
	}
	n, data := log.sent()
	if want := strings.Repeat(frame, corkMax/1000+1) + "tail"; n != 2 || data != want {
		t.Fatalf("%d writes of %d bytes, want 2 writes of %d bytes in order", n, len(data), len(want))
	}
}

// A second Publish call's uncork sends what the first still holds (the
// order of bytes is the order of writes), and once no call is corked,
// writes go straight out again.
func TestCorkedConn_NestedCorks(t *testing.T) {
	log := &wireLog{}
	c := &corkedConn{Conn: log}
	c.cork()
	c.cork()
	mustWrite(t, c, "1")
	if err := c.uncork(); err != nil {
		t.Fatal(err)
	}
	mustWrite(t, c, "2")
	if n, data := log.sent(); n != 1 || data != "1" {
		t.Fatalf("%d writes %q, want \"1\" written by the first uncork and \"2\" held", n, data)
	}
	if err := c.uncork(); err != nil {
		t.Fatal(err)
	}
	mustWrite(t, c, "3")
	if n, data := log.sent(); n != 3 || data != "123" {
		t.Fatalf("%d writes %q, want 3 writes \"123\"", n, data)
	}
}

// A failed write closes the connection (amqp091-go's reader then fails
// the unconfirmed messages), and every later write fails with its error.
func TestCorkedConn_WriteErrorClosesTheConnection(t *testing.T) {
	broken := errors.New("connection reset by peer")
	log := &wireLog{err: broken}
	c := &corkedConn{Conn: log}
	c.cork()
	mustWrite(t, c, "held")
	if err := c.uncork(); !errors.Is(err, broken) {
		t.Fatalf("uncork: %v, want %v", err, broken)
	}
	if !log.closed {
		t.Fatal("the connection was not closed after its write failed")
	}
	log.err = nil // even if the socket would take it now
	if _, err := c.Write([]byte("later")); !errors.Is(err, broken) {
		t.Fatalf("a write after the failure: %v, want %v", err, broken)
	}
	if n, _ := log.sent(); n != 0 {
		t.Fatalf("%d writes reached a connection that failed", n)
	}
}

func mustWrite(t *testing.T, c *corkedConn, s string) {
	t.Helper()
	if n, err := c.Write([]byte(s)); err != nil || n != len(s) {
		t.Fatalf("Write(%q) = %d, %v", s, n, err)
	}
}
