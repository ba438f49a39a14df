package contracts

import (
	"errors"
	"fmt"
	"mime"
	"sort"
	"strings"
)

// Kind is the kind of a breaking change.
type Kind string

// Kinds of breaking changes. Field-level ones name the field (Break.Field).
const (
	// KindFieldRemoved: a field consumers on the previous schema require
	// is gone (breaks forward).
	KindFieldRemoved Kind = "field_removed"
	// KindFieldRenamed: a field was renamed (a field gone and one of the
	// same shape added): consumers on either side look for the value under
	// the name they know (breaks backward and forward).
	KindFieldRenamed Kind = "field_renamed"
	// KindRequiredFieldAdded: a new field is required, which events written
	// before lack (breaks backward). Add it with omitempty.
	KindRequiredFieldAdded Kind = "required_field_added"
	// KindBecameRequired: an optional field became required (breaks
	// backward).
	KindBecameRequired Kind = "field_became_required"
	// KindBecameOptional: a required field became optional (breaks
	// forward).
	KindBecameOptional Kind = "field_became_optional"
	// KindTypeChanged: a field's type changed (integer → number is
	// backward compatible only).
	KindTypeChanged Kind = "type_changed"
	// KindEnumValueRemoved: an enum value events written before may carry
	// is gone (breaks backward).
	KindEnumValueRemoved Kind = "enum_value_removed"
	// KindEnumValueAdded: an enum value consumers on the previous schema do
	// not know (breaks forward).
	KindEnumValueAdded Kind = "enum_value_added"
	// KindEnumAdded: a field became restricted to an enum (breaks
	// backward).
	KindEnumAdded Kind = "enum_added"
	// KindEnumRemoved: a field is no longer restricted to an enum (breaks
	// forward).
	KindEnumRemoved Kind = "enum_removed"
	// KindFormatChanged: a string format (date-time, email, …) changed.
	KindFormatChanged Kind = "format_changed"
	// KindConstraintChanged: a bound, length, pattern or multiple got
	// tighter for the reader.
	KindConstraintChanged Kind = "constraint_changed"
	// KindSchemaChanged: a part of the schema the check does not model
	// (allOf, not, a closed object…) changed.
	KindSchemaChanged Kind = "schema_changed"
	// KindNameReused: the event name is registered for another Go type.
	KindNameReused Kind = "name_reused"
	// KindContentTypeChanged: the event's codec changed; consumers reject
	// the other content type.
	KindContentTypeChanged Kind = "content_type_changed"
	// KindNoUpcaster: the version was bumped with no upcaster from a
	// previous version (breaks backward).
	KindNoUpcaster Kind = "no_upcaster"
	// KindUpcasterRemoved: an upcaster the snapshot had is gone (breaks
	// backward).
	KindUpcasterRemoved Kind = "upcaster_removed"
	// KindVersionBumped: the version was bumped; consumers on the previous
	// version reject the new one (breaks forward).
	KindVersionBumped Kind = "version_bumped"
	// KindVersionLowered: the version went down.
	KindVersionLowered Kind = "version_lowered"
	// KindTopicChanged: a service publishes the event to another topic
	// than before; consumers of the old topic stop receiving it.
	KindTopicChanged Kind = "topic_changed"
)

// Break is one breaking change.
type Break struct {
	// Event and Version: the event and its current version.
	Event   string `json:"event"`
	Version int    `json:"version"`
	// Against is the version of the recorded schema it was compared with.
	Against int `json:"against"`
	// Field is the path of the field: "customer_email", "items[].sku",
	// "tags.*" (map values), "order_id (#1)" (protobuf: name and number);
	// "" for a change of the whole event.
	Field string `json:"field,omitempty"`
	Kind  Kind   `json:"kind"`
	// Breaks is the compatibility it breaks: Backward, Forward, or Full
	// (both).
	Breaks Mode `json:"breaks"`
	// Detail says what changed.
	Detail string `json:"detail"`
	// Consumers are the handlers of the event in the wiring,
	// "service/handler".
	Consumers []string `json:"consumers,omitempty"`
}

// String is the break in one line: the event, the version, the field, what
// changed and whom it breaks.
func (b Break) String() string {
	var s strings.Builder
	fmt.Fprintf(&s, "%s v%d", b.Event, b.Version)
	if b.Field != "" {
		fmt.Fprintf(&s, ", field %q", b.Field)
	}
	fmt.Fprintf(&s, ": %s — %s", b.Detail, whom(b.Breaks))
	if len(b.Consumers) > 0 {
		fmt.Fprintf(&s, " (consumers: %s)", strings.Join(b.Consumers, ", "))
	}
	return s.String()
}

func whom(m Mode) string {
	switch m {
	case Backward:
		return "breaks backward compatibility: upgraded consumers cannot read events written before the change " +
			"(still queued, retried, replayed from the DLQ, or from producers not yet upgraded)"
	case Forward:
		return "breaks forward compatibility: consumers not yet upgraded cannot read events from upgraded producers"
	}
	return "breaks every consumer: upgraded ones reading older events and the others reading newer ones"
}

// Report is the result of Check.
type Report struct {
	// Mode checked.
	Mode Mode `json:"mode"`
	// Breaks found, by event, version and field.
	Breaks []Break `json:"breaks"`
	// Notes are the differences that are safe under Mode: new events,
	// compatible schema changes, new versions with their upcasters.
	Notes []string `json:"notes,omitempty"`
	// Stale is true when the contracts differ from the snapshot (safely or
	// not): Update and commit it to record them.
	Stale bool `json:"stale"`
}

// OK reports whether no change breaks compatibility.
func (r *Report) OK() bool { return len(r.Breaks) == 0 }

// Err returns nil when OK, else a *BreakingChangesError listing the breaks.
func (r *Report) Err() error {
	if r.OK() {
		return nil
	}
	return &BreakingChangesError{Mode: r.Mode, Breaks: r.Breaks}
}

// String is the report as text: one line per break, then the notes.
func (r *Report) String() string {
	var s strings.Builder
	if r.OK() {
		fmt.Fprintf(&s, "contracts: compatible (%s)\n", r.Mode)
	} else {
		fmt.Fprintf(&s, "contracts: %d breaking change(s) (%s):\n", len(r.Breaks), r.Mode)
		for _, b := range r.Breaks {
			fmt.Fprintf(&s, "  %s\n", b)
		}
	}
	for _, n := range r.Notes {
		fmt.Fprintf(&s, "  note: %s\n", n)
	}
	return s.String()
}

// BreakingChangesError is the error of a Report with breaks.
type BreakingChangesError struct {
	Mode   Mode
	Breaks []Break
}

func (e *BreakingChangesError) Error() string {
	var s strings.Builder
	fmt.Fprintf(&s, "contracts: %d breaking change(s) under %s compatibility:", len(e.Breaks), e.Mode)
	for _, b := range e.Breaks {
		s.WriteString("\n  ")
		s.WriteString(b.String())
	}
	return s.String()
}

// ExitCode is the exit code of a command that checked contracts, for err
// returned by CheckFile, Check or Report.Err: 0 for nil, 1 for a
// *BreakingChangesError, 2 for anything else (a snapshot that cannot be
// read or used, a bad mode: bad input).
func ExitCode(err error) int {
	var be *BreakingChangesError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &be):
		return 1
	}
	return 2
}

// CheckFile reads the snapshots at currentPath (the contracts now, as
// contracttest or WriteSnapshotFile(Take(…)) wrote them) and againstPath
// (the committed ones to be compatible with) and checks them (Check). It is
// what `eventkit contracts check --against` calls. Its error is bad input
// (ExitCode 2): a *SnapshotError naming the file; breaks are in the Report
// (Report.Err, ExitCode 1).
func CheckFile(currentPath, againstPath string, mode Mode) (*Report, error) {
	cur, err := ReadSnapshotFile(currentPath)
	if err != nil {
		return nil, err
	}
	against, err := ReadSnapshotFile(againstPath)
	if err != nil {
		return nil, err
	}
	rep, err := Check(cur, against, mode)
	var se *SnapshotError
	if errors.As(err, &se) && se.Path == "" {
		se.Path = againstPath
	}
	return rep, err
}

// Check compares current (Take of a registry and its wiring) with against
// (a recorded snapshot) under mode, and reports every breaking change:
//
//   - per field of the payload schema: a field removed or renamed that a
//     consumer reads, a type change, a field that became required (or a new
//     required one), one that became optional, an enum value removed or
//     added, a format or bound changed — each in the directions mode
//     checks (see Mode);
//   - per event: the name registered for another Go type, the content type
//     changed, the version bumped with no upcaster from the previous
//     version (backward) or at all (forward), lowered, an upcaster removed;
//   - per service of the wiring: an event published to another topic.
//
// Transitive modes compare with every schema against recorded, the others
// with the last. It returns an error, never a partial report, for bad input:
// an invalid mode, a nil or invalid snapshot (a *SnapshotError wrapping
// ErrInvalidSnapshot), or against naming an event current lacks (wrapping
// ErrUnknownEvent).
func Check(current, against *Snapshot, mode Mode) (*Report, error) {
	if !mode.valid() {
		return nil, fmt.Errorf("contracts: unknown compatibility mode %q", mode)
	}
	if current == nil || against == nil {
		return nil, errors.New("contracts: Check of a nil snapshot")
	}
	if err := current.validate(); err != nil {
		return nil, &SnapshotError{Err: fmt.Errorf("%w: the current contracts: %v", ErrInvalidSnapshot, err)}
	}
	if err := against.validate(); err != nil {
		return nil, &SnapshotError{Err: fmt.Errorf("%w: %v", ErrInvalidSnapshot, err)}
	}
	for _, ev := range against.Events {
		if _, ok := current.Event(ev.Name); !ok {
			return nil, &SnapshotError{Err: fmt.Errorf("%w: %q (%s): register it, or if it was retired on purpose "+
				"take it out of the snapshot (Update, or EVENTKIT_UPDATE_CONTRACTS=1 with contracttest)", ErrUnknownEvent, ev.Name, shortTypeName(ev.Type))}
		}
	}
	rep := &Report{Mode: mode, Breaks: []Break{}}
	for _, cur := range current.Events {
		prev, ok := against.Event(cur.Name)
		if !ok {
			rep.Notes = append(rep.Notes, fmt.Sprintf("%s: new event (v%d)", cur.Name, cur.Version))
			continue
		}
		consumers := union(consumersOf(current.Services, cur.Name), consumersOf(against.Services, cur.Name))
		breaks, notes, err := checkEvent(cur, *prev, mode)
		if err != nil {
			return nil, &SnapshotError{Err: fmt.Errorf("%w: event %s: %v", ErrInvalidSnapshot, cur.Name, err)}
		}
		for i := range breaks {
			breaks[i].Consumers = consumers
		}
		rep.Breaks = append(rep.Breaks, breaks...)
		rep.Notes = append(rep.Notes, notes...)
	}
	rep.Breaks = append(rep.Breaks, topicChanges(current, against)...)
	sort.SliceStable(rep.Breaks, func(i, j int) bool {
		a, b := rep.Breaks[i], rep.Breaks[j]
		if a.Event != b.Event {
			return a.Event < b.Event
		}
		return a.Field < b.Field
	})
	rep.Stale = canonical(Update(against, current)) != canonical(normalized(against))
	return rep, nil
}

// normalized is s as Update writes it, for comparing.
func normalized(s *Snapshot) *Snapshot {
	out := *s
	out.Format = SnapshotFormat
	return &out
}

func checkEvent(cur, prev Event, mode Mode) ([]Break, []string, error) {
	var out []Break
	var notes []string
	seen := map[string]bool{}
	add := func(b Break) {
		b.Event, b.Version = cur.Name, cur.Version
		key := b.Field + "\x00" + string(b.Kind) + "\x00" + string(b.Breaks) + "\x00" + b.Detail
		if !seen[key] {
			seen[key] = true
			out = append(out, b)
		}
	}
	if a, b := shortTypeName(prev.Type), shortTypeName(cur.Type); a != b {
		add(Break{Against: prev.Version, Kind: KindNameReused, Breaks: Full, Detail: fmt.Sprintf(
			"the name was registered for %s and now is for %s: its consumers decode these events as the old type; "+
				"give a new event a new name (a Go type renamed on purpose: update the snapshot)", prev.Type, cur.Type)})
	}
	if !sameMediaType(prev.ContentType, cur.ContentType) {
		add(Break{Against: prev.Version, Kind: KindContentTypeChanged, Breaks: Full, Detail: fmt.Sprintf(
			"content type changed from %s to %s: consumers reject a content type other than their codec's", prev.ContentType, cur.ContentType)})
	}
	if cur.Version < prev.Version {
		add(Break{Against: prev.Version, Kind: KindVersionLowered, Breaks: Full, Detail: fmt.Sprintf(
			"version went back from %d to %d: consumers on v%d reject the v%d events still about as unsupported_version", prev.Version, cur.Version, cur.Version, prev.Version)})
	}
	has := map[int]bool{}
	for _, u := range cur.Upcasters {
		has[u] = true
	}
	if mode.Backward() {
		for _, u := range prev.Upcasters {
			if !has[u] && u < cur.Version {
				add(Break{Against: prev.Version, Kind: KindUpcasterRemoved, Breaks: Backward, Detail: fmt.Sprintf(
					"the upcaster from v%d to v%d is gone: consumers reject the v%d events they read before as unsupported_version", u, u+1, u)})
			}
		}
	}
	entries := prev.Schemas
	if !mode.Transitive() {
		entries = entries[len(entries)-1:]
	}
	curNode, curProto, err := schemaNode(cur.Current())
	if err != nil {
		return nil, nil, err
	}
	compared := false
	for i := len(entries) - 1; i >= 0; i-- {
		e := entries[i]
		switch {
		case e.Version == cur.Version:
			old, oldProto, err := schemaNode(e)
			if err != nil {
				return nil, nil, err
			}
			if oldProto != curProto {
				continue // the content type change says it
			}
			compared = compared || !sameSchema(e, cur.Current())
			if mode.Backward() {
				for _, is := range readable(curNode, old, curProto) {
					add(fieldBreak(is, Backward, e.Version))
				}
			}
			if mode.Forward() {
				for _, is := range readable(old, curNode, curProto) {
					add(fieldBreak(is, Forward, e.Version))
				}
			}
		case e.Version < cur.Version:
			if mode.Backward() {
				for v := e.Version; v < cur.Version; v++ {
					if !has[v] {
						add(Break{Against: e.Version, Kind: KindNoUpcaster, Breaks: Backward, Detail: fmt.Sprintf(
							"version bumped to %d with no upcaster from v%d to v%d: consumers on v%d reject v%d events as unsupported_version "+
								"(add events.Upcast(%d, …))", cur.Version, v, v+1, cur.Version, e.Version, v)})
					}
				}
			}
			if mode.Forward() && !seen[string(KindVersionBumped)] {
				seen[string(KindVersionBumped)] = true // once, against the nearest version
				add(Break{Against: e.Version, Kind: KindVersionBumped, Breaks: Forward, Detail: fmt.Sprintf(
					"version bumped from %d to %d: consumers still on v%d reject v%d events as unsupported_version; "+
						"bump a version only once every consumer runs it (backward), or change v%d in place with optional fields",
					e.Version, cur.Version, e.Version, cur.Version, e.Version)})
			}
		}
	}
	out = mergeDirections(out)
	if len(out) == 0 {
		last := prev.Schemas[len(prev.Schemas)-1]
		switch {
		case cur.Version > last.Version:
			notes = append(notes, fmt.Sprintf("%s: v%d → v%d, upcasters from %v", cur.Name, last.Version, cur.Version, cur.Upcasters))
		case compared:
			notes = append(notes, fmt.Sprintf("%s v%d: schema changed compatibly (%s)", cur.Name, cur.Version, mode))
		}
	}
	return out, notes, nil
}

// mergeDirections turns a backward and a forward break of the same change
// into one that breaks both (Full).
func mergeDirections(in []Break) []Break {
	key := func(b Break) string { return b.Field + "\x00" + string(b.Kind) + "\x00" + b.Detail }
	dirs := map[string]map[Mode]bool{}
	for _, b := range in {
		if dirs[key(b)] == nil {
			dirs[key(b)] = map[Mode]bool{}
		}
		dirs[key(b)][b.Breaks] = true
	}
	var out []Break
	done := map[string]bool{}
	for _, b := range in {
		k := key(b)
		if d := dirs[k]; d[Backward] && d[Forward] || d[Full] {
			if done[k] {
				continue
			}
			done[k] = true
			b.Breaks = Full
		}
		out = append(out, b)
	}
	return out
}

// fieldBreak words a schema issue found in direction dir (Backward: the
// reader is the current schema, the writer the recorded one; Forward: the
// other way round).
func fieldBreak(is issue, dir Mode, against int) Break {
	b := Break{Against: against, Field: is.path, Breaks: dir}
	oldS, newS := is.w, is.r // backward: writer old, reader new
	if dir == Forward {
		oldS, newS = is.r, is.w
	}
	switch is.kind {
	case issueMissing:
		if dir == Backward {
			b.Kind, b.Detail = KindRequiredFieldAdded, "added as a required field, which events written before lack (add it with omitempty)"
		} else {
			b.Kind, b.Detail = KindFieldRemoved, "removed, but consumers on the previous schema require it"
		}
	case issueOptional:
		if dir == Backward {
			b.Kind, b.Detail = KindBecameRequired, "became required, but events written before may lack it"
		} else {
			b.Kind, b.Detail = KindBecameOptional, "became optional, but consumers on the previous schema require it"
		}
	case issueType:
		b.Kind, b.Detail = KindTypeChanged, fmt.Sprintf("type changed from %s to %s", oldS, newS)
	case issueEnumValue:
		if dir == Backward {
			b.Kind, b.Detail = KindEnumValueRemoved, fmt.Sprintf("enum value %s removed (now %s), but events written before may carry it", is.w, is.r)
		} else {
			b.Kind, b.Detail = KindEnumValueAdded, fmt.Sprintf("enum value %s added, which consumers on the previous schema (%s) do not accept", is.w, is.r)
		}
	case issueEnumRestricted:
		if dir == Backward {
			b.Kind, b.Detail = KindEnumAdded, fmt.Sprintf("restricted to %s, but events written before may carry other values", is.r)
		} else {
			b.Kind, b.Detail = KindEnumRemoved, fmt.Sprintf("no longer restricted to %s, which consumers on the previous schema expect", is.r)
		}
	case issueFormat:
		b.Kind, b.Detail = KindFormatChanged, fmt.Sprintf("format changed from %s to %s", orNone(oldS), orNone(newS))
		if dir == Backward {
			b.Detail += ", which events written before may not be"
		} else {
			b.Detail += ", but consumers on the previous schema expect " + is.r
		}
	case issueConstraint:
		if dir == Backward {
			b.Kind, b.Detail = KindConstraintChanged, fmt.Sprintf("constraint tightened from %s to %s, which events written before may not meet", oldS, newS)
		} else {
			b.Kind, b.Detail = KindConstraintChanged, fmt.Sprintf("constraint loosened from %s to %s, beyond what consumers on the previous schema accept", oldS, newS)
		}
	case issueClosed:
		b.Kind, b.Detail = KindSchemaChanged, "the reading side's schema does not allow this field"
	case issueRenamed:
		from, to := is.w, is.r
		if dir == Forward {
			from, to = is.r, is.w
		}
		b.Field = strings.TrimSuffix(is.path, is.r) + to // the path ends with the reader's name
		b.Kind, b.Detail = KindFieldRenamed, fmt.Sprintf("renamed from %q (a field of the same shape went away): "+
			"consumers on either side find nothing under the name they read; rename with a new version and an upcaster", from)
		b.Breaks = Full
	default:
		b.Kind, b.Detail = KindSchemaChanged, fmt.Sprintf("changed in a way the check cannot prove compatible (%s → %s)", oldS, newS)
	}
	return b
}

func topicChanges(current, against *Snapshot) []Break {
	var out []Break
	for _, old := range against.Services {
		var now *Service
		for i := range current.Services {
			if current.Services[i].Name == old.Name {
				now = &current.Services[i]
			}
		}
		if now == nil {
			continue
		}
		for _, p := range old.Publishes {
			var topics []string
			still := false
			for _, q := range now.Publishes {
				if q.Event == p.Event {
					topics = append(topics, q.Topic)
					still = still || q.Topic == p.Topic
				}
			}
			if still || len(topics) == 0 {
				continue
			}
			var consumers []string
			for _, svcs := range [][]Service{current.Services, against.Services} {
				for _, s := range svcs {
					for _, c := range s.Consumes {
						if c.Event == p.Event && c.Topic == p.Topic {
							consumers = union(consumers, []string{s.Name + "/" + c.Handler})
						}
					}
				}
			}
			version := 0
			if ev, ok := current.Event(p.Event); ok {
				version = ev.Version
			}
			out = append(out, Break{Event: p.Event, Version: version, Against: version, Kind: KindTopicChanged, Breaks: Full,
				Detail: fmt.Sprintf("service %s publishes it to %s, no longer to %s: consumers subscribed to %s stop receiving it",
					old.Name, strings.Join(topics, ", "), p.Topic, p.Topic), Consumers: consumers})
		}
	}
	return out
}

func union(a, b []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, s := range append(append([]string{}, a...), b...) {
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	sort.Strings(out)
	return out
}

func sameMediaType(a, b string) bool {
	ma, _, errA := mime.ParseMediaType(a)
	mb, _, errB := mime.ParseMediaType(b)
	if errA != nil || errB != nil {
		return strings.EqualFold(strings.TrimSpace(a), strings.TrimSpace(b))
	}
	return ma == mb
}
