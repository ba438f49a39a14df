'use strict';
// Publishes one orders.order_created event that an eventkit service handles:
// a CloudEvent in binary content mode (its attributes as "cloudEvents:"
// headers, the data as the body) with the standard AMQP properties, on the
// topic's durable fanout exchange. Prints the event as one JSON line.
//
//   AMQP_URL  amqp://guest:guest@localhost:5672 when unset
//   TOPIC     orders.order_created when unset (eventkit's default: the event name)

const crypto = require('node:crypto');
const amqp = require('amqplib');
const { CloudEvent } = require('cloudevents');

const url = process.env.AMQP_URL || 'amqp://guest:guest@localhost:5672';
const topic = process.env.TOPIC || 'orders.order_created';

async function main() {
  // The SDK validates the event (strict mode is its default).
  const event = new CloudEvent({
    type: 'orders.order_created', // the name eventkit registered the event under
    source: 'shop-node', // the producing service
    datacontenttype: 'application/json',
    correlationid: crypto.randomUUID(), // eventkit's correlation id: the conversation
    eventversion: '1', // the payload's schema version (1 when left out)
    partitionkey: 'o-1', // keeps an order's events in order on Kafka
    data: { order_id: 'o-1', total_cents: 4200 },
  });
  // Binary mode: every attribute but data and datacontenttype as a header.
  const headers = {};
  for (const [name, value] of Object.entries(event.toJSON())) {
    if (value !== undefined && name !== 'data' && name !== 'datacontenttype') {
      headers[`cloudEvents:${name}`] = String(value);
    }
  }
  const conn = await amqp.connect(url);
  try {
    const ch = await conn.createConfirmChannel();
    await ch.assertExchange(topic, 'fanout', { durable: true }); // as eventkit declares it
    ch.publish(topic, '', Buffer.from(JSON.stringify(event.data)), {
      headers,
      persistent: true,
      contentType: event.datacontenttype,
      messageId: event.id,
      type: event.type,
      appId: event.source,
      correlationId: event.correlationid,
      timestamp: Math.floor(Date.parse(event.time) / 1000), // AMQP 0-9-1: seconds
    });
    await ch.waitForConfirms(); // RabbitMQ has it
  } finally {
    await conn.close();
  }
  console.log(JSON.stringify(event));
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
