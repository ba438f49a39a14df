'use strict';
// Publishes events to a RabbitMQ fanout exchange with amqplib, as a Node.js
// service that knows nothing of eventkit would.
//
// Environment: AMQP_URL, EXCHANGE, EVENT_TYPE, SOURCE, CASES (see lib.plan),
// KEYS, SEQ_BASE. Each case is one message:
//
//   properties   only the AMQP standard properties (messageId, type,
//                contentType with a charset, timestamp, correlationId,
//                appId), no headers
//   binary       a CloudEvent from the SDK in binary mode: the AMQP
//                binding's "cloudEvents:" application properties
//   structured   a CloudEvent from the SDK in structured mode (HTTP.structured:
//                application/cloudevents+json; charset=utf-8)
//   http_binary  the SDK's HTTP binary mode relayed onto AMQP ("ce-" headers)
//   binary_underscore
//                binary mode with "cloudEvents_" names
//   no_name, no_id, version_two, version_99, garbage, not_json, unknown
//                malformed ones, each with an interop_case header
//
// Prints {"kind":"sent",...} per message once the broker confirmed them all,
// then {"kind":"done"}.

const crypto = require('node:crypto');
const amqp = require('amqplib');
const { CloudEvent, HTTP } = require('cloudevents');
const { out, env, run, describe, plan } = require('./lib');

const TYPE = env('EVENT_TYPE');
const SOURCE = env('SOURCE', 'node-orders');
// The CloudEvents AMQP binding names attributes "cloudEvents:<name>".
const PREFIX = 'cloudEvents:';
// GOOD are the well-formed cases; the others get an interop_case header.
const GOOD = new Set(['properties', 'binary', 'structured', 'http_binary', 'binary_underscore']);

// properties is a message with only the standard properties.
function properties(p, { type = TYPE, id = crypto.randomUUID(), body } = {}) {
  const ts = Math.floor(Date.now() / 1000); // AMQP 0-9-1 timestamps are seconds
  const options = {
    contentType: 'application/json; charset=utf-8',
    timestamp: ts,
    correlationId: `corr-node-${p.index}`,
    appId: SOURCE,
    persistent: true,
  };
  if (type) options.type = type;
  if (id) options.messageId = id;
  const sent = {
    id, type, source: SOURCE, time: new Date(ts * 1000).toISOString(),
    correlationid: options.correlationId, datacontenttype: options.contentType, data: p.data,
  };
  return { content: body ?? JSON.stringify(p.data), options, sent };
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

// binary lays a CloudEvent out as the AMQP binding's binary mode: the
// attributes as "cloudEvents:" application properties, datacontenttype as
// the content-type property, the data as the body.
function binary(ev) {
  const headers = {};
  for (const [k, v] of Object.entries(ev)) {
    if (v === undefined || k === 'data' || k === 'data_base64' || k === 'datacontenttype') continue;
    headers[PREFIX + k] = String(v);
  }
  return {
    content: JSON.stringify(ev.data),
    options: { contentType: ev.datacontenttype, headers, persistent: true },
    sent: describe(ev),
  };
}

// structured is the SDK's structured mode (the HTTP binding's, whose body
// and content type the AMQP binding shares).
function structured(ev) {
  const m = HTTP.structured(ev);
  return {
    content: m.body,
    options: { contentType: m.headers['content-type'], persistent: true },
    sent: describe(ev),
  };
}

// httpBinary relays the SDK's HTTP binary mode onto AMQP, as a service
// forwarding HTTP CloudEvents would: "ce-" headers, content-type as the
// content-type property.
function httpBinary(ev) {
  const m = HTTP.binary(ev);
  const { 'content-type': contentType, ...headers } = m.headers;
  return { content: m.body, options: { contentType, headers, persistent: true }, sent: describe(ev) };
}

// underscore is binary mode with "cloudEvents_" names, for clients and
// brokers that reject ':' in header names.
function underscore(ev) {
  const m = binary(ev);
  const headers = {};
  for (const [k, v] of Object.entries(m.options.headers)) headers[k.replace(PREFIX, 'cloudEvents_')] = v;
  m.options.headers = headers;
  return m;
}

function build(p) {
  switch (p.case) {
    case 'properties':
      return properties(p);
    case 'binary':
      return binary(event(p));
    case 'http_binary':
      return httpBinary(event(p));
    case 'binary_underscore':
      return underscore(event(p));
    case 'structured':
      return structured(event(p, { eventversion: 2 })); // an integer: JSON has numbers
    case 'no_name':
      return properties(p, { type: '' });
    case 'no_id':
      return properties(p, { id: '' });
    case 'version_two':
      return binary(event(p, { eventversion: 'two' }));
    case 'version_99':
      return structured(event(p, { eventversion: 99 }));
    case 'garbage':
      return properties(p, { body: '{"order_id":' });
    case 'not_json': // all a structured event has is its body: nothing else names it
      return {
        content: 'this is not JSON {',
        options: { contentType: 'application/cloudevents+json', persistent: true },
        sent: { data: p.data },
      };
    case 'unknown':
      return binary(event(p, { type: 'interop.never_registered' }));
    default:
      throw new Error(`unknown case ${p.case}`);
  }
}

run(async () => {
  const exchange = env('EXCHANGE');
  const conn = await amqp.connect(env('AMQP_URL'));
  try {
    const ch = await conn.createConfirmChannel();
    let returned = null;
    ch.on('return', (m) => { returned = new Error(`unroutable: ${m.properties.messageId}`); });
    await ch.assertExchange(exchange, 'fanout', { durable: true });
    const sent = [];
    for (const p of plan()) {
      const m = build(p);
      if (!GOOD.has(p.case)) {
        m.options.headers = { ...m.options.headers, interop_case: p.case };
      }
      m.options.mandatory = true;
      if (!ch.publish(exchange, '', Buffer.from(m.content), m.options)) {
        await new Promise((resolve) => ch.once('drain', resolve));
      }
      sent.push({ kind: 'sent', case: p.case, index: p.index, event: m.sent });
      if (sent.length % 200 === 0) await ch.waitForConfirms();
    }
    await ch.waitForConfirms();
    if (returned) throw returned;
    for (const s of sent) out(s);
    out({ kind: 'done', count: sent.length });
    await ch.close();
  } finally {
    await conn.close();
  }
});
