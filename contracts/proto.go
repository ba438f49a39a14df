package contracts

import (
	"encoding/json"
	"fmt"
	"reflect"
	"sort"
	"strconv"
	"strings"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/descriptorpb"
)

// ProtoSchema is the schema of a protobuf event: its message and the
// descriptors that define it.
type ProtoSchema struct {
	// Message is the full name of the message, e.g. "shop.v1.OrderPlaced".
	Message string `json:"message"`
	// Descriptor is a google.protobuf.FileDescriptorSet in its protojson
	// form: the file that defines Message and every file it imports.
	Descriptor json.RawMessage `json:"descriptor"`
}

// protoSchemaOf returns the ProtoSchema of t, whose pointer is a
// proto.Message.
func protoSchemaOf(t reflect.Type) (*ProtoSchema, error) {
	m, ok := reflect.New(t).Interface().(proto.Message)
	if !ok {
		return nil, fmt.Errorf("*%s is not a proto.Message", t)
	}
	md := m.ProtoReflect().Descriptor()
	set := &descriptorpb.FileDescriptorSet{}
	seen := map[string]bool{}
	var add func(fd protoreflect.FileDescriptor)
	add = func(fd protoreflect.FileDescriptor) {
		if seen[fd.Path()] {
			return
		}
		seen[fd.Path()] = true
		imports := fd.Imports()
		for i := 0; i < imports.Len(); i++ {
			add(imports.Get(i).FileDescriptor)
		}
		set.File = append(set.File, protodesc.ToFileDescriptorProto(fd))
	}
	add(md.ParentFile())
	raw, err := protojson.MarshalOptions{}.Marshal(set)
	if err != nil {
		return nil, err
	}
	// protojson varies its spacing on purpose; a snapshot must not.
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		return nil, err
	}
	raw, err = json.Marshal(v)
	if err != nil {
		return nil, err
	}
	return &ProtoSchema{Message: string(md.FullName()), Descriptor: raw}, nil
}

// message resolves the message of a ProtoSchema from its descriptors.
func (p *ProtoSchema) message() (protoreflect.MessageDescriptor, error) {
	set := &descriptorpb.FileDescriptorSet{}
	if err := protojson.Unmarshal(p.Descriptor, set); err != nil {
		return nil, fmt.Errorf("protobuf descriptor: %w", err)
	}
	files, err := protodesc.NewFiles(set)
	if err != nil {
		return nil, fmt.Errorf("protobuf descriptor: %w", err)
	}
	d, err := files.FindDescriptorByName(protoreflect.FullName(p.Message))
	if err != nil {
		return nil, fmt.Errorf("protobuf descriptor: message %s: %w", p.Message, err)
	}
	md, ok := d.(protoreflect.MessageDescriptor)
	if !ok {
		return nil, fmt.Errorf("protobuf descriptor: %s is not a message", p.Message)
	}
	return md, nil
}

// protoCompareSchema turns a message into the JSON-Schema-like form the
// compatibility rules compare: an object whose properties are its field
// numbers (what the binary wire carries; names are titles, so a rename that
// keeps the number is safe), repeated fields arrays, maps objects, enums
// integers with their numbers as the enum, proto2 required fields required.
func protoCompareSchema(md protoreflect.MessageDescriptor) map[string]any {
	defs := map[string]any{}
	root := protoMessageSchema(md, defs)
	root["$defs"] = defs
	root["x-protobuf"] = true
	return root
}

func protoMessageSchema(md protoreflect.MessageDescriptor, defs map[string]any) map[string]any {
	props := map[string]any{}
	var required []any
	fields := md.Fields()
	for i := 0; i < fields.Len(); i++ {
		fd := fields.Get(i)
		key := strconv.Itoa(int(fd.Number()))
		props[key] = protoFieldSchema(fd, defs)
		if fd.Cardinality() == protoreflect.Required {
			required = append(required, key)
		}
	}
	s := map[string]any{"type": "object", "properties": props}
	if required != nil {
		s["required"] = required
	}
	return s
}

func protoFieldSchema(fd protoreflect.FieldDescriptor, defs map[string]any) map[string]any {
	if fd.IsMap() {
		return map[string]any{"title": string(fd.Name()), "type": "object",
			"additionalProperties": protoValueSchema(fd.MapValue(), defs)}
	}
	s := protoValueSchema(fd, defs)
	if fd.IsList() {
		s = map[string]any{"type": "array", "items": s}
	}
	s["title"] = string(fd.Name())
	return s
}

func protoValueSchema(fd protoreflect.FieldDescriptor, defs map[string]any) map[string]any {
	switch fd.Kind() {
	case protoreflect.MessageKind, protoreflect.GroupKind:
		md := fd.Message()
		name := string(md.FullName())
		if _, ok := defs[name]; !ok {
			defs[name] = nil // a recursive message refers to itself
			defs[name] = protoMessageSchema(md, defs)
		}
		return map[string]any{"$ref": "#/$defs/" + name}
	case protoreflect.EnumKind:
		vals := fd.Enum().Values()
		enum := make([]any, 0, vals.Len())
		for i := 0; i < vals.Len(); i++ {
			enum = append(enum, float64(vals.Get(i).Number()))
		}
		return map[string]any{"type": "enum " + string(fd.Enum().FullName()), "enum": enum}
	}
	return map[string]any{"type": fd.Kind().String()}
}

// protoText renders the message of p and the messages and enums it uses
// in .proto syntax, for the AsyncAPI document.
func protoText(p *ProtoSchema) (string, string, error) {
	md, err := p.message()
	if err != nil {
		return "", "", err
	}
	var b strings.Builder
	syntax := md.ParentFile().Syntax().String()
	fmt.Fprintf(&b, "syntax = %q;\n", syntax)
	if pkg := md.ParentFile().Package(); pkg != "" {
		fmt.Fprintf(&b, "package %s;\n", pkg)
	}
	done := map[protoreflect.FullName]bool{}
	queue := []protoreflect.Descriptor{md}
	var decls []protoreflect.Descriptor
	for len(queue) > 0 {
		d := queue[0]
		queue = queue[1:]
		if done[d.FullName()] {
			continue
		}
		done[d.FullName()] = true
		decls = append(decls, d)
		if m, ok := d.(protoreflect.MessageDescriptor); ok {
			fs := m.Fields()
			for i := 0; i < fs.Len(); i++ {
				f := fs.Get(i)
				if f.IsMap() {
					f = f.MapValue()
				}
				if f.Message() != nil {
					queue = append(queue, f.Message())
				}
				if f.Enum() != nil {
					queue = append(queue, f.Enum())
				}
			}
		}
	}
	sort.SliceStable(decls[1:], func(i, j int) bool { return decls[1+i].FullName() < decls[1+j].FullName() })
	for _, d := range decls {
		b.WriteString("\n")
		switch d := d.(type) {
		case protoreflect.MessageDescriptor:
			fmt.Fprintf(&b, "message %s {\n", protoLocalName(d, md))
			fs := d.Fields()
			for i := 0; i < fs.Len(); i++ {
				f := fs.Get(i)
				fmt.Fprintf(&b, "  %s%s %s = %d;\n", protoLabel(f), protoTypeName(f, md), f.Name(), f.Number())
			}
			b.WriteString("}\n")
		case protoreflect.EnumDescriptor:
			fmt.Fprintf(&b, "enum %s {\n", protoLocalName(d, md))
			vs := d.Values()
			for i := 0; i < vs.Len(); i++ {
				fmt.Fprintf(&b, "  %s = %d;\n", vs.Get(i).Name(), vs.Get(i).Number())
			}
			b.WriteString("}\n")
		}
	}
	version := "3"
	if syntax == "proto2" {
		version = "2"
	}
	return b.String(), version, nil
}

func protoLabel(f protoreflect.FieldDescriptor) string {
	switch {
	case f.IsMap():
		return ""
	case f.IsList():
		return "repeated "
	case f.Cardinality() == protoreflect.Required:
		return "required "
	case f.HasPresence() && f.ContainingOneof() == nil && f.Kind() != protoreflect.MessageKind:
		return "optional "
	}
	return ""
}

func protoTypeName(f protoreflect.FieldDescriptor, root protoreflect.MessageDescriptor) string {
	if f.IsMap() {
		return fmt.Sprintf("map<%s, %s>", protoTypeName(f.MapKey(), root), protoTypeName(f.MapValue(), root))
	}
	switch {
	case f.Message() != nil:
		return protoLocalName(f.Message(), root)
	case f.Enum() != nil:
		return protoLocalName(f.Enum(), root)
	}
	return f.Kind().String()
}

// protoLocalName is the name of d as written in root's file: relative to
// its package when it is the same, else fully qualified.
func protoLocalName(d protoreflect.Descriptor, root protoreflect.MessageDescriptor) string {
	pkg := string(root.ParentFile().Package())
	name := string(d.FullName())
	if pkg != "" && strings.HasPrefix(name, pkg+".") && d.ParentFile().Package() == root.ParentFile().Package() {
		return strings.ReplaceAll(name[len(pkg)+1:], ".", "_")
	}
	return "." + name
}
