package contracts

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"sort"
	"strings"
	"unicode/utf8"

	"github.com/b2131a45/eventkit/events"
)

// SnapshotFormat is the format version of the snapshots this package writes
// and the newest it reads.
const SnapshotFormat = 1

// Snapshot is the contracts of a set of events at one time: per event its
// name, Go type, content type, current version, upcasters and the history of
// its schemas, and the wiring of the services. Take takes the one of a
// registry; a committed snapshot file (ReadSnapshotFile) is what Check
// compares it with, and Update is how it is kept. It is JSON, with a format
// version.
type Snapshot struct {
	// Format is SnapshotFormat when written.
	Format int `json:"format"`
	// Events, sorted by name.
	Events []Event `json:"events"`
	// Services is the wiring, sorted by name; empty when none was given.
	Services []Service `json:"services,omitempty"`
}

// Event is the contract of one event.
type Event struct {
	// Name is the stable event name.
	Name string `json:"name"`
	// Type is the Go type registered, "import/path.Name".
	Type string `json:"type"`
	// ContentType is the media type of its codec.
	ContentType string `json:"content_type"`
	// Version is the current version.
	Version int `json:"version"`
	// Upcasters are the versions an upcaster starts from, sorted.
	Upcasters []int `json:"upcasters"`
	// Schemas is the history of the event's schema, oldest first: each
	// version's schema, and each change of it made within a version. The
	// last one is the current version's. Take records only the current.
	Schemas []Schema `json:"schemas"`
}

// Schema is the payload schema of one version of an event: a JSON Schema,
// or for a protobuf event its descriptor.
type Schema struct {
	Version int `json:"version"`
	// JSONSchema is the JSON Schema (JSONSchemaOf) of a JSON event.
	JSONSchema json.RawMessage `json:"json_schema,omitempty"`
	// Protobuf is the message of a protobuf event.
	Protobuf *ProtoSchema `json:"protobuf,omitempty"`
}

// Current returns the schema of the current version: the last of Schemas.
func (e *Event) Current() Schema {
	if len(e.Schemas) == 0 {
		return Schema{Version: e.Version}
	}
	return e.Schemas[len(e.Schemas)-1]
}

// Event returns the contract of the event named name.
func (s *Snapshot) Event(name string) (*Event, bool) {
	for i := range s.Events {
		if s.Events[i].Name == name {
			return &s.Events[i], true
		}
	}
	return nil, false
}

// Take returns the contracts of reg: every registered event with the schema
// of its current version (JSONSchemaOf its Go type; for an
// application/protobuf event the descriptor of its message), and the wiring
// of services. It fails if a type has no schema or a service is invalid
// (see Service): it publishes or consumes an event reg lacks, or two
// services share a name.
func Take(reg *events.Registry, services ...Service) (*Snapshot, error) {
	if reg == nil {
		return nil, errors.New("contracts: registry is nil")
	}
	snap := &Snapshot{Format: SnapshotFormat}
	for _, r := range reg.Registrations() {
		ev := Event{Name: r.Name, Type: typeName(r.Type), ContentType: r.ContentType, Version: r.Version, Upcasters: r.Upcasters}
		sch := Schema{Version: r.Version}
		if isProtobuf(r.ContentType) {
			p, err := protoSchemaOf(r.Type)
			if err != nil {
				return nil, fmt.Errorf("contracts: %s: %w", r.Name, err)
			}
			sch.Protobuf = p
		} else {
			js, err := JSONSchemaOf(r.Type)
			if err != nil {
				return nil, fmt.Errorf("contracts: %s: %w", r.Name, err)
			}
			sch.JSONSchema = js
		}
		ev.Schemas = []Schema{sch}
		snap.Events = append(snap.Events, ev)
	}
	var err error
	snap.Services, err = normalizeServices(services, func(name string) bool { _, ok := snap.Event(name); return ok })
	if err != nil {
		return nil, err
	}
	return snap, nil
}

func normalizeServices(services []Service, known func(string) bool) ([]Service, error) {
	var out []Service
	seen := map[string]bool{}
	for _, s := range services {
		n, err := s.normalize(known)
		if err != nil {
			return nil, err
		}
		if seen[n.Name] {
			return nil, fmt.Errorf("contracts: two services named %q", n.Name)
		}
		seen[n.Name] = true
		out = append(out, n)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

func typeName(t reflect.Type) string {
	if t.PkgPath() == "" {
		return t.String()
	}
	return t.PkgPath() + "." + t.Name()
}

// shortTypeName is the type name without its import path and type
// arguments.
func shortTypeName(s string) string {
	if i := strings.Index(s, "["); i >= 0 {
		s = s[:i] // a generic type: its instantiation is the schema's business
	}
	if i := strings.LastIndex(s, "/"); i >= 0 {
		s = s[i+1:]
	}
	if i := strings.Index(s, "."); i >= 0 {
		return s[i+1:]
	}
	return s
}

func isProtobuf(contentType string) bool {
	return strings.HasPrefix(strings.ToLower(strings.TrimSpace(contentType)), "application/protobuf") ||
		strings.HasPrefix(strings.ToLower(strings.TrimSpace(contentType)), "application/x-protobuf")
}

// Errors of reading a snapshot, wrapped in a *SnapshotError.
var (
	// ErrNotJSON: the snapshot is not valid JSON.
	ErrNotJSON = errors.New("not valid JSON")
	// ErrNewerFormat: the snapshot's format is newer than SnapshotFormat.
	ErrNewerFormat = errors.New("format is newer than this eventkit reads")
	// ErrInvalidSnapshot: the snapshot is JSON but not a valid snapshot.
	ErrInvalidSnapshot = errors.New("not a valid contracts snapshot")
	// ErrUnknownEvent (from Check): the snapshot names an event the
	// registry lacks.
	ErrUnknownEvent = errors.New("names an event the registry lacks")
)

// SnapshotError reports a snapshot that cannot be read or used: it wraps
// ErrNotJSON, ErrNewerFormat, ErrInvalidSnapshot, ErrUnknownEvent or the
// error of reading the file.
type SnapshotError struct {
	// Path of the file, or "" when read from a reader.
	Path string
	Err  error
}

func (e *SnapshotError) Error() string {
	if e.Path == "" {
		return "contracts: snapshot: " + e.Err.Error()
	}
	return fmt.Sprintf("contracts: snapshot %s: %v", e.Path, e.Err)
}

func (e *SnapshotError) Unwrap() error { return e.Err }

// ReadSnapshot decodes a snapshot. It returns a *SnapshotError wrapping
// ErrNotJSON (with the line and column), ErrNewerFormat, or
// ErrInvalidSnapshot (a field missing or out of range, a schema that is not
// a JSON object, an event twice).
func ReadSnapshot(r io.Reader) (*Snapshot, error) {
	data, err := io.ReadAll(r)
	if err != nil {
		return nil, &SnapshotError{Err: err}
	}
	snap, err := parseSnapshot(data)
	if err != nil {
		return nil, &SnapshotError{Err: err}
	}
	return snap, nil
}

// ReadSnapshotFile reads the snapshot at path: ReadSnapshot's errors, with
// the path; a missing file wraps fs.ErrNotExist.
func ReadSnapshotFile(path string) (*Snapshot, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, &SnapshotError{Path: path, Err: err}
	}
	snap, err := parseSnapshot(data)
	if err != nil {
		return nil, &SnapshotError{Path: path, Err: err}
	}
	return snap, nil
}

func parseSnapshot(data []byte) (*Snapshot, error) {
	if !utf8.Valid(data) {
		return nil, fmt.Errorf("%w: not valid UTF-8, as JSON must be", ErrNotJSON)
	}
	if !json.Valid(data) {
		var v any
		err := json.Unmarshal(data, &v)
		var se *json.SyntaxError
		if errors.As(err, &se) {
			line, col := position(data, se.Offset)
			return nil, fmt.Errorf("%w: line %d, column %d: %v", ErrNotJSON, line, col, se)
		}
		if err == nil {
			err = errors.New("invalid")
		}
		return nil, fmt.Errorf("%w: %v", ErrNotJSON, err)
	}
	var head struct {
		Format *json.RawMessage `json:"format"`
	}
	if err := json.Unmarshal(data, &head); err != nil {
		return nil, fmt.Errorf("%w: not a JSON object", ErrInvalidSnapshot)
	}
	if head.Format == nil {
		return nil, fmt.Errorf("%w: no \"format\"", ErrInvalidSnapshot)
	}
	var format int
	if err := json.Unmarshal(*head.Format, &format); err != nil || format < 1 {
		return nil, fmt.Errorf("%w: \"format\" is %s, not an integer ≥ 1", ErrInvalidSnapshot, *head.Format)
	}
	if format > SnapshotFormat {
		return nil, fmt.Errorf("%w: format %d, this eventkit reads format %d at most: upgrade eventkit", ErrNewerFormat, format, SnapshotFormat)
	}
	var snap Snapshot
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&snap); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidSnapshot, err)
	}
	if err := snap.validate(); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidSnapshot, err)
	}
	return &snap, nil
}

// position is the line and column (from 1) of the byte a
// json.SyntaxError's Offset has just read.
func position(data []byte, offset int64) (line, col int) {
	off := int(min(max(offset-1, 0), int64(len(data))))
	line = 1 + bytes.Count(data[:off], []byte("\n"))
	col = off - bytes.LastIndexByte(data[:off], '\n')
	return line, col
}

// validate checks what Check relies on.
func (s *Snapshot) validate() error {
	seen := map[string]bool{}
	for i, e := range s.Events {
		switch {
		case !events.ValidName(e.Name):
			return fmt.Errorf("events[%d]: invalid name %q", i, e.Name)
		case seen[e.Name]:
			return fmt.Errorf("event %s is listed twice", e.Name)
		case e.Version < 1:
			return fmt.Errorf("event %s: version %d, must be ≥ 1", e.Name, e.Version)
		case len(e.Schemas) == 0:
			return fmt.Errorf("event %s: no schemas", e.Name)
		}
		seen[e.Name] = true
		for _, u := range e.Upcasters {
			if u < 1 || u >= e.Version {
				return fmt.Errorf("event %s: upcaster from version %d, must be 1 to %d", e.Name, u, e.Version-1)
			}
		}
		for j, sch := range e.Schemas {
			if sch.Version < 1 {
				return fmt.Errorf("event %s: schemas[%d]: version %d, must be ≥ 1", e.Name, j, sch.Version)
			}
			switch {
			case sch.Protobuf != nil:
				if _, err := sch.Protobuf.message(); err != nil {
					return fmt.Errorf("event %s: schemas[%d]: %v", e.Name, j, err)
				}
			case len(sch.JSONSchema) > 0:
				var v any
				if err := json.Unmarshal(sch.JSONSchema, &v); err != nil {
					return fmt.Errorf("event %s: schemas[%d]: json_schema: %v", e.Name, j, err)
				}
				if _, isObj := v.(map[string]any); !isObj {
					if _, isBool := v.(bool); !isBool {
						return fmt.Errorf("event %s: schemas[%d]: json_schema is not a JSON Schema (an object or a boolean)", e.Name, j)
					}
				}
			default:
				return fmt.Errorf("event %s: schemas[%d]: neither json_schema nor protobuf", e.Name, j)
			}
		}
		if last := e.Schemas[len(e.Schemas)-1].Version; last != e.Version {
			return fmt.Errorf("event %s: version %d, but its last schema is of version %d", e.Name, e.Version, last)
		}
	}
	_, err := normalizeServices(s.Services, func(n string) bool { return seen[n] })
	return err
}

// Marshal returns the snapshot as indented JSON, ending in a newline: the
// form of a committed snapshot file. Equal snapshots marshal to equal bytes.
func (s *Snapshot) Marshal() ([]byte, error) {
	out := *s
	out.Format = SnapshotFormat
	raw, err := json.Marshal(out)
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	if err := json.Indent(&buf, raw, "", "  "); err != nil {
		return nil, err
	}
	buf.WriteByte('\n')
	return buf.Bytes(), nil
}

// WriteSnapshotFile writes s to path (Marshal), replacing the file.
func WriteSnapshotFile(path string, s *Snapshot) error {
	data, err := s.Marshal()
	if err != nil {
		return fmt.Errorf("contracts: write snapshot %s: %w", path, err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		return fmt.Errorf("contracts: write snapshot %s: %w", path, err)
	}
	return nil
}

// Update returns the snapshot to record after current: the events and
// wiring of current, each event keeping the history of its schemas from
// old (nil: none) with current's schema appended when it differs from the
// last one recorded. An event whose Go type got another name starts a new
// history; events old has and current lacks are dropped. It does not check
// compatibility: Check first.
func Update(old, current *Snapshot) *Snapshot {
	out := &Snapshot{Format: SnapshotFormat, Services: current.Services}
	for _, ev := range current.Events {
		next := ev
		next.Schemas = []Schema{ev.Current()}
		if old != nil {
			if prev, ok := old.Event(ev.Name); ok && shortTypeName(prev.Type) == shortTypeName(ev.Type) {
				hist := append([]Schema(nil), prev.Schemas...)
				if len(hist) == 0 || !sameSchema(hist[len(hist)-1], ev.Current()) {
					hist = append(hist, ev.Current())
				}
				next.Schemas = hist
			}
		}
		out.Events = append(out.Events, next)
	}
	return out
}

// sameSchema reports whether a and b are the same version with the same
// schema, compared as JSON values.
func sameSchema(a, b Schema) bool {
	if a.Version != b.Version {
		return false
	}
	return canonical(a) == canonical(b)
}

func canonical(v any) string {
	raw, _ := json.Marshal(v)
	var x any
	_ = json.Unmarshal(raw, &x)
	raw, _ = json.Marshal(x)
	return string(raw)
}
