package contracts

import (
	"encoding/json"
	"fmt"
	"math"
	"sort"
	"strings"
)

// This file compares two schemas: can a reader on schema R read every
// payload a writer on schema W may write? Backward compatibility is
// readable(new, old), forward readable(old, new). Schemas are JSON Schema
// documents (as JSONSchemaOf writes them, or any draft-07/2020-12 schema
// using the keywords below); protobuf messages are compared in the same form
// (protoCompareSchema). Keywords it does not model (allOf, oneOf other than
// "X or null", not, if/then/else, patternProperties, …) must be equal.

// issueKind is what a reader/writer comparison found, independent of which
// side is new.
type issueKind int

const (
	issueMissing        issueKind = iota // reader requires a property the writer lacks
	issueOptional                        // reader requires a property the writer may omit
	issueType                            // writer may write a type the reader does not accept
	issueEnumValue                       // writer may write an enum value the reader does not accept
	issueEnumRestricted                  // reader has an enum, writer none
	issueFormat                          // reader requires a format the writer does not promise
	issueConstraint                      // reader's bound or pattern is tighter
	issueClosed                          // reader rejects a property the writer writes
	issueRenamed                         // a property of the writer looks renamed in the reader
	issueOther                           // keywords the comparison does not model differ
)

type issue struct {
	kind issueKind
	path string // of the property, e.g. "items[].sku"
	// reader and writer sides of what differs: type names, enum value,
	// keyword values, or for issueRenamed the reader's and writer's names.
	r, w string
}

// schemaDoc is one schema document, for resolving its references.
type schemaDoc struct{ root any }

type node struct {
	v   any
	doc *schemaDoc
}

// resolve follows $ref (a JSON pointer into the document) until a schema
// without one; an unresolvable reference is the empty schema.
func (n node) resolve() (node, string) {
	ref := ""
	for i := 0; i < 64; i++ {
		m, ok := n.v.(map[string]any)
		if !ok {
			return n, ref
		}
		r, ok := m["$ref"].(string)
		if !ok {
			return n, ref
		}
		ref = r
		n = node{v: pointer(n.doc.root, r), doc: n.doc}
	}
	return node{v: true, doc: n.doc}, ref
}

func pointer(root any, ref string) any {
	frag, ok := strings.CutPrefix(ref, "#")
	if !ok {
		return true // external: not followed
	}
	cur := root
	if frag == "" {
		return cur
	}
	for _, tok := range strings.Split(strings.TrimPrefix(frag, "/"), "/") {
		tok = strings.ReplaceAll(strings.ReplaceAll(tok, "~1", "/"), "~0", "~")
		m, ok := cur.(map[string]any)
		if !ok {
			return true
		}
		cur, ok = m[tok]
		if !ok {
			return true
		}
	}
	return cur
}

// view is what the comparison reads of one (resolved) schema.
type view struct {
	never    bool            // the false schema
	anyType  bool            // no "type"
	types    map[string]bool // JSON types (protobuf kinds for protobuf)
	enum     map[string]string
	hasEnum  bool
	format   string
	props    map[string]node
	required map[string]bool
	closed   bool  // additionalProperties: false
	addl     *node // additionalProperties as a schema
	items    *node
	bounds   map[string]any
	other    string // canonical JSON of the keywords not modelled
	title    string
}

var modelled = map[string]bool{
	"type": true, "enum": true, "const": true, "format": true, "properties": true, "required": true,
	"additionalProperties": true, "items": true, "title": true, "description": true, "$schema": true,
	"$id": true, "$defs": true, "definitions": true, "$comment": true, "examples": true, "default": true,
	"deprecated": true, "readOnly": true, "writeOnly": true, "contentEncoding": true, "contentMediaType": true,
	"x-protobuf": true, "$anchor": true,
}

var boundKeywords = []string{"minimum", "exclusiveMinimum", "minLength", "minItems", "minProperties",
	"maximum", "exclusiveMaximum", "maxLength", "maxItems", "maxProperties", "pattern", "multipleOf", "uniqueItems"}

func init() {
	for _, k := range boundKeywords {
		modelled[k] = true
	}
}

func viewOf(n node) view {
	n, _ = n.resolve()
	switch v := n.v.(type) {
	case bool:
		if v {
			return view{anyType: true}
		}
		return view{never: true}
	case map[string]any:
		// "X or null", as JSONSchemaOf writes a nullable field.
		for _, kw := range []string{"anyOf", "oneOf"} {
			alts, ok := v[kw].([]any)
			if !ok || len(alts) != 2 || len(v) != 1 && !onlyAnnotations(v, kw) {
				continue
			}
			for i, alt := range alts {
				if isNullSchema(alt) {
					inner := viewOf(node{v: alts[1-i], doc: n.doc})
					if !inner.anyType {
						inner.types["null"] = true
					}
					if inner.title == "" {
						inner.title, _ = v["title"].(string)
					}
					return inner
				}
			}
		}
		return objectView(v, n.doc)
	}
	return view{anyType: true}
}

func onlyAnnotations(m map[string]any, except string) bool {
	for k := range m {
		if k != except && k != "title" && k != "description" {
			return false
		}
	}
	return true
}

func isNullSchema(v any) bool {
	m, ok := v.(map[string]any)
	return ok && len(m) == 1 && m["type"] == "null"
}

func objectView(m map[string]any, doc *schemaDoc) view {
	vw := view{types: map[string]bool{}, bounds: map[string]any{}}
	switch t := m["type"].(type) {
	case string:
		vw.types[t] = true
	case []any:
		for _, x := range t {
			if s, ok := x.(string); ok {
				vw.types[s] = true
			}
		}
	default:
		vw.anyType = true
	}
	if e, ok := m["enum"].([]any); ok {
		vw.hasEnum = true
		vw.enum = map[string]string{}
		for _, x := range e {
			vw.enum[canonical(x)] = display(x)
		}
	}
	if c, ok := m["const"]; ok {
		vw.hasEnum = true
		vw.enum = map[string]string{canonical(c): display(c)}
	}
	vw.format, _ = m["format"].(string)
	vw.title, _ = m["title"].(string)
	if p, ok := m["properties"].(map[string]any); ok {
		vw.props = map[string]node{}
		for k, s := range p {
			vw.props[k] = node{v: s, doc: doc}
		}
	}
	vw.required = map[string]bool{}
	if r, ok := m["required"].([]any); ok {
		for _, x := range r {
			if s, ok := x.(string); ok {
				vw.required[s] = true
			}
		}
	}
	switch a := m["additionalProperties"].(type) {
	case bool:
		vw.closed = !a
	case map[string]any:
		vw.addl = &node{v: a, doc: doc}
	}
	if it, ok := m["items"]; ok {
		if _, isList := it.([]any); isList {
			vw.bounds["items"] = it // a draft-07 tuple: compared as is
		} else {
			vw.items = &node{v: it, doc: doc}
		}
	}
	for _, k := range boundKeywords {
		if b, ok := m[k]; ok {
			vw.bounds[k] = b
		}
	}
	other := map[string]any{}
	for k, x := range m {
		if !modelled[k] && !strings.HasPrefix(k, "x-") {
			other[k] = x
		}
	}
	if len(other) > 0 {
		vw.other = canonical(other)
	}
	return vw
}

func display(v any) string {
	if s, ok := v.(string); ok {
		return fmt.Sprintf("%q", s)
	}
	return canonical(v)
}

// comparer collects the issues of readable.
type comparer struct {
	proto  bool // protobuf: properties are field numbers; no rename guessing
	seen   map[string]bool
	issues []issue
}

func readable(r, w node, proto bool) []issue {
	c := &comparer{proto: proto, seen: map[string]bool{}}
	c.cmp(r, w, "")
	return c.issues
}

func (c *comparer) add(kind issueKind, path, r, w string) {
	c.issues = append(c.issues, issue{kind: kind, path: path, r: r, w: w})
}

func (c *comparer) cmp(rn, wn node, path string) {
	rr, rref := rn.resolve()
	wr, wref := wn.resolve()
	if rref != "" || wref != "" {
		key := rref + "\x00" + wref
		if c.seen[key] {
			return
		}
		c.seen[key] = true
	}
	R, W := viewOf(rr), viewOf(wr)
	if W.never || R.anyType && !R.hasEnum && R.format == "" && R.props == nil && R.items == nil &&
		R.addl == nil && !R.closed && len(R.bounds) == 0 && R.other == "" && len(R.required) == 0 {
		return
	}
	if R.never {
		c.add(issueType, path, "nothing", typeList(W))
		return
	}
	if !R.anyType {
		if W.anyType {
			c.add(issueType, path, typeList(R), "any type")
			return
		}
		for t := range W.types {
			if !R.types[t] && (t != "integer" || !R.types["number"]) {
				c.add(issueType, path, typeList(R), typeList(W))
				return
			}
		}
	}
	if R.hasEnum {
		if !W.hasEnum {
			c.add(issueEnumRestricted, path, enumList(R), "")
		} else {
			var missing []string
			for k, d := range W.enum {
				if _, ok := R.enum[k]; !ok {
					missing = append(missing, d)
				}
			}
			sort.Strings(missing)
			for _, d := range missing {
				c.add(issueEnumValue, path, enumList(R), d)
			}
		}
	}
	if R.format != "" && R.format != W.format {
		c.add(issueFormat, path, R.format, orNone(W.format))
	}
	c.bounds(R, W, path)
	if R.other != W.other {
		c.add(issueOther, path, R.other, W.other)
	}
	c.object(R, W, path)
	if R.items != nil {
		wi := node{v: true}
		if W.items != nil {
			wi = *W.items
		}
		c.cmp(*R.items, wi, path+"[]")
	}
}

func (c *comparer) bounds(R, W view, path string) {
	for _, k := range boundKeywords {
		rv, ok := R.bounds[k]
		if !ok || rv == false {
			continue
		}
		wv, wok := W.bounds[k]
		tighter := !wok
		if wok {
			rf, rnum := rv.(float64)
			wf, wnum := wv.(float64)
			switch {
			case rnum && wnum && strings.HasPrefix(k, "min") || k == "exclusiveMinimum" && rnum && wnum:
				tighter = rf > wf
			case rnum && wnum && strings.HasPrefix(k, "max") || k == "exclusiveMaximum" && rnum && wnum:
				tighter = rf < wf
			case k == "multipleOf" && rnum && wnum:
				q := wf / rf
				tighter = math.Abs(q-math.Round(q)) > 1e-9
			default:
				tighter = canonical(rv) != canonical(wv)
			}
		}
		if tighter {
			wd := "none"
			if wok {
				wd = canonical(wv)
			}
			c.add(issueConstraint, path, k+" "+canonical(rv), k+" "+wd)
		}
	}
	if v, ok := R.bounds["items"]; ok && canonical(v) != canonical(W.bounds["items"]) {
		c.add(issueOther, path, "items "+canonical(v), "items "+canonical(W.bounds["items"]))
	}
}

func (c *comparer) object(R, W view, path string) {
	if R.props == nil && W.props == nil && !R.closed && len(R.required) == 0 {
		if R.addl != nil && W.addl != nil {
			c.cmp(*R.addl, *W.addl, path+".*")
		}
		return
	}
	var rOnly, wOnly, both []string
	for k := range R.props {
		if _, ok := W.props[k]; ok {
			both = append(both, k)
		} else {
			rOnly = append(rOnly, k)
		}
	}
	for k := range W.props {
		if _, ok := R.props[k]; !ok {
			wOnly = append(wOnly, k)
		}
	}
	sort.Strings(rOnly)
	sort.Strings(wOnly)
	sort.Strings(both)
	renamedR := map[string]bool{}
	renamedW := map[string]bool{}
	if !c.proto {
		for _, rk := range rOnly {
			for _, wk := range wOnly {
				if !renamedW[wk] && shapeKey(R.props[rk], 8) == shapeKey(W.props[wk], 8) {
					renamedR[rk], renamedW[wk] = true, true
					c.add(issueRenamed, join(path, rk), rk, wk)
					break
				}
			}
		}
	}
	// Required properties the writer lacks or may omit.
	var req []string
	for k := range R.required {
		req = append(req, k)
	}
	sort.Strings(req)
	for _, k := range req {
		if renamedR[k] {
			continue
		}
		if _, ok := W.props[k]; !ok && !W.required[k] {
			c.add(issueMissing, c.label(path, k, R, W), "", "")
		} else if !W.required[k] {
			c.add(issueOptional, c.label(path, k, R, W), "", "")
		}
	}
	for _, k := range wOnly {
		if renamedW[k] {
			continue
		}
		switch {
		case R.closed:
			c.add(issueClosed, c.label(path, k, R, W), "", "")
		case R.addl != nil:
			c.cmp(*R.addl, W.props[k], c.label(path, k, R, W))
		}
	}
	for _, k := range both {
		c.cmp(R.props[k], W.props[k], c.label(path, k, R, W))
	}
	if R.addl != nil && W.addl != nil {
		c.cmp(*R.addl, *W.addl, path+".*")
	}
}

// label is the path of property k: its name, or for protobuf its name and
// field number.
func (c *comparer) label(path, k string, R, W view) string {
	if !c.proto {
		return join(path, k)
	}
	name := ""
	for _, v := range []view{R, W} {
		if n, ok := v.props[k]; ok && name == "" {
			name = viewOf(n).title
		}
	}
	return join(path, fmt.Sprintf("%s (#%s)", name, k))
}

func join(path, k string) string {
	if path == "" {
		return k
	}
	return path + "." + k
}

// shapeKey is a canonical form of a schema, references resolved to depth,
// annotations dropped: two properties of equal shape look like a rename.
func shapeKey(n node, depth int) string {
	n, ref := n.resolve()
	if depth == 0 {
		return "ref:" + ref
	}
	var strip func(v any, d int) any
	strip = func(v any, d int) any {
		switch x := v.(type) {
		case map[string]any:
			if r, ok := x["$ref"].(string); ok {
				if d == 0 {
					return "ref:" + r
				}
				rn, _ := node{v: x, doc: n.doc}.resolve()
				return strip(rn.v, d-1)
			}
			out := map[string]any{}
			for k, e := range x {
				if k == "title" || k == "description" || k == "$comment" || k == "examples" {
					continue
				}
				out[k] = strip(e, d)
			}
			return out
		case []any:
			out := make([]any, len(x))
			for i, e := range x {
				out[i] = strip(e, d)
			}
			return out
		}
		return v
	}
	return canonical(strip(n.v, depth))
}

func typeList(v view) string {
	if v.anyType {
		return "any type"
	}
	var ts []string
	for t := range v.types {
		ts = append(ts, t)
	}
	sort.Strings(ts)
	return strings.Join(ts, " or ")
}

func enumList(v view) string {
	var ds []string
	for _, d := range v.enum {
		ds = append(ds, d)
	}
	sort.Strings(ds)
	return "[" + strings.Join(ds, ", ") + "]"
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

// schemaNode returns the comparable root of a recorded schema.
func schemaNode(s Schema) (node, bool, error) {
	if s.Protobuf != nil {
		md, err := s.Protobuf.message()
		if err != nil {
			return node{}, true, err
		}
		root := protoCompareSchema(md)
		return node{v: root, doc: &schemaDoc{root: root}}, true, nil
	}
	var v any
	if err := json.Unmarshal(s.JSONSchema, &v); err != nil {
		return node{}, false, fmt.Errorf("json_schema: %w", err)
	}
	return node{v: v, doc: &schemaDoc{root: v}}, false, nil
}
