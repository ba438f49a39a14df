'use strict';
// Consumes COUNT messages from RabbitMQ with amqplib, as a Node.js service
// would: declares EXCHANGE (a durable fanout, as eventkit does) and QUEUE
// bound to it, prints {"kind":"ready"}, then one {"kind":"received",...}
// per message and {"kind":"done"}.
//
// A message in the CloudEvents AMQP binding's binary mode ("cloudEvents:"
// application properties) is rebuilt with new CloudEvent({...}), and one in
// structured mode read with HTTP.toEvent: the SDK validates both, and an
// invalid event fails the script.
//
// Environment: AMQP_URL, EXCHANGE, QUEUE, COUNT.

const amqp = require('amqplib');
const { CloudEvent, HTTP } = require('cloudevents');
const { out, env, run, describe, validated, headerText, headersText } = require('./lib');

const PREFIX = 'cloudevents:';

function toCloudEvent(msg) {
  const headers = msg.properties.headers || {};
  const contentType = msg.properties.contentType || '';
  if (contentType.toLowerCase().startsWith('application/cloudevents+json')) {
    const ev = HTTP.toEvent({ headers: { 'content-type': contentType }, body: msg.content.toString('utf8') });
    return { mode: 'structured', ce: validated(ev) };
  }
  const attrs = {};
  for (const [k, v] of Object.entries(headers)) {
    if (k.toLowerCase().startsWith(PREFIX)) attrs[k.slice(PREFIX.length)] = headerText(v);
  }
  if (Object.keys(attrs).length === 0) return { mode: '', ce: null };
  let data = msg.content.toString('utf8');
  if (contentType.startsWith('application/json')) data = JSON.parse(data);
  return { mode: 'binary', ce: new CloudEvent({ ...attrs, datacontenttype: contentType || undefined, data }) };
}

run(async () => {
  const exchange = env('EXCHANGE');
  const queue = env('QUEUE');
  const count = Number(env('COUNT'));
  const conn = await amqp.connect(env('AMQP_URL'));
  try {
    const ch = await conn.createChannel();
    await ch.assertExchange(exchange, 'fanout', { durable: true });
    await ch.assertQueue(queue, { durable: false });
    await ch.bindQueue(queue, exchange, '');
    await ch.prefetch(100);
    out({ kind: 'ready' });
    let n = 0;
    await new Promise((resolve, reject) => {
      ch.consume(queue, (msg) => {
        try {
          const p = msg.properties;
          const { mode, ce } = toCloudEvent(msg);
          out({
            kind: 'received',
            index: n,
            mode,
            event: ce ? describe(ce) : undefined,
            props: {
              messageId: p.messageId,
              type: p.type,
              contentType: p.contentType,
              timestamp: p.timestamp,
              correlationId: p.correlationId,
              appId: p.appId,
              deliveryMode: p.deliveryMode,
            },
            headers: headersText(p.headers),
            body: msg.content.toString('utf8'),
          });
          ch.ack(msg);
          if (++n === count) resolve();
        } catch (err) {
          reject(err);
        }
      }).catch(reject);
    });
    out({ kind: 'done', count: n });
    await ch.close();
  } finally {
    await conn.close();
  }
});
