'use strict';
// Reads the events eventkit services publish, in any of eventkit's wire forms,
// as a consumer group: the durable queue <topic>_<group> bound to the topic's
// durable fanout exchange. Prints each as a CloudEvent, one JSON line per
// event, and exits after COUNT events.
//
//   AMQP_URL  amqp://guest:guest@localhost:5672 when unset
//   TOPIC     orders.order_created when unset
//   GROUP     audit when unset
//   COUNT     1 when unset

const amqp = require('amqplib');
const { CloudEvent } = require('cloudevents');

const url = process.env.AMQP_URL || 'amqp://guest:guest@localhost:5672';
const topic = process.env.TOPIC || 'orders.order_created';
const queue = `${topic}_${process.env.GROUP || 'audit'}`;
const count = Number(process.env.COUNT || 1);

// The eventkit form's headers and the CloudEvents attributes they hold.
const EVENTKIT = {
  event_id: 'id', name: 'type', source: 'source', occurred_at: 'time', content_type: 'datacontenttype',
  correlation_id: 'correlationid', causation_id: 'causationid', event_version: 'eventversion',
  partition_key: 'partitionkey', traceparent: 'traceparent', tracestate: 'tracestate',
};
const CE = /^(cloudevents[:_]|ce[-_])/i; // binary mode: "cloudEvents:id", …

// toCloudEvent turns a delivery into a CloudEvent; the SDK throws when it is not a valid one.
function toCloudEvent({ properties: p, content }) {
  const body = content.toString();
  if (/^application\/cloudevents\+json/i.test(p.contentType || '')) {
    return new CloudEvent(JSON.parse(body)); // structured mode: the body is the event
  }
  // The standard properties, then the headers (eventkit's or binary mode's), which win.
  const attrs = { id: p.messageId, type: p.type, source: p.appId || 'eventkit', datacontenttype: p.contentType,
    correlationid: p.correlationId, time: p.timestamp ? new Date(p.timestamp * 1000).toISOString() : undefined };
  for (const [k, v] of Object.entries(p.headers || {})) {
    const name = EVENTKIT[k] || (CE.test(k) && k.replace(CE, '').toLowerCase());
    if (name) attrs[name] = String(v);
  }
  attrs.data = /[/+]json(;|$)/i.test(attrs.datacontenttype || '') ? JSON.parse(body) : body;
  return new CloudEvent(Object.fromEntries(Object.entries(attrs).filter(([, v]) => v !== undefined)));
}

async function main() {
  const conn = await amqp.connect(url);
  const ch = await conn.createChannel();
  await ch.assertExchange(topic, 'fanout', { durable: true }); // as eventkit declares them
  await ch.assertQueue(queue, { durable: true });
  await ch.bindQueue(queue, topic, '');
  await ch.prefetch(10);
  let n = 0;
  let done;
  const finished = new Promise((resolve) => { done = resolve; });
  await ch.consume(queue, (msg) => {
    if (n === count) return; // finishing: RabbitMQ requeues what is left unacked
    const event = toCloudEvent(msg); // an invalid event stops the program, unacked: RabbitMQ keeps it
    console.log(JSON.stringify(event));
    ch.ack(msg);
    if (++n === count) done();
  });
  await finished;
  await ch.close(); // the acks go out before the channel closes
  await conn.close();
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
