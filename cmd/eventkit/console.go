package main

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/b2131a45/eventkit/console"
	"github.com/b2131a45/eventkit/forwarder"
	"github.com/b2131a45/eventkit/transports"
)

// tokenEnv is where the console's operator token is read from by default.
const tokenEnv = console.TokenEnv

const consoleLong = `console serves the web console: outbox counts, lag and relay; failed outbox rows
(requeue, delete); dead letters grouped by handler and error (replay, delete); inbox sizes
and purge status; health of the relay and the transport. Pages are server-rendered and work
without JavaScript.

It binds to 127.0.0.1:8089 unless --listen says otherwise, and is read-only unless an
operator token is given: --token, or $` + tokenEnv + ` (better: it is not shown by ps).
Every action needs a login with the token (or "Authorization: Bearer TOKEN") and a CSRF
check, and is logged to standard error with who, what and how many. Passwords of the URLs
given never appear on a page. It runs until interrupted (SIGINT, SIGTERM), then exits 0.

--outbox and --inbox may be given more than once. --dlq names the dead-letter topics to
show (more than once); by default those of the topics the outboxes publish to that exist.`

type consoleFlags struct {
	db, transport, listen, token, basePath string
	outboxes, inboxes, dlqs, mask          []string
	private                                bool
	sample                                 time.Duration
}

func consoleCmd() *cobra.Command {
	var f consoleFlags
	cmd := &cobra.Command{
		Use:   "console",
		Short: "serve the web console for outboxes, dead letters and inboxes",
		Long:  consoleLong,
		Example: `  EVENTKIT_CONSOLE_TOKEN=$(openssl rand -hex 16) eventkit console --db "$DATABASE_URL" \
      --outbox orders_outbox --transport "$TRANSPORT_URL"`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return f.run(cmd) },
	}
	fs := cmd.Flags()
	fs.StringVar(&f.db, "db", "", dbUsage)
	fs.StringArrayVar(&f.outboxes, "outbox", nil, "outbox `name` to show (repeatable; default "+forwarder.OutboxNameDefault+" when --db is given)")
	fs.StringArrayVar(&f.inboxes, "inbox", nil, "inbox `table` to show (repeatable)")
	fs.StringVar(&f.transport, "transport", "", "broker `URL` of the dead letters: amqp://…, kafka://…, postgres://…, mysql://… (defaults to $EVENTKIT_TRANSPORT, then $TRANSPORT_URL)")
	fs.StringArrayVar(&f.dlqs, "dlq", nil, "dead-letter `topic` to show (repeatable; default: found from the outboxes' topics)")
	fs.StringVar(&f.listen, "listen", "127.0.0.1:8089", "`address` to listen on")
	fs.StringVar(&f.token, "token", "", "operator `token` that allows actions, at least 16 characters (defaults to $"+tokenEnv+"; none: read-only)")
	fs.BoolVar(&f.private, "private", false, "reading needs the login too, not only actions")
	fs.StringArrayVar(&f.mask, "mask", nil, "payload `field` shown as *** (repeatable): a name at any depth, or a dotted path")
	fs.StringVar(&f.basePath, "base-path", "", "URL `path` prefix the console is served under, e.g. /console")
	fs.DurationVar(&f.sample, "sample", console.SampleIntervalDefault, "how often the outbox counters are sampled for the charts")
	return cmd
}

func (f *consoleFlags) run(cmd *cobra.Command) error {
	ctx := cmd.Context()
	f.db = fromEnv(cmd, "db", f.db, "EVENTKIT_DB", "DATABASE_URL")
	f.transport = fromEnv(cmd, "transport", f.transport, "EVENTKIT_TRANSPORT", "TRANSPORT_URL")
	f.token = fromEnv(cmd, "token", f.token, tokenEnv)
	if f.db == "" && f.transport == "" {
		return usagef("console: give --db, --transport or both (or set $EVENTKIT_DB / $TRANSPORT_URL)")
	}
	if f.db == "" && (len(f.outboxes) > 0 || len(f.inboxes) > 0) {
		return usagef("console: --outbox and --inbox need --db")
	}
	if f.transport == "" && len(f.dlqs) > 0 {
		return usagef("console: --dlq needs --transport")
	}
	if _, _, err := net.SplitHostPort(f.listen); err != nil {
		return usagef("console: --listen %q: want host:port, e.g. 127.0.0.1:8089", f.listen)
	}
	if f.db != "" && len(f.outboxes) == 0 {
		f.outboxes = []string{forwarder.OutboxNameDefault}
	}
	cfg := console.Config{
		BasePath: f.basePath, Token: f.token, Private: f.private, Mask: f.mask, SampleInterval: f.sample,
		Logger:  slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), nil)),
		Secrets: console.URLPasswords(f.db, f.transport),
	}
	for _, t := range f.dlqs {
		cfg.DeadLetters = append(cfg.DeadLetters, console.DeadLetterTopic{Topic: t})
	}
	if f.db != "" {
		db, err := openDB(f.db, accessWrite)
		if err != nil {
			return err
		}
		defer db.Close()
		if err := checkSQLiteFile(f.db); err != nil {
			return err
		}
		if err := f.addStores(ctx, db, &cfg); err != nil {
			return err
		}
	}
	if f.transport != "" {
		t, err := transports.Open(ctx, f.transport)
		if err != nil {
			var ue *transports.URLError
			if errors.As(err, &ue) {
				return usagef("--transport: %v", err)
			}
			return fmt.Errorf("--transport: %w", err)
		}
		defer t.Close()
		cfg.Transport = t
	}
	c, err := console.New(cfg)
	if err != nil {
		return usagef("%s", configFlags.Replace(err.Error()))
	}
	defer c.Close()
	ln, err := net.Listen("tcp", f.listen)
	if err != nil {
		return fmt.Errorf("console: %w", err)
	}
	return serve(ctx, c, ln, f, cmd.OutOrStdout())
}

// addStores adds the outboxes and inboxes of db, which must exist.
func (f *consoleFlags) addStores(ctx context.Context, db *sql.DB, cfg *console.Config) error {
	for _, name := range f.outboxes {
		ob, err := newOutbox(db, name)
		if err != nil {
			return err
		}
		if err := checkOutbox(ctx, db, ob); err != nil {
			return err
		}
		cfg.Outboxes = append(cfg.Outboxes, console.Outbox{Outbox: ob, Database: f.db})
	}
	for _, table := range f.inboxes {
		in, err := newInbox(db, table)
		if err != nil {
			return usagef("--inbox: %v", err)
		}
		ob, _ := newOutbox(db, forwarder.OutboxNameDefault) // for the dialect
		found, err := tableExists(ctx, db, ob.Dialect(), table)
		if err != nil {
			return err
		}
		if !found {
			return fmt.Errorf("inbox table %s does not exist in this database; nothing was changed (is --inbox right?)", table)
		}
		cfg.Inboxes = append(cfg.Inboxes, console.Inbox{Inbox: in, Database: f.db})
	}
	return nil
}

// serve runs the console on ln until ctx ends, then shuts it down.
func serve(ctx context.Context, c *console.Console, ln net.Listener, f *consoleFlags, out io.Writer) error {
	mode := "read-only (no operator token)"
	if f.token != "" {
		mode = "actions need the operator token"
	}
	fmt.Fprintf(out, "eventkit console on http://%s%s/ — %s\n", ln.Addr(), f.basePath, mode)
	if w := console.ExposureWarning(f.listen, f.private); w != "" {
		fmt.Fprintln(out, w)
	}
	if err := c.Serve(ctx, ln); err != nil {
		return err
	}
	fmt.Fprintln(out, "eventkit console stopped")
	return nil
}

// configFlags names the flags behind the console.Config fields in its
// errors.
var configFlags = strings.NewReplacer("Config.Token", "--token", "Config.SampleInterval", "--sample",
	"Config.BasePath", "--base-path", "Config.DeadLetters", "--dlq")
