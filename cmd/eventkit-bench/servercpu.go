package main

import (
	"bytes"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// A server is a local service whose CPU time the bench reads from /proc:
// the process listening on the port of its URL and every live descendant
// (PostgreSQL's backends are children of the postmaster), plus the CPU of
// the children they have already reaped. It is unknown (ok false) when the
// service is not on this machine or /proc does not say (not Linux, no
// permission): the bench then prints "n/a".
type server struct {
	name string
	pid  int // 0 when unknown
}

// newServer finds the process listening on rawURL's TCP port when rawURL's
// host is a loopback address or localhost.
func newServer(name, rawURL string) server {
	s := server{name: name}
	u, err := url.Parse(rawURL)
	if err != nil {
		return s
	}
	host, port := u.Hostname(), u.Port()
	if port == "" {
		port = map[string]string{"amqp": "5672", "postgres": "5432", "postgresql": "5432"}[u.Scheme]
	}
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return s
	}
	p, err := strconv.Atoi(port)
	if err != nil {
		return s
	}
	s.pid = listenerPID(p)
	return s
}

// cpu returns the server's CPU time so far.
func (s server) cpu() (time.Duration, bool) {
	if s.pid == 0 {
		return 0, false
	}
	procs := readProcs()
	root, ok := procs[s.pid]
	if !ok {
		return 0, false
	}
	total := root.self + root.children
	// Descendants: walk the parent links of every process.
	for pid, p := range procs {
		if pid == s.pid {
			continue
		}
		for anc, hops := p.ppid, 0; anc > 1 && hops < 16; hops++ {
			if anc == s.pid {
				total += p.self + p.children
				break
			}
			a, ok := procs[anc]
			if !ok {
				break
			}
			anc = a.ppid
		}
	}
	return total, true
}

// settle waits until every known server is quiet (at most a tenth of a
// core over 250 ms), for up to 15 s: a measurement then does not share the
// machine with what the step before it left a server doing (RabbitMQ
// writing a backlog just published, PostgreSQL a checkpoint or an
// autovacuum). Unknown servers are not waited for.
func settle(servers ...server) {
	began := time.Now()
	const window, quiet = 250 * time.Millisecond, 25 * time.Millisecond
	prev := make([]time.Duration, len(servers))
	for i, s := range servers {
		prev[i], _ = s.cpu()
	}
	for time.Since(began) < 15*time.Second {
		time.Sleep(window)
		busy := false
		for i, s := range servers {
			now, ok := s.cpu()
			if ok && now-prev[i] > quiet {
				busy = true
			}
			prev[i] = now
		}
		if !busy {
			return
		}
	}
}

// cpuSpan measures servers' CPU over a span: the returned function, called
// at its end, gives each server's CPU per event of n events, -1 when
// unknown.
func cpuSpan(servers ...server) func(n int) []time.Duration {
	before := make([]time.Duration, len(servers))
	known := make([]bool, len(servers))
	for i, s := range servers {
		before[i], known[i] = s.cpu()
	}
	return func(n int) []time.Duration {
		out := make([]time.Duration, len(servers))
		for i, s := range servers {
			after, ok := s.cpu()
			if !ok || !known[i] || n == 0 {
				out[i] = -1
				continue
			}
			out[i] = (after - before[i]) / time.Duration(n)
		}
		return out
	}
}

// perEvent formats a CPU per event of cpuSpan.
func perEvent(d time.Duration) string {
	if d < 0 {
		return "n/a"
	}
	return fmt.Sprintf("%d µs", d.Microseconds())
}

type procCPU struct {
	ppid     int
	self     time.Duration // utime + stime
	children time.Duration // cutime + cstime: reaped children
}

// clockTick is USER_HZ, the unit of /proc/PID/stat's times: 100 on every
// Linux architecture Go runs on.
const clockTick = 10 * time.Millisecond

// pids returns the processes /proc lists, by pid and their /proc
// directory.
func pids() map[int]string {
	out := map[int]string{}
	dirs, _ := os.ReadDir("/proc")
	for _, d := range dirs {
		if pid, err := strconv.Atoi(d.Name()); err == nil {
			out[pid] = filepath.Join("/proc", d.Name())
		}
	}
	return out
}

func readProcs() map[int]procCPU {
	out := map[int]procCPU{}
	for pid, dir := range pids() {
		b, err := os.ReadFile(filepath.Join(dir, "stat"))
		if err != nil {
			continue
		}
		// "pid (comm) state ppid …": comm may hold spaces and parentheses.
		i := bytes.LastIndexByte(b, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(b[i+1:]))
		// After comm: state(0) ppid(1) … utime(11) stime(12) cutime(13) cstime(14).
		if len(f) < 15 {
			continue
		}
		n := func(k int) time.Duration {
			v, _ := strconv.ParseInt(f[k], 10, 64)
			return time.Duration(v) * clockTick
		}
		ppid, _ := strconv.Atoi(f[1])
		out[pid] = procCPU{ppid: ppid, self: n(11) + n(12), children: n(13) + n(14)}
	}
	return out
}

// listenerPID is the process with a listening TCP socket on port, 0 when
// none is found.
func listenerPID(port int) int {
	inodes := map[string]bool{}
	for _, f := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n")[1:] {
			fs := strings.Fields(line)
			// sl local_address rem_address st … inode(9)
			if len(fs) < 10 || fs[3] != "0A" {
				continue
			}
			_, hexPort, ok := strings.Cut(fs[1], ":")
			if !ok {
				continue
			}
			if p, err := strconv.ParseInt(hexPort, 16, 32); err == nil && int(p) == port {
				inodes["socket:["+fs[9]+"]"] = true
			}
		}
	}
	if len(inodes) == 0 {
		return 0
	}
	for pid, dir := range pids() {
		fds, err := os.ReadDir(filepath.Join(dir, "fd"))
		if err != nil {
			continue
		}
		for _, fd := range fds {
			if link, err := os.Readlink(filepath.Join(dir, "fd", fd.Name())); err == nil && inodes[link] {
				return pid
			}
		}
	}
	return 0
}

// medianDuration is the median of the known (≥ 0) values of ds, -1 when
// none is known.
func medianDuration(ds []time.Duration) time.Duration {
	var known []float64
	for _, d := range ds {
		if d >= 0 {
			known = append(known, float64(d))
		}
	}
	if len(known) == 0 {
		return -1
	}
	return time.Duration(median(known))
}
