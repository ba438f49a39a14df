package contracts

import (
	"bytes"
	"errors"
	"fmt"
	"mime"
	"strconv"
	"strings"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/b2131a45/eventkit/events"
)

// ErrSchemaViolation is wrapped by every *SchemaError.
var ErrSchemaViolation = errors.New("payload does not match its schema")

// MaxViolations is how many violations a SchemaError lists at most.
const MaxViolations = 10

// SchemaError reports a payload that does not match the schema of its
// event and version. It is permanent (events.IsPermanent): a consumer
// dead-letters it at once, with reason middleware.ReasonSchema.
type SchemaError struct {
	Event   string
	Version int
	// Violations, each "at <JSON pointer>: <what>", at most MaxViolations.
	Violations []string
}

func (e *SchemaError) Error() string {
	return fmt.Sprintf("contracts: %s v%d: %v: %s", e.Event, e.Version, ErrSchemaViolation, strings.Join(e.Violations, "; "))
}

// Unwrap returns ErrSchemaViolation.
func (e *SchemaError) Unwrap() error { return ErrSchemaViolation }

// Permanent marks the error permanent for events.IsPermanent.
func (e *SchemaError) Permanent() bool { return true }

// SchemaViolation marks the error for middleware.ReasonOf: its dead letter
// has reason "schema".
func (e *SchemaError) SchemaViolation() bool { return true }

// ValidatorConfig configures NewValidator. The zero value is the default.
type ValidatorConfig struct {
	// Snapshot, if set, supplies the schemas of versions older than the
	// registered ones (the history Update records), so that a consumer also
	// validates the older payloads it upcasts. Defaults to nil: only the
	// current version of each event is validated.
	Snapshot *Snapshot
}

// Validator validates event payloads against their schemas at run time:
// the publisher option (cqrs.BusConfig.Validate,
// forwarder.OutboxConfig.Validate: ValidateMessage) and the consumer
// middleware (Middleware). It is safe for concurrent use.
//
// It validates JSON payloads of registered events at the versions it has a
// schema for, with formats (date-time, uuid, email…) asserted. A message it
// cannot place — no name, an unregistered event, a version it has no
// schema for, a content type other than JSON (protobuf payloads are checked
// by decoding), a payload that is not JSON — passes, so that decoding
// reports it with its own reason.
type Validator struct {
	schemas map[string]map[int]*jsonschema.Schema
}

// NewValidator compiles the schema of every JSON event of reg (Take), and
// the older versions' schemas of cfg.Snapshot. It fails if reg has no
// schema for a type (Take's errors) or a schema does not compile.
func NewValidator(reg *events.Registry, cfg ValidatorConfig) (*Validator, error) {
	snap, err := Take(reg)
	if err != nil {
		return nil, err
	}
	v := &Validator{schemas: map[string]map[int]*jsonschema.Schema{}}
	c := jsonschema.NewCompiler()
	c.AssertFormat()
	add := func(name string, s Schema) error {
		if len(s.JSONSchema) == 0 {
			return nil
		}
		doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(s.JSONSchema))
		if err != nil {
			return fmt.Errorf("contracts: schema of %s v%d: %w", name, s.Version, err)
		}
		url := fmt.Sprintf("eventkit:///%s/v%d.json", name, s.Version)
		if err := c.AddResource(url, doc); err != nil {
			return fmt.Errorf("contracts: schema of %s v%d: %w", name, s.Version, err)
		}
		sch, err := c.Compile(url)
		if err != nil {
			return fmt.Errorf("contracts: schema of %s v%d: %w", name, s.Version, err)
		}
		if v.schemas[name] == nil {
			v.schemas[name] = map[int]*jsonschema.Schema{}
		}
		v.schemas[name][s.Version] = sch
		return nil
	}
	for _, ev := range snap.Events {
		if isProtobuf(ev.ContentType) {
			continue
		}
		if err := add(ev.Name, ev.Current()); err != nil {
			return nil, err
		}
		if cfg.Snapshot == nil {
			continue
		}
		old, ok := cfg.Snapshot.Event(ev.Name)
		if !ok || shortTypeName(old.Type) != shortTypeName(ev.Type) || isProtobuf(old.ContentType) {
			continue
		}
		last := map[int]Schema{} // the last recorded schema of each older version
		for _, s := range old.Schemas {
			if s.Version < ev.Version {
				last[s.Version] = s
			}
		}
		for _, s := range last {
			if err := add(ev.Name, s); err != nil {
				return nil, err
			}
		}
	}
	return v, nil
}

// Validate checks payload, the encoded event name at version, against its
// schema. It returns a *SchemaError, or nil when the payload matches or the
// validator has no schema for it (see Validator).
func (v *Validator) Validate(name string, version int, payload []byte) error {
	sch := v.schemas[name][version]
	if sch == nil {
		return nil
	}
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(payload))
	if err != nil {
		return nil // not JSON: decoding says so, as a decode error
	}
	err = sch.Validate(inst)
	if err == nil {
		return nil
	}
	se := &SchemaError{Event: name, Version: version}
	var ve *jsonschema.ValidationError
	if errors.As(err, &ve) {
		se.Violations = violations(ve)
	}
	if len(se.Violations) == 0 {
		se.Violations = []string{err.Error()}
	}
	return se
}

func violations(ve *jsonschema.ValidationError) []string {
	var out []string
	for _, u := range leaves(*ve.DetailedOutput()) {
		if len(out) == MaxViolations {
			break
		}
		loc := u.InstanceLocation
		if loc == "" {
			loc = "/"
		}
		out = append(out, "at "+loc+": "+u.Error.String())
	}
	return out
}

// leaves are the innermost errors of u. Of an anyOf or oneOf, the branch
// that only wanted null (a nullable field) is left out when another failed.
func leaves(u jsonschema.OutputUnit) []jsonschema.OutputUnit {
	if len(u.Errors) == 0 {
		if u.Error == nil {
			return nil
		}
		return []jsonschema.OutputUnit{u}
	}
	var out, nullOnly []jsonschema.OutputUnit
	alt := strings.HasSuffix(u.KeywordLocation, "/anyOf") || strings.HasSuffix(u.KeywordLocation, "/oneOf")
	for _, c := range u.Errors {
		ls := leaves(c)
		if alt && len(ls) == 1 && strings.HasSuffix(ls[0].Error.String(), "want null") {
			nullOnly = append(nullOnly, ls...)
			continue
		}
		out = append(out, ls...)
	}
	if len(out) == 0 {
		return nullOnly
	}
	return out
}

// ValidateMessage is Validate for a message: its name and version from the
// envelope (any wire form, see events.Canonicalize, which it applies). It
// fits cqrs.BusConfig.Validate and forwarder.OutboxConfig.Validate.
func (v *Validator) ValidateMessage(msg *message.Message) error {
	if err := events.Canonicalize(msg); err != nil {
		return nil // decoding reports it
	}
	name := msg.Metadata.Get(events.KeyName)
	if name == "" || v.schemas[name] == nil {
		return nil
	}
	version := 1
	if s := msg.Metadata.Get(events.KeyVersion); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil {
			return nil
		}
		version = n
	}
	if ct := msg.Metadata.Get(events.KeyContentType); ct != "" && !isJSON(ct) {
		return nil
	}
	return v.Validate(name, version, msg.Payload)
}

func isJSON(contentType string) bool {
	mt, _, err := mime.ParseMediaType(contentType)
	return err == nil && (mt == "application/json" || strings.HasSuffix(mt, "+json"))
}

// Middleware is the consumer middleware: it validates each message
// (ValidateMessage) before the handlers below it and returns the
// *SchemaError instead of calling them. Add it below a
// middleware.PoisonQueue (after middleware.Default's chain:
// router.AddMiddleware(chain.Middlewares()...) then
// router.AddMiddleware(v.Middleware)), which dead-letters the message at
// once with reason "schema"; a permanent error is not retried.
func (v *Validator) Middleware(h message.HandlerFunc) message.HandlerFunc {
	return func(msg *message.Message) ([]*message.Message, error) {
		if err := v.ValidateMessage(msg); err != nil {
			return nil, err
		}
		return h(msg)
	}
}
