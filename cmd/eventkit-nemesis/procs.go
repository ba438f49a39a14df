package main

import (
	"context"
	"fmt"
	"log"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"time"
)

// proc is one sample service running as an OS process, restarted by its
// supervisor whenever it exits, unless the run is over.
type proc struct {
	name    string // orders-a, orders-b, inventory, payments
	service string // orders, inventory or payments
	env     []string
	http    string // HTTP_ADDR
	logPath string

	mu      sync.Mutex
	cmd     *exec.Cmd
	exited  chan struct{} // closed when the current process exited
	delay   time.Duration // before the next restart, set by a fault
	frozen  bool
	starts  int
	crashes int // exits nobody asked for
	asked   bool
}

// supervise starts p and starts it again each time it exits, until ctx
// ends; then it stops it with SIGTERM (SIGKILL after 20 s).
func (p *proc) supervise(ctx context.Context, wg *sync.WaitGroup) {
	defer wg.Done()
	for ctx.Err() == nil {
		if err := p.start(); err != nil {
			log.Printf("nemesis: start %s: %v", p.name, err)
			sleep(ctx, time.Second)
			continue
		}
		p.mu.Lock()
		exited := p.exited
		p.mu.Unlock()
		select {
		case <-exited:
		case <-ctx.Done():
			p.terminate(20 * time.Second)
			return
		}
		p.mu.Lock()
		if !p.asked {
			p.crashes++
			log.Printf("nemesis: %s exited on its own (see %s); restarting", p.name, p.logPath)
		}
		p.asked = false
		d := p.delay
		p.delay = 0
		p.mu.Unlock()
		sleep(ctx, max(d, 200*time.Millisecond))
	}
}

func (p *proc) start() error {
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	out, err := os.OpenFile(p.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	cmd := exec.Command(exe, "service", p.service)
	cmd.Env = append(os.Environ(), p.env...)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // not killed by the terminal's ^C
	if err := cmd.Start(); err != nil {
		out.Close()
		return err
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); out.Close(); close(exited) }()
	p.mu.Lock()
	p.cmd, p.exited, p.frozen = cmd, exited, false
	p.starts++
	p.mu.Unlock()
	return nil
}

// signal sends sig to the running process; false when none runs.
func (p *proc) signal(sig syscall.Signal) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil || p.cmd.Process == nil {
		return false
	}
	select {
	case <-p.exited:
		return false
	default:
	}
	if sig == syscall.SIGKILL || sig == syscall.SIGTERM {
		p.asked = true
	}
	return p.cmd.Process.Signal(sig) == nil
}

// kill crashes the process (SIGKILL); the supervisor starts it again
// after delay.
func (p *proc) kill(delay time.Duration) bool {
	p.mu.Lock()
	p.delay = delay
	frozen := p.frozen
	p.mu.Unlock()
	ok := p.signal(syscall.SIGKILL)
	if frozen {
		p.signal(syscall.SIGCONT)
	}
	return ok
}

// terminate stops the process gracefully (SIGTERM) and waits up to grace
// for it to exit, then kills it. It reports how long the exit took and
// whether it needed the kill.
func (p *proc) terminate(grace time.Duration) (took time.Duration, killed bool) {
	p.mu.Lock()
	exited := p.exited
	p.mu.Unlock()
	began := time.Now()
	if exited == nil || !p.signal(syscall.SIGTERM) {
		return 0, false
	}
	select {
	case <-exited:
		return time.Since(began), false
	case <-time.After(grace):
		p.signal(syscall.SIGKILL)
		<-exited
		return time.Since(began), true
	}
}

// freeze stops the process (SIGSTOP) for d, then lets it go on.
func (p *proc) freeze(ctx context.Context, d time.Duration) bool {
	if !p.signal(syscall.SIGSTOP) {
		return false
	}
	p.mu.Lock()
	p.frozen = true
	p.mu.Unlock()
	sleep(ctx, d)
	p.mu.Lock()
	p.frozen = false
	p.mu.Unlock()
	p.signal(syscall.SIGCONT)
	return true
}

// healthy waits until GET /healthz answers 200, up to timeout.
func (p *proc) healthy(ctx context.Context, timeout time.Duration) bool {
	client := http.Client{Timeout: time.Second}
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		resp, err := client.Get("http://" + p.http + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return true
			}
		}
		sleep(ctx, 200*time.Millisecond)
	}
	return false
}

// newProcs describes the four processes: two orders (two relays on one
// outbox, competing consumers of PaymentProcessed, both taking orders),
// inventory and payments, each in its database behind the proxy.
func newProcs(work, transportURL, pgAddr string, dbs map[string]string) ([]*proc, error) {
	var ps []*proc
	for _, spec := range []struct{ name, service string }{
		{"orders-a", "orders"}, {"orders-b", "orders"}, {"inventory", "inventory"}, {"payments", "payments"},
	} {
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		addr := fmt.Sprintf("127.0.0.1:%d", port)
		ps = append(ps, &proc{name: spec.name, service: spec.service, http: addr,
			logPath: filepath.Join(work, spec.name+".log"),
			env: []string{
				"TRANSPORT_URL=" + transportURL,
				"DATABASE_URL=" + pgURL(pgAddr, dbs[spec.service], spec.name),
				"HTTP_ADDR=" + addr,
				"STOCK=" + sku + "=" + fmt.Sprint(initialStock),
			}})
	}
	return ps, nil
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}
