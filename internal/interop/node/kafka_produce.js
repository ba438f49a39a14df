'use strict';
// Produces events to a Kafka topic with kafkajs and its default partitioner
// (the Java client's murmur2), as a Node.js service that knows nothing of
// eventkit would.
//
// Environment: KAFKA_BROKERS, TOPIC, EVENT_TYPE, SOURCE, CASES (see
// lib.plan), KEYS, SEQ_BASE. Each case is one record, keyed by its key:
//
//   plain        eventkit's header names written by hand (name, event_id,
//                event_version, correlation_id, source, content_type with a
//                charset), occurred_at in epoch milliseconds
//   binary       a CloudEvent from the SDK, Kafka.binary ("ce_" headers)
//   structured   a CloudEvent from the SDK, Kafka.structured
//   http_binary  the SDK's HTTP binary mode relayed onto Kafka ("ce-" headers)
//   no_name, no_id, version_two, version_99, garbage, not_json, unknown
//                malformed ones, each with an interop_case header
//
// Prints {"kind":"sent",...} per record once all were acknowledged, then
// {"kind":"done"}.

const crypto = require('node:crypto');
const { Partitioners } = require('kafkajs');
const { CloudEvent, HTTP, Kafka } = require('cloudevents');
const { out, env, run, describe, plan } = require('./lib');
const { client } = require('./kafka');

const TYPE = env('EVENT_TYPE');
const SOURCE = env('SOURCE', 'node-orders');
// GOOD are the well-formed cases; the others get an interop_case header.
const GOOD = new Set(['plain', 'binary', 'structured', 'http_binary']);

// plain is a record with eventkit's headers written by hand.
function plain(p, { name = TYPE, id = crypto.randomUUID(), value } = {}) {
  const ms = Date.now();
  const headers = {
    event_version: '2',
    correlation_id: `corr-node-${p.index}`,
    source: SOURCE,
    content_type: 'application/json; charset=utf-8',
    occurred_at: String(ms),
  };
  if (name) headers.name = name;
  if (id) headers.event_id = id;
  const sent = {
    id, type: name, source: SOURCE, time: new Date(ms).toISOString(), correlationid: headers.correlation_id,
    eventversion: '2', datacontenttype: headers.content_type, partitionkey: p.key, data: p.data,
  };
  return { record: { key: p.key, value: value ?? JSON.stringify(p.data), headers, timestamp: String(ms) }, sent };
}

function event(p, attrs = {}) {
  return new CloudEvent({
    type: TYPE,
    source: SOURCE,
    datacontenttype: 'application/json',
    correlationid: `corr-node-${p.index}`,
    eventversion: '2',
    partitionkey: p.key,
    data: p.data,
    ...attrs,
  });
}

// record turns the SDK's Kafka message into a kafkajs record. kafkajs takes
// a string or Buffer value, so JSON data is serialized, and it throws on
// the undefined header values Kafka.binary leaves for unset attributes
// (ce_subject…), so those are left out.
function record(m) {
  const value = typeof m.value === 'string' || Buffer.isBuffer(m.value) ? m.value : JSON.stringify(m.value);
  const headers = {};
  for (const [k, v] of Object.entries(m.headers)) {
    if (v !== undefined && v !== null) headers[k] = String(v);
  }
  return { key: m.key, value, headers, timestamp: m.timestamp };
}

function binary(ev) {
  return { record: record(Kafka.binary(ev)), sent: describe(ev) };
}

function structured(ev) {
  return { record: record(Kafka.structured(ev)), sent: describe(ev) };
}

// httpBinary relays the SDK's HTTP binary mode onto Kafka, as a service
// forwarding HTTP CloudEvents would: "ce-" headers and content-type.
function httpBinary(ev) {
  const m = HTTP.binary(ev);
  return { record: { key: ev.partitionkey, value: m.body, headers: m.headers, timestamp: String(Date.parse(ev.time)) }, sent: describe(ev) };
}

function build(p) {
  switch (p.case) {
    case 'plain':
      return plain(p);
    case 'binary':
      return binary(event(p));
    case 'http_binary':
      return httpBinary(event(p));
    case 'structured':
      return structured(event(p, { eventversion: 2 })); // an integer: JSON has numbers
    case 'no_name': {
      const m = binary(event(p));
      delete m.record.headers.ce_type;
      return m;
    }
    case 'no_id':
      return plain(p, { id: '' });
    case 'version_two':
      return binary(event(p, { eventversion: 'two' }));
    case 'version_99':
      return structured(event(p, { eventversion: 99 }));
    case 'garbage':
      return plain(p, { value: '{"order_id":' });
    case 'not_json':
      return {
        record: { key: p.key, value: 'this is not JSON {', headers: { 'content-type': 'application/cloudevents+json' } },
        sent: { data: p.data },
      };
    case 'unknown':
      return binary(event(p, { type: 'interop.never_registered' }));
    default:
      throw new Error(`unknown case ${p.case}`);
  }
}

run(async () => {
  const topic = env('TOPIC');
  const producer = client().producer({ createPartitioner: Partitioners.DefaultPartitioner, allowAutoTopicCreation: true });
  await producer.connect();
  try {
    const sent = [];
    let batch = [];
    const flush = async () => {
      if (batch.length > 0) await producer.send({ topic, acks: -1, messages: batch });
      batch = [];
    };
    for (const p of plan()) {
      const m = build(p);
      if (!GOOD.has(p.case)) {
        m.record.headers = { ...m.record.headers, interop_case: p.case };
      }
      batch.push(m.record);
      sent.push({ kind: 'sent', case: p.case, index: p.index, event: m.sent });
      if (batch.length === 100) await flush();
    }
    await flush();
    for (const s of sent) out(s);
    out({ kind: 'done', count: sent.length });
  } finally {
    await producer.disconnect();
  }
});
