// Package console is eventkit's web console: an http.Handler that shows
// outboxes, failed outbox rows, dead letters and inboxes, and lets an
// operator requeue, delete and replay them. Mount it in any service, or
// run it alone with `eventkit console`:
//
//	c, err := console.New(console.Config{
//		BasePath:  "/console",
//		Outboxes:  []console.Outbox{{Outbox: ob, Relay: relay, Database: dbURL}},
//		Transport: t, // dead letters: the .dlq topics of the outboxes' topics
//		Token:     os.Getenv("EVENTKIT_CONSOLE_TOKEN"),
//	})
//	mux.Handle("/console/", c)
//	go c.Run(ctx) // samples the outboxes for the charts; optional
//	defer c.Close()
//
// # Views
//
// Outboxes: pending, failed, scheduled and published counts, the lag (age
// of the oldest pending row), charts of lag and relay throughput over
// Config.History (sampled every SampleInterval by Run, or when a page is
// asked for), the relay that holds the outbox's lock (Outbox.ActiveRelay,
// from any process) and, for a Relay of this process, its last batch.
// Failed rows: error, attempts, payload as indented JSON, envelope; requeue
// or delete one, or all that match a filter (topic, event name, error
// text). Dead letters per dead-letter topic, grouped by handler, reason and
// error (ids and numbers in the error do not split a group), each with its
// count and first and last failure; a letter with its error, stack, payload
// and envelope; replay or delete one, a group, or all that match a filter.
// Inboxes: keys per handler, the oldest, how many are past the retention
// (whether a Purger keeps up). Health: the transport, each outbox's
// database and active relay, a local Relay's Health and Config.Health.
//
// # Guarantees
//
//   - Read-only unless Config.Token is set: then every request that changes
//     state must be a POST from a login with the token (or carry
//     "Authorization: Bearer <token>"), and a login's POST must carry its
//     session's CSRF token and come from the same origin (Sec-Fetch-Site,
//     Origin). Anything else is refused with 401 or 403 before anything is
//     read or changed. The session cookie is HttpOnly and SameSite=Strict.
//   - Every action is logged to Config.Logger with who (the name given at
//     login and the remote address, or "bearer token"), what (the action,
//     the outbox or topic, the filter) and how many rows or messages it
//     changed; refusals are logged too. The token is never logged.
//   - An action changes at most what its confirm page counted: the count is
//     shown first and travels with the form; a replay or delete of dead
//     letters stops after that many (middleware.ReplayConfig.Limit).
//     Failed rows are changed only while still failed (a row requeued or
//     published meanwhile is left alone); pending and published rows are
//     never deleted.
//   - A replayed dead letter is published to its original topic with its
//     event id and envelope, its dead-letter metadata removed
//     (middleware.ReplayDLQ): consumers with an inbox handle it once. The
//     dead letters a replay or delete does not take are published back to
//     the end of the dead-letter topic.
//   - Nothing secret is shown: passwords in URLs (scheme://user:password@)
//     anywhere on a page or in a JSON answer are replaced by "xxxxx", so are
//     Config.Secrets in every escaping; Config.Mask hides payload fields and
//     metadata keys.
//   - Payloads, errors and metadata are shown as escaped text: HTML and
//     JavaScript in them do not run (html/template, and a
//     Content-Security-Policy that lets only the console's own script and
//     style run, by nonce), invalid UTF-8 and control characters are
//     replaced with U+FFFD, and at most Config.MaxPayload bytes of each are
//     shown.
//   - Bounded reads: lists are paged (Config.PageSize, at most MaxPageSize
//     rows, through indexes); a dead-letter topic is read (browsed: nothing
//     is taken or moved for good) up to Config.ScanLimit messages, in the
//     background, one reading at a time per topic, and its depth is counted
//     without reading. A page waits at most Config.ScanWait for a reading,
//     then shows the last one (or the depth, and reloads itself).
//
// New starts no goroutine. Pages start the background readings of
// dead-letter topics, each bounded by ActionTimeout; Close stops and waits
// for them. Run samples until its context ends.
//
// Where this package sits among the others and where to change what:
// docs/architecture.md in the repository.
package console
