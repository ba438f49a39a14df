package console_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/b2131a45/eventkit/events"
	"github.com/b2131a45/eventkit/forwarder"
	"github.com/b2131a45/eventkit/middleware"
	"github.com/b2131a45/eventkit/transports/amqp"
)

// failedIDs returns the event ids of the failed rows, oldest first.
func (b *bundle) failedIDs(f forwarder.FailedFilter) []string {
	b.t.Helper()
	rows, err := b.ob.FailedPage(context.Background(), f, 0, 1000)
	require.NoError(b.t, err)
	var ids []string
	for _, r := range rows {
		ids = append(ids, r.EventID)
	}
	return ids
}

// Failed outbox rows are requeued and deleted one at a time and by filter:
// the confirm page shows the count first, the outcome says how many, the
// database agrees, and the audit log names who did what to how many.
func TestRequeueAndDeleteFailedRows(t *testing.T) {
	t.Parallel()
	b := setup(t)
	for i := range 6 {
		b.add(Placed{OrderID: fmt.Sprintf("o-%d", i)})
	}
	b.fail("amqp: unroutable", 0, 1, 2)
	b.fail("message too large", 3, 4)
	unroutable := b.failedIDs(forwarder.FailedFilter{ErrorContains: "unroutable"})
	require.Len(t, unroutable, 3)
	c := b.client()
	c.login("ada")
	base := "/outboxes/" + b.ob.Name() + "/failed"

	p := c.confirm(base+"/confirm?action=requeue&id="+unroutable[0], 1)
	require.Equal(t, http.StatusOK, p.status, p.body)
	assert.Contains(t, p.body, "requeued 1 row(s): failed rows with event "+unroutable[0]+" of outbox "+b.ob.Name())
	st := b.stats()
	assert.EqualValues(t, 4, st.Failed)
	assert.EqualValues(t, 2, st.Pending)
	assert.NotContains(t, b.failedIDs(forwarder.FailedFilter{}), unroutable[0])

	p = c.confirm(base+"/confirm?action=requeue&error=unroutable", 2)
	assert.Contains(t, p.body, `requeued 2 row(s): failed rows with error containing &#34;unroutable&#34;`)
	st = b.stats()
	assert.EqualValues(t, 2, st.Failed)
	assert.EqualValues(t, 4, st.Pending)

	// Another row fails the same way between the confirm page and the
	// click: it is not deleted, only the 2 shown.
	cf := c.get(base + "/confirm?action=delete&error=too+large")
	assert.Contains(t, cf.body, `id="confirm-count">2</b>`)
	b.fail("message too large", 5)
	action, form := form(t, cf)
	p = c.post(action, form)
	assert.Contains(t, p.body, `deleted 2 row(s)`)
	st = b.stats()
	assert.EqualValues(t, 1, st.Failed, "the row that failed after the count was shown")
	assert.EqualValues(t, 3, st.Pending, "pending rows are never deleted")
	p = c.confirm(base+"/confirm?action=delete", 1)
	assert.Contains(t, p.body, `deleted 1 row(s)`)
	p = c.get(base + "/confirm?action=delete")
	assert.Contains(t, p.body, "Nothing matches")

	audit := b.auditLines()
	require.Len(t, audit, 4)
	for i, want := range []struct {
		action string
		rows   int
	}{{"outbox requeue", 1}, {"outbox requeue", 2}, {"outbox delete", 2}, {"outbox delete", 1}} {
		var line map[string]any
		require.NoError(t, json.Unmarshal([]byte(audit[i]), &line))
		assert.Equal(t, "ada from 127.0.0.1", line["who"])
		assert.Equal(t, want.action, line["action"])
		assert.Equal(t, b.ob.Name(), line["outbox"])
		assert.EqualValues(t, want.rows, line["rows"])
		assert.NotEmpty(t, line["filter"])
	}

	// A bearer token acts without a login and gets JSON.
	b.fail("again", 0)
	bc := b.client()
	p = bc.post(base+"/requeue", url.Values{}, "Authorization", "Bearer "+token, "Accept", "application/json")
	assert.Equal(t, http.StatusBadRequest, p.status, "a script says how many it expects too")
	p = bc.post(base+"/requeue", url.Values{"expect": {"10"}}, "Authorization", "Bearer "+token, "Accept", "application/json")
	require.Equal(t, http.StatusOK, p.status, p.body)
	assert.Contains(t, p.body, `"rows":1`)
	assert.Contains(t, b.auditLines()[4], `"who":"bearer token from 127.0.0.1"`)
}

// A group of dead letters made by the Default chain over RabbitMQ is
// replayed from the console after its cause is fixed: each is handled
// once, with its event id, the group's count drops to zero and the other
// group stays.
func TestReplayGroupHandlesEachOnce(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ps := b.poison(3, 2)
	handler, skuIDs, chain := ps.handler, ps.skuIDs, ps.chain
	fixed, mu, handled := &ps.fixed, &ps.mu, ps.handled

	c := b.client()
	c.login("ada")
	p := c.get("/dlq/" + b.dlq)
	m := regexp.MustCompile(`data-group="([0-9a-f]+)"><td>` + regexp.QuoteMeta(handler) + `</td><td>permanent</td><td><code>[^<]*unknown sku`).FindStringSubmatch(p.body)
	require.NotNil(t, m, p.body)
	fixed.Store(true)
	p = c.confirm("/dlq/"+b.dlq+"/confirm?action=replay&group_key="+m[1], 3)
	require.Equal(t, http.StatusOK, p.status, p.body)
	assert.Contains(t, p.body, "replayed 3 of the 3 dead letters with group "+m[1]+" in "+b.dlq)

	require.Eventually(t, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(handled) == 3
	}, 30*time.Second, 10*time.Millisecond)
	b.waitDepth(2)
	p = c.get("/dlq/" + b.dlq)
	assert.Regexp(t, `id="dlq-depth"[^>]*>2</b>`, p.body)
	assert.Regexp(t, `id="dlq-groups">1</b>`, p.body)
	assert.Contains(t, p.body, "card declined")
	assert.NotContains(t, p.body, "unknown sku")

	time.Sleep(time.Second) // a second delivery would come meanwhile
	mu.Lock()
	for _, id := range skuIDs {
		assert.Equal(t, 1, handled[id], "event %s handled once, with its id", id)
	}
	assert.Len(t, handled, 3)
	mu.Unlock()
	assert.Zero(t, chain.Duplicates())

	p = c.get("/dlq/" + b.dlq + "/confirm?action=replay&group_key=" + m[1])
	assert.Contains(t, p.body, "Nothing matches")
	audit := b.auditLines()
	require.Len(t, audit, 1)
	assert.Contains(t, audit[0], `"action":"dlq replay"`)
	assert.Contains(t, audit[0], `"who":"ada from 127.0.0.1"`)
	assert.Contains(t, audit[0], `"messages":3`)
}

// poisonConsumer is a handler behind the Default chain on RabbitMQ that
// dead-letters orders "sku-N" with "unknown sku SKU-sku-N" until fixed,
// and orders "card-N" always with "card declined".
type poisonConsumer struct {
	handler string
	chain   *middleware.Chain
	fixed   atomic.Bool
	mu      sync.Mutex
	handled map[string]int // event id → successful handlings
	skuIDs  []string
}

// poison starts the consumer, publishes sku orders and card orders to the
// live topic and waits until all are dead letters.
func (b *bundle) poison(sku, card int) *poisonConsumer {
	t := b.t
	t.Helper()
	ctx := context.Background()
	ps := &poisonConsumer{handler: b.topic + "_h", handled: map[string]int{}}
	b.deleteQueues(amqp.QueueName(b.topic, ps.handler))
	for _, l := range middleware.DelayedRetryLevelsDefault {
		b.deleteQueues(amqp.DelayQueueName(b.topic, ps.handler, l))
	}
	router, err := message.NewRouter(message.RouterConfig{}, watermill.NopLogger{})
	require.NoError(t, err)
	inbox, err := middleware.NewMemoryInbox(middleware.InboxConfig{})
	require.NoError(t, err)
	ps.chain, err = middleware.Default(middleware.DefaultConfig{Publisher: b.tr.Publisher(), Inbox: inbox, Subscribers: b.tr.Subscriber,
		Logger: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
	router.AddMiddleware(ps.chain.Middlewares()...)
	sub, err := b.tr.Subscriber(ps.handler)
	require.NoError(t, err)
	router.AddConsumerHandler(ps.handler, b.topic, sub, func(m *message.Message) error {
		var p Placed
		if err := json.Unmarshal(m.Payload, &p); err != nil {
			return middleware.Permanent(err)
		}
		if strings.HasPrefix(p.OrderID, "card") {
			return middleware.Permanent(errors.New("card declined"))
		}
		if !ps.fixed.Load() {
			return middleware.Permanent(fmt.Errorf("unknown sku SKU-%s", p.OrderID))
		}
		ps.mu.Lock()
		ps.handled[m.UUID]++
		ps.mu.Unlock()
		return nil
	})
	go func() { _ = router.Run(ctx) }()
	<-router.Running()
	t.Cleanup(func() { _ = router.Close() })
	for i := range sku + card {
		id := "sku-" + fmt.Sprint(i)
		if i >= sku {
			id = "card-" + fmt.Sprint(i)
		}
		m := message.NewMessage(watermill.NewUUID(), []byte(`{"order_id":"`+id+`"}`))
		m.Metadata.Set(events.KeyName, "console.order_placed")
		m.Metadata.Set(events.KeyEventID, m.UUID)
		if i < sku {
			ps.skuIDs = append(ps.skuIDs, m.UUID)
		}
		require.NoError(t, b.tr.Publisher().Publish(b.topic, m))
	}
	require.Eventually(t, func() bool { return ps.chain.DeadLettered() == int64(sku+card) }, 30*time.Second, 10*time.Millisecond)
	b.waitDepth(int64(sku + card))
	return ps
}

// handledCount returns how many distinct events were handled.
func (ps *poisonConsumer) handledCount() int {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	return len(ps.handled)
}
