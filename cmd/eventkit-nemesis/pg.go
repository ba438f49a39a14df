package main

import (
	"context"
	"database/sql"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib"
)

// pgCluster is a throw-away PostgreSQL cluster of the run's own: initdb
// and pg_ctl in a temp dir, on its own port, never the shared server.
type pgCluster struct {
	bin  string // the directory of initdb and pg_ctl
	dir  string // data directory
	sock string // socket directory
	port int
	user string // the OS user the server runs as ("" when not root)
	log  string
}

// pgBinDir finds initdb and pg_ctl: $EVENTKIT_PG_BIN, then the newest
// /usr/lib/postgresql/*/bin, then $PATH.
func pgBinDir() (string, error) {
	if d := os.Getenv("EVENTKIT_PG_BIN"); d != "" {
		return d, nil
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	for i := len(dirs) - 1; i >= 0; i-- {
		if _, err := os.Stat(filepath.Join(dirs[i], "initdb")); err == nil {
			return dirs[i], nil
		}
	}
	if p, err := exec.LookPath("initdb"); err == nil {
		return filepath.Dir(p), nil
	}
	return "", fmt.Errorf("initdb not found: install PostgreSQL (Debian: postgresql) or set EVENTKIT_PG_BIN")
}

// startPG creates and starts a cluster under work on a free port.
func startPG(ctx context.Context, work string) (*pgCluster, error) {
	bin, err := pgBinDir()
	if err != nil {
		return nil, err
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	c := &pgCluster{bin: bin, dir: filepath.Join(work, "pg", "data"), sock: filepath.Join(work, "pg", "sock"), port: port,
		log: filepath.Join(work, "pg", "server.log")}
	if os.Geteuid() == 0 { // initdb refuses root: run it as the postgres user
		if _, err := user.Lookup("postgres"); err != nil {
			return nil, fmt.Errorf("running as root, PostgreSQL needs the postgres user: %w", err)
		}
		c.user = "postgres"
	}
	for _, d := range []string{c.dir, c.sock} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, err
		}
	}
	if c.user != "" {
		if err := exec.Command("chown", "-R", c.user, filepath.Join(work, "pg")).Run(); err != nil {
			return nil, fmt.Errorf("chown %s: %w", filepath.Join(work, "pg"), err)
		}
	}
	if out, err := c.cmd(ctx, "initdb", "-D", c.dir, "-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8").CombinedOutput(); err != nil {
		return nil, fmt.Errorf("initdb: %w: %s", err, out)
	}
	if err := c.ctl(ctx, "start"); err != nil {
		return nil, err
	}
	return c, nil
}

func (c *pgCluster) cmd(ctx context.Context, name string, args ...string) *exec.Cmd {
	path := filepath.Join(c.bin, name)
	if c.user == "" {
		return exec.CommandContext(ctx, path, args...)
	}
	return exec.CommandContext(ctx, "runuser", append([]string{"-u", c.user, "--", path}, args...)...)
}

// ctl runs pg_ctl start (waiting until it accepts connections), restart
// -m fast, or stop -m immediate.
func (c *pgCluster) ctl(ctx context.Context, action string) error {
	args := []string{"-D", c.dir, "-w", "-t", "60", "-l", c.log}
	switch action {
	case "start", "restart":
		opts := fmt.Sprintf("-p %d -k %s -c listen_addresses=127.0.0.1 -c max_connections=300 -c fsync=on", c.port, c.sock)
		args = append(args, "-o", opts)
		if action == "restart" {
			args = append(args, "-m", "fast")
		}
	case "stop":
		args = append(args, "-m", "immediate")
	}
	if out, err := c.cmd(ctx, "pg_ctl", append([]string{action}, args...)...).CombinedOutput(); err != nil {
		return fmt.Errorf("pg_ctl %s: %w: %s", action, err, strings.TrimSpace(string(out)))
	}
	return nil
}

// addr is the server's TCP address.
func (c *pgCluster) addr() string { return "127.0.0.1:" + strconv.Itoa(c.port) }

// url is a connection URL to database db at addr (the server, or a proxy
// in front of it), naming the client as app.
func pgURL(addr, db, app string) string {
	return fmt.Sprintf("postgres://postgres@%s/%s?sslmode=disable&application_name=%s", addr, db, app)
}

// open connects to database db directly (not through the proxy).
func (c *pgCluster) open(db string) (*sql.DB, error) {
	return sql.Open("pgx", pgURL(c.addr(), db, "nemesis"))
}

// createDatabases creates each database.
func (c *pgCluster) createDatabases(ctx context.Context, names ...string) error {
	db, err := c.open("postgres")
	if err != nil {
		return err
	}
	defer db.Close()
	for _, n := range names {
		if _, err := db.ExecContext(ctx, `CREATE DATABASE "`+n+`"`); err != nil {
			return fmt.Errorf("create database %s: %w", n, err)
		}
	}
	return nil
}

// terminateBackends ends every client backend of the services (not the
// nemesis' own) and returns how many.
func (c *pgCluster) terminateBackends(ctx context.Context) (int, error) {
	db, err := c.open("postgres")
	if err != nil {
		return 0, err
	}
	defer db.Close()
	var n int
	err = db.QueryRowContext(ctx, `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
		WHERE backend_type = 'client backend' AND pid <> pg_backend_pid() AND application_name <> 'nemesis'`).Scan(&n)
	return n, err
}

// stop stops the server at once and removes its directory, unless keep.
func (c *pgCluster) stop(keep bool) {
	if keep {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_ = c.ctl(ctx, "stop")
}

// freePort returns a TCP port free on 127.0.0.1 now.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}
