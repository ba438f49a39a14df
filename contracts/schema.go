package contracts

import (
	"encoding/json"
	"fmt"
	"reflect"
	"regexp"
	"strings"

	"github.com/invopop/jsonschema"
)

// JSONSchemaDialect is the JSON Schema dialect of the schemas Take derives
// from Go types ($schema).
const JSONSchemaDialect = "https://json-schema.org/draft/2020-12/schema"

// JSONSchemaOf returns the JSON Schema of the JSON encoding of values of t
// (a struct, or a pointer to one), derived by github.com/invopop/jsonschema
// from the type and its tags, the way encoding/json writes it:
//
//   - property names from json tags; "-" and unexported fields left out;
//     embedded structs flattened;
//   - a field is required unless its json tag says omitempty or omitzero
//     (or its jsonschema tag says required);
//   - a slice, map or pointer field may be null: encoding/json writes nil
//     as null (unless omitempty) and reads null into it;
//   - jsonschema tags add enums (jsonschema:"enum=paid,enum=failed"),
//     formats (format=email), bounds, patterns, descriptions; time.Time is a
//     date-time string, []byte a base64 string;
//   - unknown properties are allowed: encoding/json ignores them, so a
//     consumer tolerates a field added by a newer producer.
//
// Named types are in $defs (collisions of names from different packages are
// told apart by package path), referenced with "#/$defs/Name"; the root is
// the event's own object. A type implementing invopop's JSONSchema() or
// JSONSchemaExtend methods describes itself. It returns an error for a type
// that has no JSON form (a func, chan or complex field).
func JSONSchemaOf(t reflect.Type) (schema json.RawMessage, err error) {
	for t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t == nil {
		return nil, fmt.Errorf("contracts: JSON Schema of a nil type")
	}
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("contracts: JSON Schema of %s: %v", t, p)
		}
	}()
	names := newDefNames()
	r := &jsonschema.Reflector{
		Anonymous:                 true,
		AllowAdditionalProperties: true,
		Namer:                     names.name,
	}
	s := r.ReflectFromType(t)
	markNullable(s, t, s.Definitions, names, map[reflect.Type]bool{})
	raw, err := json.Marshal(s)
	if err != nil {
		return nil, fmt.Errorf("contracts: JSON Schema of %s: %w", t, err)
	}
	var doc map[string]any
	if err := json.Unmarshal(raw, &doc); err != nil {
		return nil, fmt.Errorf("contracts: JSON Schema of %s: %w", t, err)
	}
	inlineRoot(doc, raw)
	doc["$schema"] = JSONSchemaDialect
	return json.Marshal(doc)
}

// defNames names $defs entries: the Go type name, made safe for a JSON
// pointer and an AsyncAPI component key, qualified by package path when
// another type took the name first.
type defNames struct {
	byName map[string]reflect.Type
	byType map[reflect.Type]string
}

func newDefNames() *defNames {
	return &defNames{byName: map[string]reflect.Type{}, byType: map[reflect.Type]string{}}
}

var unsafeDefChars = regexp.MustCompile(`[^A-Za-z0-9_.-]+`)

func (d *defNames) name(t reflect.Type) string {
	if n, ok := d.byType[t]; ok {
		return n
	}
	if t.Name() == "" {
		return ""
	}
	n := unsafeDefChars.ReplaceAllString(t.Name(), "_")
	if prev, taken := d.byName[n]; taken && prev != t {
		n = unsafeDefChars.ReplaceAllString(t.PkgPath(), "_") + "." + n
		for i := 2; d.byName[n] != nil; i++ {
			n = fmt.Sprintf("%s_%d", strings.TrimRight(n, "_0123456789"), i)
		}
	}
	d.byName[n] = t
	d.byType[t] = n
	return n
}

// markNullable makes the properties that encoding/json may write as null
// and reads null into (slice, map and pointer fields) accept null,
// walking schema s of type t and the definitions it references.
func markNullable(s *jsonschema.Schema, t reflect.Type, defs jsonschema.Definitions, names *defNames, seen map[reflect.Type]bool) {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if s == nil {
		return
	}
	if name, ok := strings.CutPrefix(s.Ref, "#/$defs/"); ok {
		if seen[t] {
			return
		}
		seen[t] = true
		s = defs[name]
		if s == nil {
			return
		}
	}
	switch t.Kind() {
	case reflect.Struct:
		if s.Properties == nil {
			return
		}
		for _, f := range jsonFields(t) {
			p, ok := s.Properties.Get(f.name)
			if !ok || p == nil {
				continue
			}
			markNullable(p, f.typ, defs, names, seen)
			switch f.typ.Kind() {
			case reflect.Slice, reflect.Map, reflect.Pointer:
				if !acceptsNull(p) {
					s.Properties.Set(f.name, &jsonschema.Schema{AnyOf: []*jsonschema.Schema{p, {Type: "null"}}})
				}
			}
		}
	case reflect.Slice, reflect.Array:
		markNullable(s.Items, t.Elem(), defs, names, seen)
	case reflect.Map:
		markNullable(s.AdditionalProperties, t.Elem(), defs, names, seen)
	}
}

// acceptsNull reports whether s already accepts null (an interface field's
// empty schema, a nullable tag).
func acceptsNull(s *jsonschema.Schema) bool {
	if s.Type == "" && s.Ref == "" && s.AnyOf == nil && s.OneOf == nil && s.AllOf == nil && s.Enum == nil && s.Const == nil && s.Not == nil {
		return s.Properties == nil && s.Items == nil
	}
	for _, alt := range append(append([]*jsonschema.Schema{}, s.AnyOf...), s.OneOf...) {
		if alt != nil && alt.Type == "null" {
			return true
		}
	}
	return s.Type == "null"
}

// jsonField is a struct field as encoding/json names it.
type jsonField struct {
	name string
	typ  reflect.Type
}

// jsonFields lists the fields of struct t as encoding/json (and invopop)
// name them, embedded structs flattened.
func jsonFields(t reflect.Type) []jsonField {
	var out []jsonField
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag := strings.Split(f.Tag.Get("json"), ",")
		if tag[0] == "-" || strings.Split(f.Tag.Get("jsonschema"), ",")[0] == "-" {
			continue
		}
		if f.Anonymous && tag[0] == "" {
			et := f.Type
			if et.Kind() == reflect.Pointer {
				et = et.Elem()
			}
			if et.Kind() == reflect.Struct {
				out = append(out, jsonFields(et)...)
				continue
			}
		}
		if !f.Anonymous && f.PkgPath != "" {
			continue
		}
		name := f.Name
		if tag[0] != "" {
			name = tag[0]
		}
		out = append(out, jsonField{name: name, typ: f.Type})
	}
	return out
}

// inlineRoot replaces a root that only references its own definition with
// that definition, when nothing else references it (a recursive type keeps
// its reference).
func inlineRoot(doc map[string]any, raw []byte) {
	ref, _ := doc["$ref"].(string)
	name, ok := strings.CutPrefix(ref, "#/$defs/")
	if !ok {
		return
	}
	defs, _ := doc["$defs"].(map[string]any)
	def, _ := defs[name].(map[string]any)
	if def == nil {
		return
	}
	quoted, _ := json.Marshal(ref)
	if strings.Count(string(raw), string(quoted)) != 1 {
		return
	}
	delete(doc, "$ref")
	delete(defs, name)
	for k, v := range def {
		doc[k] = v
	}
	if len(defs) == 0 {
		delete(doc, "$defs")
	}
}
