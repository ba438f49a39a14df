// Package contracts describes a service's integration events as contracts,
// and catches a breaking change before it ships.
//
// The contracts of an events.Registry are its events' schemas — a JSON
// Schema derived from each event's Go type (JSONSchemaOf: json tags,
// required fields, enums, formats), or a protobuf event's descriptor —
// with their names, versions and upcasters, and the wiring: which Service
// publishes which event to which topic, and which handlers consume it.
//
//	snap, err := contracts.Take(reg, contracts.Service{Name: "orders",
//		Publishes: []contracts.Publish{{Event: "orders.order_created"}},
//		Consumes:  []contracts.Consume{{Event: "payments.payment_processed", Handler: "orders.mark-paid"}}})
//
// From a Snapshot:
//
//   - AsyncAPI and Export write the AsyncAPI 3.0 document: channels per
//     topic, a message per event version, send and receive operations per
//     service, the envelope headers once as a message trait. It validates
//     against the official AsyncAPI 3.0.0 JSON Schema (the tests check).
//   - Check compares the contracts with a recorded snapshot under a Mode
//     (backward, forward, full, each optionally transitive, as in a schema
//     registry) and reports each breaking change as a Break naming the
//     event, the version, the field, and whom it breaks. CheckFile and
//     ExitCode are what the CLI calls; package contracttest is the one-line
//     test that keeps a service's snapshot; Update records a change.
//   - A Validator validates payloads at run time, off unless wired: as the
//     publisher option cqrs.BusConfig.Validate or
//     forwarder.OutboxConfig.Validate (ValidateMessage), and as the consumer
//     middleware (Middleware), whose *SchemaError is permanent and
//     dead-lettered with reason "schema" (middleware.ReasonSchema).
//
// Guarantees and limits: a Snapshot marshals deterministically (equal
// contracts, equal bytes), so it can be committed and diffed. Reading a
// snapshot never panics: bad input is a *SnapshotError (not JSON, a newer
// format, an invalid snapshot, an event the registry lacks), and ExitCode
// gives it 2. Check compares what schemas say, not what handlers do: a field
// no consumer reads still counts. It cannot see inside an upcaster: a version
// bump with an upcaster from the previous version is taken as backward
// compatible. Schemas of older versions are known only from the snapshot's
// history.
//
// How to evolve an event safely, step by step: docs/contracts.md.
package contracts
