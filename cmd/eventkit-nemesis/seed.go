package main

import (
	"context"
	"database/sql"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"time"

	"github.com/b2131a45/eventkit/internal/sample"
	"github.com/b2131a45/eventkit/transports"
)

// runSeed is one run: fresh databases and vhost, the services started,
// the load and the fault schedule of seed for o.duration (at least one
// round of every fault kind), then heal, drain and check.
func runSeed(ctx context.Context, o options, inf *infra, work string, k int, seed uint64) (*report, error) {
	fmt.Printf("\n== nemesis run %d: seed %d, %v of load at %d orders/s%s ==\n", k, seed, o.duration, o.rate, breakNote(o))
	fmt.Printf("   replay: go run ./cmd/eventkit-nemesis -seed %d -duration %v -rate %d -poison-every %d\n", seed, o.duration, o.rate, o.poisonEvery)
	rep := &report{Seed: seed, Duration: o.duration, Rate: o.rate}
	vhost := fmt.Sprintf("nemesis-%d", k)
	if err := inf.rabbit.addVhost(ctx, vhost); err != nil {
		return nil, err
	}
	names := map[string]string{}
	dbs := map[string]*sql.DB{}
	for _, svc := range []string{"orders", "inventory", "payments"} {
		names[svc] = fmt.Sprintf("%s_%d", svc, k)
		if err := inf.pg.createDatabases(ctx, names[svc]); err != nil {
			return nil, err
		}
		db, err := inf.pg.open(names[svc])
		if err != nil {
			return nil, err
		}
		defer db.Close()
		dbs[svc] = db
	}
	procs, err := newProcs(work, inf.serviceURL(vhost), inf.pgProxy.Addr(), names)
	if err != nil {
		return nil, err
	}
	for _, p := range procs {
		p.logPath = strings.TrimSuffix(p.logPath, ".log") + fmt.Sprintf("-run%d.log", k)
	}
	w := &world{pg: inf.pg, pgProxy: inf.pgProxy, rabbit: inf.rabbit, rproxy: inf.rproxy, procs: procs,
		ordersDB: names["orders"], kinds: map[string]int{}}

	obs := newObserver(inf.directURLs(vhost), []string{sample.OrderCreatedName, sample.StockReservedName, sample.PaymentProcessedName})
	if err := obs.declare(ctx); err != nil {
		return nil, err
	}
	obsCtx, stopObs := context.WithCancel(ctx)
	var obsWG sync.WaitGroup
	obsWG.Go(func() { obs.run(obsCtx) })
	defer func() { stopObs(); obsWG.Wait() }()

	procCtx, stopProcs := context.WithCancel(context.WithoutCancel(ctx))
	var procWG sync.WaitGroup
	for _, p := range procs {
		procWG.Add(1)
		go p.supervise(procCtx, &procWG)
	}
	stopAll := func() { stopProcs(); procWG.Wait() }
	defer stopAll()
	for _, p := range procs {
		if !p.healthy(ctx, 90*time.Second) {
			return nil, fmt.Errorf("%s did not become healthy (log: %s)", p.name, p.logPath)
		}
	}

	// The load and the faults.
	w.began = time.Now()
	faultCtx, stopFaults := context.WithTimeout(ctx, o.duration)
	defer stopFaults()
	l := &load{targets: procs[:2], rate: o.rate, poisonEvery: o.poisonEvery}
	loadCtx, stopLoad := context.WithCancel(ctx)
	var loadWG sync.WaitGroup
	loadWG.Go(func() { l.run(loadCtx) })
	var lanes sync.WaitGroup
	lanes.Go(func() { w.lane(ctx, faultCtx, rand.New(rand.NewPCG(seed, 1)), processFaults, time.Second) })
	lanes.Go(func() { w.lane(ctx, faultCtx, rand.New(rand.NewPCG(seed, 2)), networkFaults, 3*time.Second) })
	if o.breakWhat == "inbox" {
		lanes.Go(func() { forgetInboxes(faultCtx, dbs) })
	}
	lanes.Wait()
	stopLoad()
	loadWG.Wait()
	rep.Faulted = time.Since(w.began)

	// Heal, drain, check.
	w.heal(context.WithoutCancel(ctx))
	for _, p := range procs {
		if !p.healthy(ctx, 90*time.Second) {
			w.finding("%s was not healthy 90 s after the faults ended", p.name)
		}
	}
	rep.Drain, err = drain(ctx, w, dbs, vhost, o.drainTimeout)
	if err != nil {
		w.finding("%v", err)
	}
	stopObs()
	obsWG.Wait()
	broker, err := transports.Open(ctx, inf.directURLs(vhost)[0])
	if err != nil {
		return nil, fmt.Errorf("checker: open the broker to read the dead letters: %w", err)
	}
	rep.Check, err = check(ctx, checkInput{dbs: dbs, browse: broker.Browse, acked: l.acked})
	broker.Close()
	if err != nil {
		return nil, fmt.Errorf("checker: %w", err)
	}
	if rep.Drain >= o.drainTimeout {
		rep.Check.violate("the system did not drain within %v: %s", o.drainTimeout, lastFinding(w))
	}

	// A graceful stop of every process, measured.
	for _, p := range procs {
		took, killed := p.terminate(20 * time.Second)
		if killed {
			w.finding("%s did not stop within 20 s of SIGTERM at the end", p.name)
		}
		rep.Stops = append(rep.Stops, fmt.Sprintf("%s %v", p.name, took.Round(time.Millisecond)))
	}
	stopAll()

	rep.Attempted, rep.Failed = l.attempted, l.failed
	rep.Wire.Distinct, rep.Wire.Duplicates, rep.Wire.Redeliveries, rep.Wire.Reconnects = obs.counts()
	for _, p := range procs {
		rep.Starts += p.starts
		rep.Crashes += p.crashes
	}
	w.mu.Lock()
	rep.Faults, rep.Kinds, rep.Findings = w.log, w.kinds, w.findings
	w.mu.Unlock()
	for _, kind := range allKinds() {
		if rep.Kinds[kind] == 0 {
			rep.Check.violate("fault kind %s never ran", kind)
		}
	}
	return rep, nil
}

// forgetInboxes empties the services' inbox tables every half second until
// ctx ends: -break inbox, the inbox turned off.
func forgetInboxes(ctx context.Context, dbs map[string]*sql.DB) {
	for ctx.Err() == nil {
		for svc, db := range dbs {
			_, _ = db.ExecContext(ctx, `DELETE FROM `+svc+`_inbox`)
		}
		sleep(ctx, 500*time.Millisecond)
	}
}

func breakNote(o options) string {
	if o.breakWhat == "" {
		return ""
	}
	return ", BREAKING the " + o.breakWhat + " on purpose"
}

func lastFinding(w *world) string {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.findings) == 0 {
		return ""
	}
	return w.findings[len(w.findings)-1]
}
