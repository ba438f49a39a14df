package contracts_test

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/b2131a45/eventkit/contracts"
	"github.com/b2131a45/eventkit/events"
)

type Base struct {
	ID string `json:"id"`
}

type Item struct {
	SKU string `json:"sku"`
}

type Linked struct {
	Value int     `json:"value"`
	Next  *Linked `json:"next,omitempty"`
}

type Everything struct {
	Base                          // flattened
	Name      string              `json:"name"`
	Note      string              `json:"note,omitempty"`
	Zero      time.Time           `json:"zero,omitzero"`
	At        time.Time           `json:"at"`
	Status    string              `json:"status" jsonschema:"enum=paid,enum=failed"`
	Email     string              `json:"email,omitempty" jsonschema:"format=email"`
	Items     []Item              `json:"items"`
	Tags      map[string]int      `json:"tags"`
	Ptr       *Item               `json:"ptr"`
	Any       any                 `json:"any"`
	List      Linked              `json:"list"`
	Hidden    string              `json:"-"`
	unexp     string              //nolint:unused // left out
	Untagged  bool                //
	Raw       json.RawMessage     `json:"raw,omitempty"`
	Nested    struct{ X []int }   `json:"nested"`
	ByKey     map[string][]string `json:"by_key,omitempty"`
	Precision float64             `json:"precision"`
}

func schemaOf(t *testing.T, typ reflect.Type) map[string]any {
	t.Helper()
	raw, err := contracts.JSONSchemaOf(typ)
	require.NoError(t, err)
	var m map[string]any
	require.NoError(t, json.Unmarshal(raw, &m))
	return m
}

func TestJSONSchemaOf(t *testing.T) {
	t.Parallel()
	s := schemaOf(t, reflect.TypeFor[*Everything]())
	assert.Equal(t, contracts.JSONSchemaDialect, s["$schema"])
	assert.Equal(t, "object", s["type"], "the root is the event's object")
	assert.Nil(t, s["additionalProperties"], "unknown properties allowed")
	props := s["properties"].(map[string]any)
	assert.ElementsMatch(t, []any{"id", "name", "at", "status", "items", "tags", "ptr", "any", "list", "Untagged", "nested", "precision"}, s["required"])
	for _, k := range []string{"hidden", "Hidden", "unexp"} {
		assert.NotContains(t, props, k)
	}
	assert.Equal(t, map[string]any{"type": "string", "format": "date-time"}, props["at"])
	assert.Equal(t, []any{"paid", "failed"}, props["status"].(map[string]any)["enum"])
	assert.Equal(t, "email", props["email"].(map[string]any)["format"])
	nullable := func(name string) {
		alts, ok := props[name].(map[string]any)["anyOf"].([]any)
		require.True(t, ok, "%s may be null", name)
		assert.Equal(t, map[string]any{"type": "null"}, alts[1], name)
	}
	for _, k := range []string{"items", "tags", "ptr", "by_key"} {
		nullable(k)
	}
	assert.Equal(t, true, props["any"])
	defs := s["$defs"].(map[string]any)
	assert.Contains(t, defs, "Item")
	assert.Equal(t, map[string]any{"$ref": "#/$defs/Linked"}, props["list"])
	linked := defs["Linked"].(map[string]any)["properties"].(map[string]any)
	assert.Equal(t, "#/$defs/Linked", linked["next"].(map[string]any)["anyOf"].([]any)[0].(map[string]any)["$ref"], "a recursive type refers to itself")

	root := schemaOf(t, reflect.TypeFor[Linked]())
	assert.Equal(t, "#/$defs/Linked", root["$ref"], "a recursive root keeps its reference")

	// Two types of one name: told apart.
	itemA := func() reflect.Type {
		type Item struct {
			SKU string `json:"sku"`
		}
		return reflect.TypeFor[Item]()
	}()
	itemB := func() reflect.Type {
		type Item struct {
			Code int `json:"code"`
		}
		return reflect.TypeFor[Item]()
	}()
	both := schemaOf(t, reflect.StructOf([]reflect.StructField{
		{Name: "A", Type: itemA, Tag: `json:"a"`}, {Name: "B", Type: itemB, Tag: `json:"b"`}}))
	bothDefs := both["$defs"].(map[string]any)
	require.Len(t, bothDefs, 2)
	refA := both["properties"].(map[string]any)["a"].(map[string]any)["$ref"].(string)
	refB := both["properties"].(map[string]any)["b"].(map[string]any)["$ref"].(string)
	assert.NotEqual(t, refA, refB)
	for _, r := range []string{refA, refB} {
		assert.Contains(t, bothDefs, r[len("#/$defs/"):])
	}

	_, err := contracts.JSONSchemaOf(reflect.TypeFor[struct {
		C chan int `json:"c"`
	}]())
	assert.ErrorContains(t, err, "JSON Schema of")
	_, err = contracts.JSONSchemaOf(nil)
	assert.Error(t, err)
}

func TestTakeProtobuf(t *testing.T) {
	t.Parallel()
	reg := events.NewRegistry()
	events.MustRegister[wrapperspb.StringValue](reg, "test.string", events.WithCodec(events.Protobuf))
	snap, err := contracts.Take(reg)
	require.NoError(t, err)
	s := snap.Events[0].Current()
	assert.Nil(t, s.JSONSchema)
	require.NotNil(t, s.Protobuf)
	assert.Equal(t, "google.protobuf.StringValue", s.Protobuf.Message)
	assert.Contains(t, string(s.Protobuf.Descriptor), `"google/protobuf/wrappers.proto"`)
	a, err := snap.Marshal()
	require.NoError(t, err)
	again, err := contracts.Take(reg)
	require.NoError(t, err)
	b, err := again.Marshal()
	require.NoError(t, err)
	assert.Equal(t, string(a), string(b), "deterministic")
}
