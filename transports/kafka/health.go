package kafka

import (
	"context"
	"errors"
	"fmt"

	"github.com/IBM/sarama"

	"github.com/b2131a45/eventkit/transports/internal/redact"
)

// Health reports whether the cluster answers: it asks the cluster for its
// metadata over a client the transport keeps for this purpose, created by
// the first call and closed with the transport. A failed call closes that
// client, so the next call connects afresh (from the seed brokers) and
// Health recovers when the cluster is back. Concurrent calls are safe: they
// take turns, and a call waiting for its turn returns ctx.Err() when ctx
// ends. Sarama takes no context: one attempt is bounded by
// Config.DialTimeout and Sarama's metadata retries, not by ctx. The error,
// password redacted, wraps ErrUnavailable; it is ErrClosed after Close.
func (t *Transport) Health(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if t.pub.isClosed() {
		return ErrClosed
	}
	return t.health.check(ctx)
}

// healthClient is the Sarama client Health reuses. turn, a one-slot
// semaphore, guards client and closed: a check holds it while it connects
// and asks the cluster, so there is never more than one client.
type healthClient struct {
	cfg     Config // with its defaults
	secrets redact.Secrets

	turn   chan struct{}
	client sarama.Client // nil until the first check, and after a failed one
	closed bool
}

func newHealthClient(cfg Config, secrets redact.Secrets) *healthClient {
	return &healthClient{cfg: cfg.withDefaults(), secrets: secrets, turn: make(chan struct{}, 1)}
}

func (h *healthClient) check(ctx context.Context) error {
	select {
	case h.turn <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-h.turn }()
	if h.closed {
		return ErrClosed
	}
	if h.client == nil {
		// NewClient fetches the cluster's metadata: that is the check.
		client, err := sarama.NewClient(h.cfg.Brokers, h.cfg.sarama())
		if err != nil {
			return h.unavailable(err)
		}
		h.client = client
		return nil
	}
	if err := h.client.RefreshMetadata(); err != nil {
		_ = h.client.Close()
		h.client = nil
		return h.unavailable(err)
	}
	return nil
}

func (h *healthClient) unavailable(err error) error {
	return h.secrets.Error(fmt.Errorf("%w: %w", ErrUnavailable, err))
}

// close waits for a check in flight, then closes the client. Later checks
// return ErrClosed. It is safe to call more than once.
func (h *healthClient) close() error {
	h.turn <- struct{}{}
	defer func() { <-h.turn }()
	h.closed = true
	if h.client == nil {
		return nil
	}
	err := h.client.Close()
	h.client = nil
	if errors.Is(err, sarama.ErrClosedClient) {
		return nil
	}
	return h.secrets.Error(err)
}
