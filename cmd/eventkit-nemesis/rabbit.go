package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// rabbitNode is one node of the run's own RabbitMQ cluster.
type rabbitNode struct {
	name string // Erlang node name, e.g. ekn1-4242@localhost
	port int    // AMQP port on 127.0.0.1
	dist int    // Erlang distribution port
	dir  string
}

// rabbitCluster is a three-node RabbitMQ cluster on this machine, nodes on
// their own ports and names, started by the run and stopped at its end.
type rabbitCluster struct {
	nodes []*rabbitNode
}

// startRabbit starts n nodes under work and clusters them with the first.
func startRabbit(ctx context.Context, work string, n int) (*rabbitCluster, error) {
	if _, err := exec.LookPath("rabbitmq-server"); err != nil {
		return nil, fmt.Errorf("rabbitmq-server not found: install RabbitMQ (Debian: rabbitmq-server): %w", err)
	}
	c := &rabbitCluster{}
	for i := range n {
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		dist, err := freePort()
		if err != nil {
			return nil, err
		}
		node := &rabbitNode{name: fmt.Sprintf("ekn%d-%d@localhost", i+1, os.Getpid()), port: port, dist: dist,
			dir: filepath.Join(work, "rabbitmq", strconv.Itoa(i+1))}
		if err := node.prepare(); err != nil {
			return nil, err
		}
		c.nodes = append(c.nodes, node)
	}
	if err := c.each(func(node *rabbitNode) error { return node.start(ctx) }); err != nil {
		c.stop(false)
		return nil, err
	}
	for _, node := range c.nodes[1:] {
		for _, args := range [][]string{{"stop_app"}, {"join_cluster", c.nodes[0].name}, {"start_app"}} {
			if _, err := node.ctl(ctx, args...); err != nil {
				c.stop(false)
				return nil, err
			}
		}
	}
	return c, nil
}

// each runs f on every node at once and returns the first error.
func (c *rabbitCluster) each(f func(*rabbitNode) error) error {
	var wg sync.WaitGroup
	errs := make([]error, len(c.nodes))
	for i, node := range c.nodes {
		wg.Go(func() { errs[i] = f(node) })
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// stop stops every node and removes its data, unless keep.
func (c *rabbitCluster) stop(keep bool) {
	if keep {
		return
	}
	_ = c.each(func(node *rabbitNode) error {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if _, err := node.ctl(ctx, "stop"); err != nil {
			node.kill()
		}
		return nil
	})
}

// addVhost creates vhost with every permission for guest.
func (c *rabbitCluster) addVhost(ctx context.Context, vhost string) error {
	if _, err := c.nodes[0].ctl(ctx, "add_vhost", vhost); err != nil {
		return err
	}
	_, err := c.nodes[0].ctl(ctx, "set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
	return err
}

// queues lists the queues of vhost with their ready and unacked counts, as
// any running node reports them.
func (c *rabbitCluster) queues(ctx context.Context, vhost string) (map[string][2]int, error) {
	var last error
	for _, node := range c.nodes {
		out, err := node.ctl(ctx, "list_queues", "-p", vhost, "--no-table-headers", "name", "messages_ready", "messages_unacknowledged")
		if err != nil {
			last = err
			continue
		}
		qs := map[string][2]int{}
		for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
			f := strings.Fields(line)
			if len(f) != 3 {
				continue
			}
			ready, _ := strconv.Atoi(f[1])
			unacked, _ := strconv.Atoi(f[2])
			qs[f[0]] = [2]int{ready, unacked}
		}
		return qs, nil
	}
	return nil, last
}

func (n *rabbitNode) prepare() error {
	if err := os.MkdirAll(n.dir, 0o755); err != nil {
		return err
	}
	conf := fmt.Sprintf("listeners.tcp.1 = 127.0.0.1:%d\nloopback_users = none\n", n.port)
	if err := os.WriteFile(filepath.Join(n.dir, "rabbitmq.conf"), []byte(conf), 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(n.dir, "enabled_plugins"), nil, 0o644); err != nil {
		return err
	}
	if os.Geteuid() == 0 { // rabbitmq-server runs the node as the rabbitmq user
		_ = exec.Command("chown", "-R", "rabbitmq:rabbitmq", n.dir).Run()
	}
	return nil
}

// start starts the node's Erlang VM and waits until RabbitMQ runs.
func (n *rabbitNode) start(ctx context.Context) error {
	cmd := exec.CommandContext(ctx, "rabbitmq-server", "-detached")
	cmd.Env = append(os.Environ(),
		"RABBITMQ_NODENAME="+n.name,
		"RABBITMQ_NODE_PORT="+strconv.Itoa(n.port),
		"RABBITMQ_DIST_PORT="+strconv.Itoa(n.dist),
		"RABBITMQ_MNESIA_BASE="+filepath.Join(n.dir, "mnesia"),
		"RABBITMQ_LOG_BASE="+filepath.Join(n.dir, "log"),
		"RABBITMQ_CONFIG_FILE="+filepath.Join(n.dir, "rabbitmq"),
		"RABBITMQ_ENABLED_PLUGINS_FILE="+filepath.Join(n.dir, "enabled_plugins"),
		"RABBITMQ_PID_FILE="+n.pidFile(),
	)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("rabbitmq-server %s: %w: %s", n.name, err, out)
	}
	// Three Erlang VMs starting at once on a loaded 2-core machine took
	// more than two minutes once: five, before the run gives up.
	deadline := time.Now().Add(5 * time.Minute)
	for {
		_, err := n.ctl(ctx, "await_startup", "--timeout", "300")
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("RabbitMQ node %s did not start: %w (log: %s)", n.name, err, filepath.Join(n.dir, "log"))
		}
		time.Sleep(500 * time.Millisecond) // not yet reachable by rabbitmqctl
	}
}

func (n *rabbitNode) pidFile() string { return filepath.Join(n.dir, "pid") }

// kill sends SIGKILL to the node's Erlang VM: a crash, no goodbye.
func (n *rabbitNode) kill() {
	raw, err := os.ReadFile(n.pidFile())
	if err != nil {
		return
	}
	if pid, err := strconv.Atoi(strings.TrimSpace(string(raw))); err == nil && pid > 0 {
		_ = syscall.Kill(pid, syscall.SIGKILL)
		for range 100 { // until it is gone, so that a restart can take the ports
			if syscall.Kill(pid, 0) != nil {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	_ = os.Remove(n.pidFile())
}

// ctl runs rabbitmqctl against the node.
func (n *rabbitNode) ctl(ctx context.Context, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, "rabbitmqctl", append([]string{"-q", "-n", n.name}, args...)...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("rabbitmqctl -n %s %s: %w: %s", n.name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}
