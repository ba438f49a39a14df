package sample

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/b2131a45/eventkit/contracts"
	"github.com/b2131a45/eventkit/contracts/contracttest"
	"github.com/b2131a45/eventkit/cqrs"
)

// TestContracts keeps the sample's contracts compatible with the snapshot
// committed in testdata (OrderCreated v1 and v2, the other events v1): a
// breaking change to an event fails here, naming the event, the version and
// the field. Record a change with EVENTKIT_UPDATE_CONTRACTS=1.
func TestContracts(t *testing.T) {
	t.Parallel()
	reg, err := NewRegistry()
	require.NoError(t, err)
	contracttest.Check(t, reg, "testdata/contracts.json", contracts.BackwardTransitive, Services("")...)
}

// TestServicesIsTheWiring: what Services declares is what the services
// wire, handler by handler.
func TestServicesIsTheWiring(t *testing.T) {
	t.Parallel()
	s := setup(t)
	declared := map[string][]cqrs.Subscription{}
	for _, svc := range Services("") {
		for _, c := range svc.Consumes {
			declared[svc.Name] = append(declared[svc.Name], cqrs.Subscription{Handler: c.Handler, Event: c.Event, Topic: c.Topic})
		}
		for _, p := range svc.Publishes {
			assert.Equal(t, s.orders.Namespace.Topic(p.Event), p.Topic, "the outbox's topic for %s", p.Event)
		}
	}
	for _, n := range []*Node{s.orders.Node, s.inventory.Node, s.payments.Node} {
		assert.Equal(t, declared[n.Name], n.Processor.Subscriptions(), n.Name)
	}
}

// asyncAPISchema compiles the official AsyncAPI 3.0.0 JSON Schema vendored
// by package contracts.
func asyncAPISchema(t *testing.T) *jsonschema.Schema {
	t.Helper()
	f, err := os.Open("../../contracts/testdata/asyncapi/3.0.0.json")
	require.NoError(t, err)
	defer f.Close()
	doc, err := jsonschema.UnmarshalJSON(f)
	require.NoError(t, err)
	c := jsonschema.NewCompiler()
	c.AssertFormat()
	require.NoError(t, c.AddResource("asyncapi-3.0.0.json", doc))
	sch, err := c.Compile("asyncapi-3.0.0.json")
	require.NoError(t, err)
	return sch
}

// TestAsyncAPI: the document of the sample validates against the official
// schema and lists every event version, channel, publisher and consumer;
// each service serves its own part of it.
func TestAsyncAPI(t *testing.T) {
	t.Parallel()
	sch := asyncAPISchema(t)
	snap, err := Contracts("")
	require.NoError(t, err)
	var whole bytes.Buffer
	require.NoError(t, contracts.Export(&whole, snap, contracts.ExportConfig{}))
	doc := valid(t, sch, whole.Bytes())
	channels := doc["channels"].(map[string]any)
	assert.ElementsMatch(t, []string{OrderCreatedName, StockReservedName, PaymentProcessedName}, keys(channels))
	msgs := doc["components"].(map[string]any)["messages"].(map[string]any)
	assert.ElementsMatch(t, []string{"orders.order_created.v1", "orders.order_created.v2", "inventory.stock_reserved.v1", "payments.payment_processed.v1"}, keys(msgs))
	assert.ElementsMatch(t, []string{
		"orders.publish.orders.order_created", "inventory.publish.inventory.stock_reserved", "payments.publish.payments.payment_processed",
		"orders.orders.mark-paid.consume.payments.payment_processed",
		"inventory.inventory.reserve-stock.consume.orders.order_created",
		"payments.payments.charge.consume.inventory.stock_reserved",
	}, keys(doc["operations"].(map[string]any)))

	for _, svc := range Services("") {
		mux := http.NewServeMux()
		require.NoError(t, AsyncAPIRoutes(mux, svc.Name, ""))
		srv := httptest.NewServer(mux)
		defer srv.Close()
		for path, contentType := range map[string]string{"/asyncapi.json": "application/json", "/asyncapi.yaml": "application/yaml"} {
			resp, err := http.Get(srv.URL + path)
			require.NoError(t, err)
			body, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			require.NoError(t, err)
			assert.Equal(t, http.StatusOK, resp.StatusCode, path)
			assert.Equal(t, contentType, resp.Header.Get("Content-Type"), path)
			if path != "/asyncapi.json" {
				assert.Contains(t, string(body), "asyncapi: 3.0.0", svc.Name)
				continue
			}
			doc := valid(t, sch, body)
			ops := keys(doc["operations"].(map[string]any))
			assert.Len(t, ops, len(svc.Publishes)+len(svc.Consumes), svc.Name)
			assert.Contains(t, ops, svc.Name+".publish."+svc.Publishes[0].Event, svc.Name)
			assert.Contains(t, ops, svc.Name+"."+svc.Consumes[0].Handler+".consume."+svc.Consumes[0].Event, svc.Name)
		}
	}
}

// valid fails t unless raw is an AsyncAPI 3.0.0 document, and returns it.
func valid(t *testing.T, sch *jsonschema.Schema, raw []byte) map[string]any {
	t.Helper()
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
	require.NoError(t, err)
	require.NoError(t, sch.Validate(inst), "not a valid AsyncAPI 3.0.0 document:\n%s", raw)
	var doc map[string]any
	require.NoError(t, json.Unmarshal(raw, &doc))
	return doc
}

func keys(m map[string]any) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}
