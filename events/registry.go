package events

import (
	"context"
	"fmt"
	"reflect"
	"regexp"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/google/uuid"
	"google.golang.org/protobuf/proto"
)

// DefaultMaxPayloadBytes is the default limit on the size of a payload the
// registry decodes: 4 MiB.
const DefaultMaxPayloadBytes = 4 << 20

// UpcastFunc turns a payload of one schema version into the payload of the
// next version (from → from+1). It must not keep a reference to old.
type UpcastFunc func(old []byte) ([]byte, error)

// Option configures one registration. See Version, Upcast and WithCodec.
type Option func(*registration) error

// Version sets the current schema version of the event. Defaults to 1.
func Version(n int) Option {
	return func(r *registration) error {
		if n < 1 {
			return fmt.Errorf("version %d: must be ≥ 1", n)
		}
		r.version = n
		return nil
	}
}

// Upcast registers fn to turn a version-from payload into a version from+1
// payload. Decoding a payload older than the current version runs the chain
// of upcasters up to the current version before unmarshalling.
func Upcast(from int, fn UpcastFunc) Option {
	return func(r *registration) error {
		if from < 1 {
			return fmt.Errorf("upcaster from version %d: must be ≥ 1", from)
		}
		if fn == nil {
			return fmt.Errorf("upcaster from version %d is nil", from)
		}
		if _, dup := r.upcasters[from]; dup {
			return fmt.Errorf("two upcasters from version %d", from)
		}
		r.upcasters[from] = fn
		return nil
	}
}

// WithCodec sets the codec of the event. Defaults to the registry's codec
// (JSON unless RegistryConfig.Codec says otherwise).
func WithCodec(c Codec) Option {
	return func(r *registration) error {
		if c == nil {
			return fmt.Errorf("codec is nil")
		}
		r.codec = c
		return nil
	}
}

type registration struct {
	name      string
	version   int
	typ       reflect.Type // the registered type T, never a pointer
	codec     Codec
	upcasters map[int]UpcastFunc
}

func (r *registration) newValue() any { return reflect.New(r.typ).Interface() }

// RegistryConfig configures a Registry. The zero value is the default.
type RegistryConfig struct {
	// Codec is used by registrations without WithCodec. Defaults to JSON.
	Codec Codec
	// MaxPayloadBytes is the largest payload Decode accepts; a larger one is
	// a permanent *DecodeError wrapping ErrPayloadTooLarge. Defaults to
	// DefaultMaxPayloadBytes; negative means no limit.
	MaxPayloadBytes int
}

// Registry maps stable event names and versions to Go types. Register every
// event a service publishes or handles, at start-up. A Registry is safe for
// concurrent use; lookups take no lock.
type Registry struct {
	codec    Codec
	maxBytes int

	mu    sync.Mutex // serialises Register; readers use tables
	table atomic.Pointer[tables]
}

type tables struct {
	byName map[string]*registration
	byType map[reflect.Type]*registration
}

// NewRegistry returns an empty registry with the default configuration.
func NewRegistry() *Registry { return NewRegistryWithConfig(RegistryConfig{}) }

// NewRegistryWithConfig returns an empty registry configured by cfg.
func NewRegistryWithConfig(cfg RegistryConfig) *Registry {
	r := &Registry{codec: cfg.Codec, maxBytes: cfg.MaxPayloadBytes}
	if r.codec == nil {
		r.codec = JSON
	}
	if r.maxBytes == 0 {
		r.maxBytes = DefaultMaxPayloadBytes
	}
	r.table.Store(&tables{byName: map[string]*registration{}, byType: map[reflect.Type]*registration{}})
	return r
}

var validName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._:-]{0,199}$`)

// ValidName reports whether name is a valid event name: 1 to 200 characters
// of letters, digits, '.', '_', ':' and '-', starting with a letter or digit.
// Event names are also the default topic names, so they are held to what
// every transport accepts.
func ValidName(name string) bool { return validName.MatchString(name) }

// Register registers the Go type T (a struct, not a pointer) under the stable
// event name. It fails if the name is invalid or taken, T is already
// registered, T is a pointer or interface type, an option is invalid, an
// upcaster does not lead to the current version, or the codec cannot encode T.
func Register[T any](r *Registry, name string, opts ...Option) error {
	typ := reflect.TypeFor[T]()
	if typ.Kind() == reflect.Pointer || typ.Kind() == reflect.Interface {
		return fmt.Errorf("events: register %s: register the value type, not %s", name, typ)
	}
	if !ValidName(name) {
		return fmt.Errorf("events: register %s: invalid event name %q (1-200 of A-Z a-z 0-9 . _ : -)", typ, name)
	}
	reg := &registration{name: name, version: 1, typ: typ, codec: r.codec, upcasters: map[int]UpcastFunc{}}
	for _, opt := range opts {
		if opt == nil {
			continue
		}
		if err := opt(reg); err != nil {
			return fmt.Errorf("events: register %s: %w", name, err)
		}
	}
	for from := range reg.upcasters {
		if from >= reg.version {
			return fmt.Errorf("events: register %s: upcaster from version %d but current version is %d", name, from, reg.version)
		}
	}
	if reg.codec == Protobuf {
		if _, ok := reflect.New(typ).Interface().(proto.Message); !ok {
			return fmt.Errorf("events: register %s: Protobuf codec needs *%s to implement proto.Message", name, typ)
		}
	}

	r.mu.Lock()
	defer r.mu.Unlock()
	old := r.table.Load()
	if prev, ok := old.byName[name]; ok {
		return fmt.Errorf("events: register %s: name already registered for %s", name, prev.typ)
	}
	if prev, ok := old.byType[typ]; ok {
		return fmt.Errorf("events: register %s: %s already registered as %s", name, typ, prev.name)
	}
	next := &tables{byName: make(map[string]*registration, len(old.byName)+1), byType: make(map[reflect.Type]*registration, len(old.byType)+1)}
	for k, v := range old.byName {
		next.byName[k] = v
	}
	for k, v := range old.byType {
		next.byType[k] = v
	}
	next.byName[name] = reg
	next.byType[typ] = reg
	r.table.Store(next)
	return nil
}

// MustRegister is Register that panics on error, for package-level setup.
func MustRegister[T any](r *Registry, name string, opts ...Option) {
	if err := Register[T](r, name, opts...); err != nil {
		panic(err)
	}
}

func (r *Registry) byValue(event any) (*registration, error) {
	if event == nil {
		return nil, fmt.Errorf("%w: nil event", ErrNotRegistered)
	}
	typ := reflect.TypeOf(event)
	if typ.Kind() == reflect.Pointer {
		if reflect.ValueOf(event).IsNil() {
			return nil, fmt.Errorf("%w: nil %s", ErrNotRegistered, typ)
		}
		typ = typ.Elem()
	}
	reg, ok := r.table.Load().byType[typ]
	if !ok {
		return nil, fmt.Errorf("%w: %s", ErrNotRegistered, typ)
	}
	return reg, nil
}

func (r *Registry) byName(name string) (*registration, error) {
	reg, ok := r.table.Load().byName[name]
	if !ok {
		return nil, fmt.Errorf("%w: %q", ErrUnknownEvent, name)
	}
	return reg, nil
}

// Name returns the registered name of event (a T or *T).
func (r *Registry) Name(event any) (string, error) {
	reg, err := r.byValue(event)
	if err != nil {
		return "", err
	}
	return reg.name, nil
}

// Version returns the current schema version registered under name.
func (r *Registry) Version(name string) (int, error) {
	reg, err := r.byName(name)
	if err != nil {
		return 0, err
	}
	return reg.version, nil
}

// New returns a new *T for the event registered under name.
func (r *Registry) New(name string) (any, error) {
	reg, err := r.byName(name)
	if err != nil {
		return nil, err
	}
	return reg.newValue(), nil
}

// Names returns every registered event name, sorted.
func (r *Registry) Names() []string {
	t := r.table.Load()
	names := make([]string, 0, len(t.byName))
	for n := range t.byName {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Registration describes one registered event, as Registrations lists it:
// what tools that document or check the contract (package contracts) need.
type Registration struct {
	// Name is the stable event name.
	Name string
	// Version is the current schema version.
	Version int
	// Type is the registered Go type T, never a pointer.
	Type reflect.Type
	// ContentType is the media type of the event's codec, e.g.
	// "application/json".
	ContentType string
	// Upcasters are the versions an upcaster starts from (from → from+1),
	// sorted: the older versions Decode turns into the current one.
	Upcasters []int
}

// Registrations returns every registration, sorted by name.
func (r *Registry) Registrations() []Registration {
	t := r.table.Load()
	out := make([]Registration, 0, len(t.byName))
	for _, reg := range t.byName {
		ups := make([]int, 0, len(reg.upcasters))
		for from := range reg.upcasters {
			ups = append(ups, from)
		}
		sort.Ints(ups)
		out = append(out, Registration{Name: reg.name, Version: reg.version, Type: reg.typ,
			ContentType: reg.codec.ContentType(), Upcasters: ups})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// NewID returns a new event id: a UUIDv7, time-ordered.
func NewID() (string, error) {
	id, err := uuid.NewV7()
	if err != nil {
		return "", fmt.Errorf("events: new id: %w", err)
	}
	return id.String(), nil
}

// Partitioned is implemented by events that have an ordering key, usually
// the aggregate id. The key is written to the partition_key header.
type Partitioned interface{ PartitionKey() string }

// NewMessage encodes event (a registered T or *T) and stamps the full
// envelope: a new UUIDv7 id (also the message UUID), name, version,
// occurred_at (now, UTC), content type, source, the partition key of a
// Partitioned event, and, from ctx, the correlation id (WithCorrelationID,
// else the message being handled, else the event's own id) and the causation
// id (the id of the message being handled). The message context is ctx.
func (r *Registry) NewMessage(ctx context.Context, event any, source string) (*message.Message, error) {
	reg, err := r.byValue(event)
	if err != nil {
		return nil, err
	}
	payload, err := reg.codec.Marshal(event)
	if err != nil {
		return nil, fmt.Errorf("events: encode %s: %w", reg.name, err)
	}
	id, err := NewID()
	if err != nil {
		return nil, err
	}
	env := Envelope{
		ID:          id,
		Name:        reg.name,
		Version:     reg.version,
		OccurredAt:  time.Now().UTC(),
		Source:      source,
		ContentType: reg.codec.ContentType(),
	}
	if p, ok := event.(Partitioned); ok {
		env.PartitionKey = p.PartitionKey()
	}
	if ctx == nil {
		ctx = context.Background()
	}
	env.CorrelationID = CorrelationIDFromContext(ctx)
	if env.CorrelationID == "" {
		env.CorrelationID = id
	}
	env.CausationID = CausationIDFromContext(ctx)

	msg := message.NewMessage(id, payload)
	env.Apply(msg)
	msg.SetContext(ctx)
	return msg, nil
}

// Decode reads the envelope of msg and decodes its payload into a new *T of
// the registered type, running upcasters when the payload is older than the
// registered version. A message in another form (CloudEvents, binary or
// structured) is first rewritten into the eventkit form (Canonicalize).
// Errors: ErrUnknownEvent, ErrUnsupportedVersion or *DecodeError, all
// permanent (see IsPermanent).
func (r *Registry) Decode(msg *message.Message) (Envelope, any, error) {
	env, err := canonicalEnvelope(msg)
	if err != nil {
		return env, nil, err
	}
	reg, err := r.byName(env.Name)
	if err != nil {
		return env, nil, err
	}
	v := reg.newValue()
	if err := r.decodePayload(reg, env, msg.Payload, v); err != nil {
		return env, nil, err
	}
	return env, v, nil
}

// DecodeInto is Decode into v, a non-nil pointer to the registered type of
// the message's event. A v of another type is a permanent *DecodeError.
func (r *Registry) DecodeInto(msg *message.Message, v any) (Envelope, error) {
	env, err := canonicalEnvelope(msg)
	if err != nil {
		return env, err
	}
	reg, err := r.byName(env.Name)
	if err != nil {
		return env, err
	}
	if t := reflect.TypeOf(v); t == nil || t.Kind() != reflect.Pointer || t.Elem() != reg.typ || reflect.ValueOf(v).IsNil() {
		return env, &DecodeError{Name: env.Name, Version: env.Version, Err: fmt.Errorf("target %T is not a non-nil *%s", v, reg.typ)}
	}
	return env, r.decodePayload(reg, env, msg.Payload, v)
}

// canonicalEnvelope is Canonicalize, then EnvelopeFromMessage.
func canonicalEnvelope(msg *message.Message) (Envelope, error) {
	if err := Canonicalize(msg); err != nil {
		return Envelope{}, err
	}
	return EnvelopeFromMessage(msg)
}

func (r *Registry) decodePayload(reg *registration, env Envelope, data []byte, v any) error {
	if r.maxBytes > 0 && len(data) > r.maxBytes {
		return &DecodeError{Name: env.Name, Version: env.Version, Err: fmt.Errorf("%w: %d bytes, limit %d", ErrPayloadTooLarge, len(data), r.maxBytes)}
	}
	if env.ContentType != "" && !sameContentType(env.ContentType, reg.codec.ContentType()) {
		return &DecodeError{Name: env.Name, Version: env.Version, Header: KeyContentType,
			Err: fmt.Errorf("content type %q, expected %q", env.ContentType, reg.codec.ContentType())}
	}
	if env.Version > reg.version {
		return fmt.Errorf("%w: %s v%d is newer than registered v%d", ErrUnsupportedVersion, env.Name, env.Version, reg.version)
	}
	for from := env.Version; from < reg.version; from++ {
		up, ok := reg.upcasters[from]
		if !ok {
			return fmt.Errorf("%w: %s v%d: no upcaster from v%d to v%d", ErrUnsupportedVersion, env.Name, env.Version, from, from+1)
		}
		next, err := runUpcaster(up, data)
		if err != nil {
			return &DecodeError{Name: env.Name, Version: env.Version, Err: fmt.Errorf("upcast v%d→v%d: %w", from, from+1, err)}
		}
		data = next
	}
	if err := unmarshal(reg.codec, data, v); err != nil {
		return &DecodeError{Name: env.Name, Version: env.Version, Err: err}
	}
	return nil
}

// runUpcaster calls a user function and turns its panic into an error, so a
// bad upcaster cannot crash a consumer.
func runUpcaster(up UpcastFunc, data []byte) (out []byte, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("upcaster panicked: %v", p)
		}
	}()
	return up(data)
}

func unmarshal(c Codec, data []byte, v any) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("codec panicked: %v", p)
		}
	}()
	return c.Unmarshal(data, v)
}
