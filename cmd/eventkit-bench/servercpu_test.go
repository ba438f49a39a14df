package main

import (
	"net"
	"os"
	"runtime"
	"testing"
	"time"
)

// The bench finds a local server by the port it listens on and reads its
// CPU from /proc: here the server is this test process.
func TestServerCPU(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("reads /proc")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	url := "amqp://guest:guest@" + ln.Addr().String() + "/"
	s := newServer("self", url)
	if s.pid != os.Getpid() {
		t.Fatalf("listener of %s: pid %d, want this process (%d)", url, s.pid, os.Getpid())
	}
	span := cpuSpan(s, newServer("remote", "amqp://guest:guest@example.com:5672/"))
	// Busy until getrusage says this process used 200 ms more CPU (wall
	// time would not do: a loaded machine deschedules the loop).
	cpu0, deadline := processCPU(), time.Now().Add(30*time.Second)
	for processCPU()-cpu0 < 200*time.Millisecond && time.Now().Before(deadline) {
	}
	used := processCPU() - cpu0
	got := span(1)
	// /proc counts in 10 ms ticks, sampled: allow a few ticks either way.
	if got[0] < used-50*time.Millisecond || got[0] > used+time.Second {
		t.Errorf("/proc says %v of CPU for a loop that getrusage says used %v", got[0], used)
	}
	if got[1] != -1 || perEvent(got[1]) != "n/a" {
		t.Errorf("a server not on this machine: %v, want unknown", got[1])
	}
	if d := medianDuration([]time.Duration{-1, 3, 1, 2}); d != 2 {
		t.Errorf("medianDuration = %v, want 2 (unknown values left out)", d)
	}
}
