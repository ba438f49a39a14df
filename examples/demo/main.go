// Command demo runs the three sample services (orders, inventory, payments)
// and the web console in one process, until Ctrl-C (SIGINT) or SIGTERM:
//
//	go run ./examples/demo
//
// It needs no service: by default the services share a SQLite database in a
// temporary directory (removed when it stops) and the mem:// transport.
// -transport amqp://… -db postgres://… (defaulting to $TRANSPORT_URL and
// $DATABASE_URL) run it on real ones. The three services share one
// transport and one database pool: on mem:// they must, to see each
// other's events, and one SQLite file wants one pool.
//
// It listens on loopback only: orders on 127.0.0.1:8080, inventory on
// :8081, payments on :8082 and the console on :8089 (-orders-addr,
// -inventory-addr, -payments-addr, -console-addr change them). The console
// shows the three outboxes with their relays, the three inboxes and the
// dead-letter topics of the three event topics, declared at start so that
// they are shown before their first dead letter.
//
// At start it places, over the orders API, one good order and three poison
// orders for SKU-404, which nobody sells: inventory fails them permanently
// and they are dead-lettered (-no-orders skips that). It prints what it did
// with the counts it read back (the good order paid, the dead letters in
// orders.order_created.dlq), the URLs, and the next steps: see the three
// poison orders grouped under one error in the console, fix the cause
// (PUT /stock/SKU-404), replay the group, see each handled once.
//
// The console is read-only unless it has an operator token, at least 16
// characters: $EVENTKIT_CONSOLE_TOKEN, as for eventkit console. When that
// is not set, the demo makes a random token for this run and prints it, so
// that replay works out of the box; anyone who can read its output (and
// reach 127.0.0.1) can act with it, for as long as the demo runs.
//
// Exit status: 0 after an interrupt, 1 when it could not start or a part
// failed, 2 for bad flags.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	var usage usageError
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
	case errors.As(err, &usage):
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(2)
	default:
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

// usageError is a bad flag or flag value: exit status 2.
type usageError struct{ error }

// options are the demo's flags.
type options struct {
	transport, db                                       string
	ordersAddr, inventoryAddr, paymentsAddr, consoleAdr string
	stock                                               string
	noOrders, verbose                                   bool
	token                                               string // from the environment, not a flag (ps shows flags)
}

// parseFlags reads args; getenv gives the defaults of -transport and -db
// and the console's token.
func parseFlags(args []string, getenv func(string) string, stderr io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.transport, "transport", or(getenv("TRANSPORT_URL"), "mem://"), "broker `URL`: mem://, amqp://…, kafka://…, postgres://… (default $TRANSPORT_URL, else mem://)")
	fs.StringVar(&o.db, "db", getenv("DATABASE_URL"), "database `URL`: postgres://…, mysql://…, sqlite:file.db (default $DATABASE_URL, else SQLite in a temporary directory)")
	fs.StringVar(&o.ordersAddr, "orders-addr", "127.0.0.1:8080", "`address` of the orders API")
	fs.StringVar(&o.inventoryAddr, "inventory-addr", "127.0.0.1:8081", "`address` of the inventory API")
	fs.StringVar(&o.paymentsAddr, "payments-addr", "127.0.0.1:8082", "`address` of the payments service (health, metrics)")
	fs.StringVar(&o.consoleAdr, "console-addr", "127.0.0.1:8089", "`address` of the web console")
	fs.StringVar(&o.stock, "stock", "SKU-1=100,SKU-2=100", "inventory's initial `levels` of the SKUs not stocked yet")
	fs.BoolVar(&o.noOrders, "no-orders", false, "place no order at start")
	fs.BoolVar(&o.verbose, "v", false, "log every order placed and event handled (INFO), not only warnings and errors")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: go run ./examples/demo [flags]\n\n"+
			"Runs orders, inventory, payments and the web console in one process until Ctrl-C.\n"+
			"The console's operator token is $%s (at least 16 characters); without it, one is made and printed.\n\n", tokenEnv)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return o, err
		}
		return o, usageError{err}
	}
	if fs.NArg() > 0 {
		return o, usageError{fmt.Errorf("unexpected argument %q: the demo takes flags only", fs.Arg(0))}
	}
	o.token = getenv(tokenEnv)
	if o.token != "" && len(o.token) < 16 {
		return o, usageError{fmt.Errorf("$%s is too short: use at least 16 random characters", tokenEnv)}
	}
	return o, nil
}

func or(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
