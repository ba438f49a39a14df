// Command inventory is the inventory sample service. It is wired only by TRANSPORT_URL
// and DATABASE_URL (and HTTP_ADDR), so switching RabbitMQ ↔ Kafka is one
// environment variable. RELAY=off makes it leave relaying its outbox to the
// replicas that run with RELAY=on, the default (sample.RelayOff). See
// docker-compose.yml.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/b2131a45/eventkit/internal/sample"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "healthcheck" {
		os.Exit(sample.Healthcheck(os.Getenv("HTTP_ADDR")))
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := sample.RunInventory(ctx, sample.ServiceConfigFromEnv()); err != nil {
		fmt.Fprintln(os.Stderr, err) // it names the service
		os.Exit(1)
	}
}
