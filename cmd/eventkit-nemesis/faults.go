package main

import (
	"context"
	"database/sql"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/b2131a45/eventkit/internal/faultproxy"
)

// world is everything a fault acts on.
type world struct {
	pg       *pgCluster
	pgProxy  *faultproxy.Proxy
	rabbit   *rabbitCluster
	rproxy   []*faultproxy.Proxy // one per node, in node order
	procs    []*proc
	ordersDB string

	began time.Time
	mu    sync.Mutex
	log   []faultEvent
	kinds map[string]int
	// findings are what the faults saw that is not a violation of the
	// guarantees but deserves a look (a graceful stop that took too long).
	findings []string
}

// faultEvent is one fault injected, for the report.
type faultEvent struct {
	At     time.Duration `json:"at"`
	Kind   string        `json:"kind"`
	Detail string        `json:"detail"`
}

// fault is one kind of fault: inject it and recover from it (restart what
// it stopped), returning what it did.
type fault struct {
	kind string
	do   func(ctx context.Context, w *world, rng *rand.Rand) (string, error)
}

// processFaults run one at a time on one lane, network faults on another,
// so that they overlap as production failures do.
var processFaults = []fault{
	{"kill-service", killService},
	{"rolling-restart", rollingRestart},
	{"freeze-active-relay", freezeActiveRelay},
	{"rabbitmq-kill-node", rabbitKillNode},
	{"rabbitmq-stop-node", rabbitStopNode},
	{"rabbitmq-outage", rabbitOutage},
	{"rabbitmq-close-connections", rabbitCloseConnections},
	{"postgres-terminate-backends", pgTerminate},
	{"postgres-fast-restart", pgRestart},
}

var networkFaults = []fault{
	{"net-latency", netLatency},
	{"net-partition", netPartition},
	{"net-reset", netReset},
}

// allKinds lists every fault kind, for the report.
func allKinds() []string {
	var ks []string
	for _, f := range append(append([]fault{}, processFaults...), networkFaults...) {
		ks = append(ks, f.kind)
	}
	return ks
}

// lane injects faults from kinds, in a seeded order that covers every
// kind once per round, with a pause of gap (±50%) between two, until phase
// ends and at least one round is done, or at once when ctx ends (the run
// is interrupted).
func (w *world) lane(ctx, phase context.Context, rng *rand.Rand, kinds []fault, gap time.Duration) {
	for round := 0; ; round++ {
		order := rng.Perm(len(kinds))
		for _, i := range order {
			if ctx.Err() != nil || (round > 0 && phase.Err() != nil) {
				return
			}
			f := kinds[i]
			at := time.Since(w.began)
			// Recovery runs to its end even when the fault phase ends.
			detail, err := f.do(context.WithoutCancel(phase), w, rng)
			if err != nil {
				detail = "failed: " + err.Error()
			}
			w.record(faultEvent{At: at.Round(time.Millisecond), Kind: f.kind, Detail: detail})
			pause := gap/2 + time.Duration(rng.Int64N(int64(gap)))
			sleep(phase, pause)
		}
		if phase.Err() != nil {
			return
		}
	}
}

func (w *world) record(e faultEvent) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.log = append(w.log, e)
	w.kinds[e.Kind]++
	fmt.Printf("  %7.1fs  %-28s %s\n", e.At.Seconds(), e.Kind, e.Detail)
}

func (w *world) finding(format string, args ...any) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.findings = append(w.findings, fmt.Sprintf(format, args...))
}

func between(rng *rand.Rand, lo, hi time.Duration) time.Duration {
	return lo + time.Duration(rng.Int64N(int64(hi-lo)+1))
}

func killService(_ context.Context, w *world, rng *rand.Rand) (string, error) {
	p := w.procs[rng.IntN(len(w.procs))]
	delay := between(rng, 200*time.Millisecond, 2*time.Second)
	if !p.kill(delay) {
		return p.name + " was not running", nil
	}
	return fmt.Sprintf("SIGKILL %s, restarted after %v", p.name, delay.Round(time.Millisecond)), nil
}

// rollingRestart stops each process in turn with SIGTERM, as a deploy
// does, and waits for the new one to be healthy before the next.
func rollingRestart(ctx context.Context, w *world, _ *rand.Rand) (string, error) {
	var parts []string
	for _, p := range w.procs {
		took, killed := p.terminate(20 * time.Second)
		if killed {
			w.finding("%s did not stop within 20 s of SIGTERM: killed", p.name)
		}
		healthy := p.healthy(ctx, 45*time.Second)
		if !healthy {
			w.finding("%s was not healthy 45 s after its restart", p.name)
		}
		parts = append(parts, fmt.Sprintf("%s stopped in %v", p.name, took.Round(time.Millisecond)))
	}
	return "SIGTERM then restart, one at a time: " + strings.Join(parts, ", "), nil
}

// freezeActiveRelay freezes (SIGSTOP) the orders process whose relay holds
// the outbox's lock, while the other one stands by, then resumes it.
func freezeActiveRelay(ctx context.Context, w *world, rng *rand.Rand) (string, error) {
	// Right after a database fault no relay may hold the lock yet: wait
	// for one to take it.
	var name string
	for deadline := time.Now().Add(10 * time.Second); name == "" && time.Now().Before(deadline); {
		var err error
		if name, err = w.activeRelay(ctx); err != nil || name == "" {
			sleep(ctx, 200*time.Millisecond)
		}
	}
	var p *proc
	for _, q := range w.procs {
		if q.name == name {
			p = q
		}
	}
	if p == nil {
		p = w.procs[0]
		name = p.name + " (no relay held the lock)"
	}
	d := between(rng, 3*time.Second, 8*time.Second)
	if !p.freeze(ctx, d) {
		return p.name + " was not running", nil
	}
	return fmt.Sprintf("SIGSTOP %s, the active relay, for %v, then SIGCONT", name, d.Round(time.Millisecond)), nil
}

// activeRelay names the orders process holding the outbox's advisory lock,
// from pg_locks (application_name is the process name).
func (w *world) activeRelay(ctx context.Context) (string, error) {
	db, err := w.pg.open(w.ordersDB)
	if err != nil {
		return "", err
	}
	defer db.Close()
	var name string
	err = db.QueryRowContext(ctx, `SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
		WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1 AND a.application_name LIKE 'orders-%'
		AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) LIMIT 1`).Scan(&name)
	if err == sql.ErrNoRows {
		return "", nil
	}
	return name, err
}

func rabbitKillNode(ctx context.Context, w *world, rng *rand.Rand) (string, error) {
	n := w.rabbit.nodes[rng.IntN(len(w.rabbit.nodes))]
	n.kill()
	down := between(rng, time.Second, 3*time.Second)
	sleep(ctx, down)
	began := time.Now()
	if err := n.start(ctx); err != nil {
		return "", err
	}
	return fmt.Sprintf("SIGKILL node %s, down %v, back in %v", n.name, down.Round(time.Millisecond), time.Since(began).Round(time.Millisecond)), nil
}

func rabbitStopNode(ctx context.Context, w *world, rng *rand.Rand) (string, error) {
	n := w.rabbit.nodes[rng.IntN(len(w.rabbit.nodes))]
	if _, err := n.ctl(ctx, "stop_app"); err != nil {
		return "", err
	}
	d := between(rng, 2*time.Second, 5*time.Second)
	sleep(ctx, d)
	if _, err := n.ctl(ctx, "start_app"); err != nil {
		return "", err
	}
	return fmt.Sprintf("stop_app node %s for %v, start_app", n.name, d.Round(time.Millisecond)), nil
}

// rabbitOutage stops the whole broker: every node's application, then
// starts them all again.
func rabbitOutage(ctx context.Context, w *world, rng *rand.Rand) (string, error) {
	if err := w.rabbit.each(func(n *rabbitNode) error { _, err := n.ctl(ctx, "stop_app"); return err }); err != nil {
		return "", err
	}
	d := between(rng, 2*time.Second, 4*time.Second)
	sleep(ctx, d)
	if err := w.rabbit.each(func(n *rabbitNode) error { _, err := n.ctl(ctx, "start_app"); return err }); err != nil {
		return "", err
	}
	return fmt.Sprintf("every node stopped (stop_app) for %v, then started", d.Round(time.Millisecond)), nil
}

func rabbitCloseConnections(ctx context.Context, w *world, _ *rand.Rand) (string, error) {
	err := w.rabbit.each(func(n *rabbitNode) error {
		_, err := n.ctl(ctx, "close_all_connections", "nemesis")
		return err
	})
	return "close_all_connections on every node", err
}

func pgTerminate(ctx context.Context, w *world, _ *rand.Rand) (string, error) {
	n, err := w.pg.terminateBackends(ctx)
	return fmt.Sprintf("pg_terminate_backend of %d service backends", n), err
}

func pgRestart(ctx context.Context, w *world, _ *rand.Rand) (string, error) {
	began := time.Now()
	if err := w.pg.ctl(ctx, "restart"); err != nil {
		return "", err
	}
	return fmt.Sprintf("pg_ctl restart -m fast, back in %v", time.Since(began).Round(time.Millisecond)), nil
}

// proxies lists every link a network fault may hit, named.
func (w *world) proxies() (names []string, ps []*faultproxy.Proxy) {
	names, ps = append(names, "postgres"), append(ps, w.pgProxy)
	for i, p := range w.rproxy {
		names, ps = append(names, w.rabbit.nodes[i].name), append(ps, p)
	}
	return names, ps
}

func netLatency(ctx context.Context, w *world, rng *rand.Rand) (string, error) {
	names, ps := w.proxies()
	i := rng.IntN(len(ps))
	lat := between(rng, 20*time.Millisecond, 200*time.Millisecond)
	d := between(rng, 2*time.Second, 5*time.Second)
	ps[i].SetLatency(lat)
	sleep(ctx, d)
	ps[i].SetLatency(0)
	return fmt.Sprintf("%v added each way on the link to %s for %v", lat.Round(time.Millisecond), names[i], d.Round(time.Millisecond)), nil
}

func netPartition(ctx context.Context, w *world, rng *rand.Rand) (string, error) {
	names, ps := w.proxies()
	i := rng.IntN(len(ps))
	d := between(rng, 3*time.Second, 12*time.Second)
	ps[i].Partition()
	sleep(ctx, d)
	ps[i].Heal()
	return fmt.Sprintf("link to %s partitioned (connections hang) for %v", names[i], d.Round(time.Millisecond)), nil
}

func netReset(_ context.Context, w *world, rng *rand.Rand) (string, error) {
	names, ps := w.proxies()
	i := rng.IntN(len(ps))
	n := ps[i].Reset()
	return fmt.Sprintf("%d connections to %s reset", n, names[i]), nil
}

// heal ends every fault still in effect: links healed, every node and
// process running.
func (w *world) heal(ctx context.Context) {
	_, ps := w.proxies()
	for _, p := range ps {
		p.Heal()
		p.SetLatency(0)
	}
	_ = w.rabbit.each(func(n *rabbitNode) error {
		if _, err := n.ctl(ctx, "await_startup", "--timeout", "5"); err != nil {
			if _, err := n.ctl(ctx, "start_app"); err != nil {
				return n.start(ctx)
			}
		}
		return nil
	})
	for _, p := range w.procs {
		p.signal(syscall.SIGCONT)
	}
}
