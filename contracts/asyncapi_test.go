package contracts_test

import (
	"bytes"
	"encoding/json"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/types/known/timestamppb"
	"gopkg.in/yaml.v3"

	"github.com/b2131a45/eventkit/contracts"
	"github.com/b2131a45/eventkit/events"
	"github.com/b2131a45/eventkit/transports/amqp"
	"github.com/b2131a45/eventkit/transports/kafka"
)

// asyncAPISchema is the official AsyncAPI 3.0.0 JSON Schema
// (testdata/asyncapi/README.md), compiled once.
var asyncAPISchema = sync.OnceValues(func() (*jsonschema.Schema, error) {
	f, err := os.Open("testdata/asyncapi/3.0.0.json")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	doc, err := jsonschema.UnmarshalJSON(f)
	if err != nil {
		return nil, err
	}
	c := jsonschema.NewCompiler()
	c.AssertFormat()
	if err := c.AddResource("asyncapi-3.0.0.json", doc); err != nil {
		return nil, err
	}
	return c.Compile("asyncapi-3.0.0.json")
})

// validAsyncAPI fails t unless doc validates against the official schema.
func validAsyncAPI(t *testing.T, doc map[string]any) {
	t.Helper()
	sch, err := asyncAPISchema()
	require.NoError(t, err)
	raw, err := json.Marshal(doc)
	require.NoError(t, err)
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
	require.NoError(t, err)
	require.NoError(t, sch.Validate(inst), "the document does not validate against AsyncAPI 3.0.0:\n%s", raw)
}

func TestAsyncAPIValidates(t *testing.T) {
	t.Parallel()
	snap := sampleSnapshot(t)
	t.Run("the whole wiring", func(t *testing.T) {
		t.Parallel()
		doc, err := contracts.AsyncAPI(snap, contracts.ExportConfig{Title: "shop", Version: "2.1.0", Description: "The sample shop."})
		require.NoError(t, err)
		validAsyncAPI(t, doc)
	})
	for _, s := range sampleServices {
		t.Run("service "+s.Name, func(t *testing.T) {
			t.Parallel()
			doc, err := contracts.AsyncAPI(snap, contracts.ExportConfig{Service: s.Name})
			require.NoError(t, err)
			validAsyncAPI(t, doc)
			assert.Equal(t, s.Name+" events", doc["info"].(map[string]any)["title"])
			ops := doc["operations"].(map[string]any)
			assert.Len(t, ops, len(s.Publishes)+len(s.Consumes), "only the service's operations")
		})
	}
	t.Run("no wiring, protobuf, recursion, history", func(t *testing.T) {
		t.Parallel()
		type Node struct {
			Name     string  `json:"name"`
			Children []*Node `json:"children,omitempty"`
		}
		type Tree struct {
			Root   Node              `json:"root"`
			At     time.Time         `json:"at"`
			Extra  any               `json:"extra,omitempty"`
			Labels map[string]string `json:"labels"`
			Raw    []byte            `json:"raw,omitempty"`
		}
		reg := events.NewRegistry()
		events.MustRegister[Tree](reg, "trees.tree_planted", events.Version(3), events.Upcast(1, noop), events.Upcast(2, noop))
		events.MustRegister[timestamppb.Timestamp](reg, "clock.ticked", events.WithCodec(events.Protobuf))
		cur, err := contracts.Take(reg)
		require.NoError(t, err)
		old := cur.Events[1]
		old.Version, old.Upcasters = 2, []int{1}
		old.Schemas = []contracts.Schema{{Version: 2, JSONSchema: old.Current().JSONSchema}}
		hist := contracts.Update(&contracts.Snapshot{Events: []contracts.Event{cur.Events[0], old}}, cur)
		doc, err := contracts.AsyncAPI(hist, contracts.ExportConfig{})
		require.NoError(t, err)
		validAsyncAPI(t, doc)
		msgs := doc["components"].(map[string]any)["messages"].(map[string]any)
		assert.Contains(t, msgs, "clock.ticked.v1")
		for _, v := range []string{"v1", "v2", "v3"} {
			assert.Contains(t, msgs, "trees.tree_planted."+v)
		}
		assert.Nil(t, msgs["trees.tree_planted.v1"].(map[string]any)["payload"], "v1 is known from its upcaster only")
		assert.NotNil(t, msgs["trees.tree_planted.v2"].(map[string]any)["payload"], "v2's schema is in the history")
		assert.Equal(t, true, msgs["trees.tree_planted.v2"].(map[string]any)["deprecated"])
		proto := doc["components"].(map[string]any)["schemas"].(map[string]any)["clock.ticked.v1"].(map[string]any)
		assert.Equal(t, "application/vnd.google.protobuf;version=3", proto["schemaFormat"])
		assert.Contains(t, proto["schema"], "message Timestamp {\n  int64 seconds = 1;\n  int32 nanos = 2;\n}")
	})
}

// TestAsyncAPIListsTheSamples: the document of the sample services lists
// every event and version, every channel, publisher and consumer.
func TestAsyncAPIListsTheSamples(t *testing.T) {
	t.Parallel()
	doc, err := contracts.AsyncAPI(sampleSnapshot(t), contracts.ExportConfig{})
	require.NoError(t, err)
	channels := doc["channels"].(map[string]any)
	assert.Len(t, channels, 3)
	msgs := doc["components"].(map[string]any)["messages"].(map[string]any)
	assert.Len(t, msgs, 4)
	for _, m := range []string{"orders.order_created.v1", "orders.order_created.v2", "inventory.stock_reserved.v1", "payments.payment_processed.v1"} {
		assert.Contains(t, msgs, m)
	}
	ch := channels["orders.order_created"].(map[string]any)
	assert.Equal(t, "orders.order_created", ch["address"])
	assert.Len(t, ch["messages"], 2)
	ops := doc["operations"].(map[string]any)
	assert.Len(t, ops, 6)
	send := ops["orders.publish.orders.order_created"].(map[string]any)
	assert.Equal(t, "send", send["action"])
	assert.Equal(t, []any{map[string]any{"$ref": "#/channels/orders.order_created/messages/orders.order_created.v2"}}, send["messages"])
	recv := ops["inventory.inventory.reserve-stock.consume.orders.order_created"].(map[string]any)
	assert.Equal(t, "receive", recv["action"])
	assert.Equal(t, "inventory.reserve-stock", recv["x-eventkit-handler"])
	assert.Len(t, recv["messages"], 2, "the consumer takes v1 (upcast) and v2")

	// Every reference resolves.
	raw, err := json.Marshal(doc)
	require.NoError(t, err)
	var generic any
	require.NoError(t, json.Unmarshal(raw, &generic))
	walkRefs(t, generic, generic)

	// The payload: the JSON Schema, its definitions beside it.
	schemas := doc["components"].(map[string]any)["schemas"].(map[string]any)
	assert.Contains(t, schemas, "orders.order_created.v2.OrderItem")
	assert.NotContains(t, string(raw), "$defs")
}

func walkRefs(t *testing.T, root, v any) {
	t.Helper()
	switch x := v.(type) {
	case map[string]any:
		if r, ok := x["$ref"].(string); ok {
			cur := root
			for _, tok := range strings.Split(strings.TrimPrefix(r, "#/"), "/") {
				m, ok := cur.(map[string]any)
				require.True(t, ok, "reference %s does not resolve", r)
				cur, ok = m[tok]
				require.True(t, ok, "reference %s does not resolve", r)
			}
		}
		for _, e := range x {
			walkRefs(t, root, e)
		}
	case []any:
		for _, e := range x {
			walkRefs(t, root, e)
		}
	}
}

// TestEnvelopeTrait: the trait describes each envelope header once, in the
// eventkit form and the CloudEvents binary names of both brokers.
func TestEnvelopeTrait(t *testing.T) {
	t.Parallel()
	assert.Equal(t, "ce_", kafka.CloudEventsHeaderPrefix)
	assert.Equal(t, "cloudEvents:", amqp.CloudEventsHeaderPrefix)
	doc, err := contracts.AsyncAPI(sampleSnapshot(t), contracts.ExportConfig{})
	require.NoError(t, err)
	trait := doc["components"].(map[string]any)["messageTraits"].(map[string]any)[contracts.EnvelopeTrait].(map[string]any)
	props := trait["headers"].(map[string]any)["properties"].(map[string]any)

	// Every header a fully stamped message carries, in both forms.
	reg := sampleRegistry(t)
	ctx := events.WithCorrelationID(t.Context(), "c-1")
	msg, err := reg.NewMessage(ctx, OrderCreated{OrderID: "o-1"}, "orders")
	require.NoError(t, err)
	msg.Metadata.Set(events.KeyCausationID, "e-0")
	msg.Metadata.Set(events.KeyPartitionKey, "o-1")
	msg.Metadata.Set(events.KeyTraceParent, "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
	msg.Metadata.Set(events.KeyTraceState, "a=b")
	for k := range msg.Metadata {
		assert.Contains(t, props, k)
	}
	for attr := range events.CloudEventOf(msg).Attributes {
		assert.Contains(t, props, kafka.CloudEventsHeaderPrefix+attr)
		assert.Contains(t, props, amqp.CloudEventsHeaderPrefix+attr)
	}
	for _, m := range doc["components"].(map[string]any)["messages"].(map[string]any) {
		assert.Equal(t, []any{map[string]any{"$ref": "#/components/messageTraits/" + contracts.EnvelopeTrait}}, m.(map[string]any)["traits"])
		assert.Nil(t, m.(map[string]any)["headers"], "headers are described once, in the trait")
	}
}

func TestExport(t *testing.T) {
	t.Parallel()
	snap := sampleSnapshot(t)
	var j, y bytes.Buffer
	require.NoError(t, contracts.Export(&j, snap, contracts.ExportConfig{}))
	require.NoError(t, contracts.Export(&y, snap, contracts.ExportConfig{Format: contracts.FormatYAML}))
	var fromJSON, fromYAML map[string]any
	require.NoError(t, json.Unmarshal(j.Bytes(), &fromJSON))
	require.NoError(t, yaml.Unmarshal(y.Bytes(), &fromYAML))
	assert.Equal(t, "3.0.0", fromYAML["asyncapi"])
	validAsyncAPI(t, fromJSON)

	var again bytes.Buffer
	require.NoError(t, contracts.Export(&again, snap, contracts.ExportConfig{}))
	assert.Equal(t, j.String(), again.String(), "the export is deterministic")

	err := contracts.Export(&j, snap, contracts.ExportConfig{Service: "shipping"})
	require.ErrorContains(t, err, `service "shipping" is not in the wiring (inventory, orders, payments)`)
	require.ErrorContains(t, contracts.Export(&j, snap, contracts.ExportConfig{Format: "xml"}), `unknown export format "xml"`)
}

// TestAsyncAPISchemaRejects: the official schema is live: a document it
// must reject fails.
func TestAsyncAPISchemaRejects(t *testing.T) {
	t.Parallel()
	sch, err := asyncAPISchema()
	require.NoError(t, err)
	for name, mutate := range map[string]func(doc map[string]any){
		"an AsyncAPI 2 action": func(doc map[string]any) {
			doc["operations"].(map[string]any)["orders.publish.orders.order_created"].(map[string]any)["action"] = "publish"
		},
		"no info version": func(doc map[string]any) { delete(doc["info"].(map[string]any), "version") },
		"an operation with no channel": func(doc map[string]any) {
			delete(doc["operations"].(map[string]any)["orders.publish.orders.order_created"].(map[string]any), "channel")
		},
		"an unknown top field": func(doc map[string]any) { doc["topics"] = map[string]any{} },
	} {
		doc, err := contracts.AsyncAPI(sampleSnapshot(t), contracts.ExportConfig{})
		require.NoError(t, err)
		mutate(doc)
		raw, err := json.Marshal(doc)
		require.NoError(t, err)
		inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
		require.NoError(t, err)
		assert.Error(t, sch.Validate(inst), name)
	}
}
