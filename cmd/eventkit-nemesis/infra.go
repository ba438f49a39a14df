package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/b2131a45/eventkit/internal/faultproxy"
)

// infra is what every run of the invocation shares: the PostgreSQL and
// RabbitMQ clusters and a fault proxy in front of each server.
type infra struct {
	pg      *pgCluster
	pgProxy *faultproxy.Proxy
	rabbit  *rabbitCluster
	rproxy  []*faultproxy.Proxy
}

func startInfra(ctx context.Context, work string) (*infra, error) {
	began := time.Now()
	inf := &infra{}
	pgDone := make(chan error, 1)
	go func() {
		var err error
		inf.pg, err = startPG(ctx, work)
		pgDone <- err
	}()
	var err error
	inf.rabbit, err = startRabbit(ctx, work, 3)
	if perr := <-pgDone; perr != nil {
		if inf.rabbit != nil {
			inf.rabbit.stop(false)
		}
		return nil, fmt.Errorf("PostgreSQL: %w", perr)
	}
	if err != nil {
		inf.pg.stop(false)
		return nil, fmt.Errorf("RabbitMQ: %w", err)
	}
	if inf.pgProxy, err = faultproxy.New(inf.pg.addr()); err != nil {
		inf.stop(false)
		return nil, err
	}
	for _, n := range inf.rabbit.nodes {
		p, err := faultproxy.New(fmt.Sprintf("127.0.0.1:%d", n.port))
		if err != nil {
			inf.stop(false)
			return nil, err
		}
		inf.rproxy = append(inf.rproxy, p)
	}
	fmt.Printf("infrastructure up in %v: PostgreSQL %s, RabbitMQ cluster %s\n", time.Since(began).Round(time.Millisecond), inf.pg.addr(), inf.nodeAddrs())
	return inf, nil
}

func (inf *infra) stop(keep bool) {
	for _, p := range append([]*faultproxy.Proxy{inf.pgProxy}, inf.rproxy...) {
		if p != nil {
			_ = p.Close()
		}
	}
	if inf.rabbit != nil {
		inf.rabbit.stop(keep)
	}
	if inf.pg != nil {
		inf.pg.stop(keep)
	}
}

func (inf *infra) nodeAddrs() string {
	var as []string
	for _, n := range inf.rabbit.nodes {
		as = append(as, fmt.Sprintf("%s=127.0.0.1:%d", n.name, n.port))
	}
	return strings.Join(as, ",")
}

// serviceURL is the services' broker URL: every node, through its proxy,
// quorum queues.
func (inf *infra) serviceURL(vhost string) string {
	var hosts []string
	for _, p := range inf.rproxy {
		hosts = append(hosts, p.Addr())
	}
	return "amqp://guest:guest@" + strings.Join(hosts, ",") + "/" + vhost + "?queue_type=quorum"
}

// directURLs are one URL per node, straight to it: the observer's and the
// checker's, which no network fault touches.
func (inf *infra) directURLs(vhost string) []string {
	var urls []string
	for _, n := range inf.rabbit.nodes {
		urls = append(urls, fmt.Sprintf("amqp://guest:guest@127.0.0.1:%d/%s", n.port, vhost))
	}
	return urls
}
