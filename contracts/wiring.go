package contracts

import (
	"fmt"

	"github.com/b2131a45/eventkit/events"
)

// Service describes who a service is on the wire: the events it publishes
// to which topics and the handlers that consume which events. It is the
// wiring Take records beside the registry's schemas, so that the AsyncAPI
// document names publishers and consumers and a breaking change names whom
// it breaks. Describe what the service's cqrs.Bus (or outbox) and
// cqrs.Processor do.
type Service struct {
	// Name of the service, e.g. "orders" (the Source of its Bus).
	Name string `json:"name"`
	// Publishes lists the events the service publishes.
	Publishes []Publish `json:"publishes,omitempty"`
	// Consumes lists the events its handlers consume.
	Consumes []Consume `json:"consumes,omitempty"`
}

// Publish is one event a service publishes.
type Publish struct {
	// Event is the registered event name.
	Event string `json:"event"`
	// Topic the event is published to. Defaults to the event name
	// (cqrs.EventNameTopic).
	Topic string `json:"topic,omitempty"`
}

// Consume is one handler of a service and the event it consumes.
type Consume struct {
	// Event is the registered event name.
	Event string `json:"event"`
	// Topic the handler subscribes to. Defaults to the event name.
	Topic string `json:"topic,omitempty"`
	// Handler is the handler's name, which is its consumer group
	// (cqrs.Handler.HandlerName). Defaults to the service name.
	Handler string `json:"handler,omitempty"`
}

// normalize fills the defaults of s and checks it against the events
// known (a registry's names, or a snapshot's).
func (s Service) normalize(known func(string) bool) (Service, error) {
	if !events.ValidName(s.Name) {
		return s, fmt.Errorf("contracts: service name %q is invalid (1-200 of A-Z a-z 0-9 . _ : -)", s.Name)
	}
	out := Service{Name: s.Name}
	for i, p := range s.Publishes {
		if !known(p.Event) {
			return s, fmt.Errorf("contracts: service %s publishes %q (Publishes[%d]), which is not registered", s.Name, p.Event, i)
		}
		if p.Topic == "" {
			p.Topic = p.Event
		}
		out.Publishes = append(out.Publishes, p)
	}
	for i, c := range s.Consumes {
		if !known(c.Event) {
			return s, fmt.Errorf("contracts: service %s consumes %q (Consumes[%d]), which is not registered", s.Name, c.Event, i)
		}
		if c.Topic == "" {
			c.Topic = c.Event
		}
		if c.Handler == "" {
			c.Handler = s.Name
		}
		if !events.ValidName(c.Handler) {
			return s, fmt.Errorf("contracts: service %s: handler name %q is invalid", s.Name, c.Handler)
		}
		out.Consumes = append(out.Consumes, c)
	}
	return out, nil
}

// consumersOf returns "service/handler" for each handler consuming event.
func consumersOf(services []Service, event string) []string {
	var out []string
	for _, s := range services {
		for _, c := range s.Consumes {
			if c.Event == event {
				out = append(out, s.Name+"/"+c.Handler)
			}
		}
	}
	return out
}
