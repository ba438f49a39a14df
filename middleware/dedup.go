package middleware

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/jackc/pgx/v5"

	"github.com/b2131a45/eventkit/events"
)

// DeduplicateConfig configures Deduplicate. The zero value is the default.
type DeduplicateConfig struct {
	// InTx runs the handler inside the inbox claim's transaction, exposed by
	// TxFromContext (PgxTxFromContext for an inbox on a pgx pool,
	// NewPostgresInboxPool): the handler's writes, the inbox row and any
	// outbox events added with the transaction commit together when the
	// handler returns nil and roll back together when it fails. It needs a
	// store with transactions (a SQLInbox, without GroupCommit; with
	// GroupTx the claims in flight share a few transactions, a savepoint
	// each). Defaults to false.
	InTx bool
	// Logger receives a debug line per duplicate. Defaults to
	// slog.Default().
	Logger *slog.Logger
	// OnDuplicate, if set, is called with the message context for each
	// duplicate dropped. Use it for metrics.
	OnDuplicate func(ctx context.Context)
}

// txClaimer is an inbox store that can skip making a *sql.Tx for a claim
// whose handler does not see it (SQLInbox).
type txClaimer interface {
	claim(ctx context.Context, key InboxKey, withTx bool) (InboxClaim, error)
}

// pgxClaimer is a claim whose transaction is a pgx one (an inbox on a pgx
// pool).
type pgxClaimer interface {
	PgxTx() pgx.Tx
}

// commitTimeout bounds the inbox commit of a handler that succeeded, which
// does not end with the message context.
const commitTimeout = 30 * time.Second

// Deduplicate drops messages whose event the handler already handled. See
// NewDeduplicate.
type Deduplicate struct {
	store InboxStore
	cfg   DeduplicateConfig
	dups  atomic.Int64
}

// NewDeduplicate returns the Deduplicate middleware over store. For each
// message it claims the key (handler name from message.HandlerNameFromCtx,
// event id from the event_id header, else the message UUID) and:
//
//   - if the key is recorded, acks the message without calling the handler
//     (and without producing messages) and counts a duplicate;
//   - otherwise runs the handler and records the key only if the handler
//     returned nil (the claim is committed); on an error or a panic the
//     claim is rolled back, so a failed attempt is retried, never swallowed;
//   - while another delivery of the same event holds the claim, waits for
//     it (two deliveries never run the handler at once).
//
// Without InTx the handler's effects and the inbox row are not atomic: a
// crash between them runs the handler again (at-least-once effect, as for
// any external side effect). With InTx and a SQL store they are one
// transaction: exactly-once effect for writes made through TxFromContext.
//
// A message without handler name or event id, or with one too long to
// store, fails with a permanent error; without an event id it is the
// *events.DecodeError of its envelope (ReasonMissingID, or
// ReasonMissingName when it names no event either), or of its CloudEvents
// form when it claims one it is not (ReasonDecode: a structured event that
// does not parse, whose id is inside it). NewDeduplicate returns an error if
// store is nil, or InTx is set with a MemoryInbox or an inbox with
// InboxConfig.GroupCommit.
func NewDeduplicate(store InboxStore, cfg DeduplicateConfig) (*Deduplicate, error) {
	if store == nil {
		return nil, errors.New("middleware: Deduplicate inbox store is nil")
	}
	if _, mem := store.(*MemoryInbox); mem && cfg.InTx {
		return nil, errors.New("middleware: DeduplicateConfig.InTx needs a SQL inbox store, not a MemoryInbox")
	}
	if g, ok := store.(interface{ GroupCommit() bool }); ok && g.GroupCommit() && cfg.InTx {
		return nil, errors.New("middleware: DeduplicateConfig.InTx needs a transaction per claim, but the inbox has InboxConfig.GroupCommit set")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Deduplicate{store: store, cfg: cfg}, nil
}

// Duplicates returns how many messages were dropped as duplicates.
func (d *Deduplicate) Duplicates() int64 { return d.dups.Load() }

// Store returns the inbox store.
func (d *Deduplicate) Store() InboxStore { return d.store }

// Middleware is the message.HandlerMiddleware.
func (d *Deduplicate) Middleware(h message.HandlerFunc) message.HandlerFunc {
	return func(msg *message.Message) (out []*message.Message, err error) {
		ctx := msg.Context()
		key := InboxKey{Handler: message.HandlerNameFromCtx(ctx), EventID: msg.Metadata.Get(events.KeyEventID)}
		if key.EventID == "" {
			key.EventID = msg.UUID
		}
		if key.EventID == "" {
			// The id may be in a CloudEvents form a subscriber did not read,
			// or the message may claim a form it is not (a structured event
			// that does not parse): then that is its real problem.
			if err := events.Canonicalize(msg); err != nil {
				return nil, err
			}
			key.EventID = msg.Metadata.Get(events.KeyEventID)
			if key.EventID == "" {
				key.EventID = msg.UUID
			}
		}
		if key.EventID == "" {
			// No key to claim: report the message's real problem (no event
			// id, or no event name either), a permanent *events.DecodeError.
			_, err := events.EnvelopeFromMessage(msg)
			return nil, err
		}
		var claim InboxClaim
		if c, ok := d.store.(txClaimer); ok {
			claim, err = c.claim(ctx, key, d.cfg.InTx)
		} else {
			claim, err = d.store.Claim(ctx, key)
		}
		if errors.Is(err, ErrDuplicate) {
			d.dups.Add(1)
			if d.cfg.OnDuplicate != nil {
				d.cfg.OnDuplicate(ctx)
			}
			d.cfg.Logger.LogAttrs(ctx, slog.LevelDebug, "eventkit: duplicate dropped", attrsOf(msg)...)
			return nil, nil
		}
		if err != nil {
			return nil, err // a timed-out wait included: Retry and PoisonQueue tell shutdown apart
		}
		committed := false
		defer func() {
			if committed {
				return
			}
			if rbErr := claim.Rollback(); rbErr != nil {
				d.cfg.Logger.LogAttrs(ctx, slog.LevelWarn, "eventkit: inbox rollback failed",
					append(attrsOf(msg), slog.String("error", rbErr.Error()))...)
			}
		}()
		if d.cfg.InTx {
			var txCtx context.Context
			if tx := claim.Tx(); tx != nil {
				txCtx = ContextWithTx(ctx, tx)
			} else if p, ok := claim.(pgxClaimer); ok && p.PgxTx() != nil {
				txCtx = contextWithPgxTx(ctx, p.PgxTx())
			} else {
				return nil, fmt.Errorf("middleware: DeduplicateConfig.InTx is set but the inbox store %T gave no transaction", d.store)
			}
			msg.SetContext(txCtx)
			defer msg.SetContext(ctx)
		}
		out, err = h(msg)
		if err != nil {
			return nil, err
		}
		// A handler that succeeded has its key committed even when its
		// context ended meanwhile (the router closing): otherwise the
		// message is redelivered after a graceful restart and runs again.
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), commitTimeout)
		defer cancel()
		if err := claim.Commit(cctx); err != nil {
			return nil, err
		}
		committed = true
		return out, nil
	}
}
