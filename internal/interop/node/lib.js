'use strict';
// Helpers shared by the Node.js peers of the interop tests (*_test.go in
// this folder). Every script prints one JSON object per line on stdout and
// nothing else; logs and errors go to stderr.

const { CloudEvent } = require('cloudevents');

// out prints one line for the Go side.
function out(obj) {
  process.stdout.write(`${JSON.stringify(obj)}\n`);
}

// env returns an environment variable, def when it is unset, or throws
// when it is required (no def).
function env(name, def) {
  const v = process.env[name];
  if (v === undefined || v === '') {
    if (def === undefined) throw new Error(`environment variable ${name} is required`);
    return def;
  }
  return v;
}

// run runs main and exits non-zero, with the error on stderr, when it fails.
function run(main) {
  main().catch((err) => {
    process.stderr.write(`${err && err.stack ? err.stack : err}\n`);
    process.exit(1);
  });
}

// ATTRIBUTES are the CloudEvents attributes the tests compare.
const ATTRIBUTES = [
  'specversion', 'id', 'type', 'source', 'time', 'datacontenttype', 'subject',
  'correlationid', 'causationid', 'eventversion', 'partitionkey',
];

// describe returns an event's attributes as strings (time in ISO form) and
// its data, for a "sent" or "received" line.
function describe(ev) {
  const d = {};
  for (const a of ATTRIBUTES) {
    const v = ev[a];
    if (v === undefined || v === null) continue;
    d[a] = v instanceof Date ? v.toISOString() : String(v);
  }
  if (ev.data !== undefined) d.data = ev.data;
  return d;
}

// validated returns a copy of ev checked in strict mode: the SDK's deserializers
// (Kafka.toEvent, HTTP.toEvent) build events without validation.
function validated(ev) {
  return new CloudEvent({ ...ev }, true);
}

// plan returns the messages a producer sends, one per entry of CASES
// (comma-separated). With KEYS=n, entry i has the key key-(i mod n) and the
// per-key sequence number SEQ_BASE + floor(i / n); without, the key o-i and
// the sequence number SEQ_BASE + i. Both are in the payload.
function plan() {
  const cases = env('CASES').split(',');
  const keys = Number(env('KEYS', '0'));
  const base = Number(env('SEQ_BASE', '0'));
  return cases.map((c, i) => {
    const key = keys > 0 ? `key-${i % keys}` : `o-${base + i}`;
    const seq = keys > 0 ? base + Math.floor(i / keys) : base + i;
    return { case: c, index: i, key, data: { order_id: key, seq } };
  });
}

// headerText returns a header value as text (AMQP strings may arrive as
// Buffers, Kafka header values always do).
function headerText(v) {
  if (v === undefined || v === null) return '';
  if (Buffer.isBuffer(v)) return v.toString('utf8');
  if (Array.isArray(v)) return v.map(headerText).join(',');
  if (v instanceof Date) return v.toISOString();
  return String(v);
}

function headersText(headers) {
  const h = {};
  for (const [k, v] of Object.entries(headers || {})) h[k] = headerText(v);
  return h;
}

module.exports = { out, env, run, describe, validated, plan, headerText, headersText };
