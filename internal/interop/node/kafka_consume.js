'use strict';
// Consumes COUNT records of TOPIC from the beginning with a kafkajs consumer
// group, as a Node.js service would, and prints one {"kind":"received",...}
// per record, then {"kind":"done"}.
//
// A CloudEvent (binary or structured mode) is read with the SDK's
// Kafka.toEvent and validated in strict mode; an invalid one fails the
// script. Each line also carries the partition kafkajs's default
// partitioner picks for the record's key, to compare with the partition
// the producer chose.
//
// Environment: KAFKA_BROKERS, TOPIC, GROUP, COUNT.

const { Partitioners } = require('kafkajs');
const { Kafka } = require('cloudevents');
const { out, env, run, describe, validated, headersText } = require('./lib');
const { client } = require('./kafka');

run(async () => {
  const topic = env('TOPIC');
  const count = Number(env('COUNT'));
  const kafka = client();

  const admin = kafka.admin();
  await admin.connect();
  const { topics } = await admin.fetchTopicMetadata({ topics: [topic] });
  await admin.disconnect();
  const partitionMetadata = topics[0].partitions;
  const partitioner = Partitioners.DefaultPartitioner();

  const consumer = kafka.consumer({ groupId: env('GROUP'), sessionTimeout: 6000, heartbeatInterval: 500 });
  await consumer.connect();
  try {
    await consumer.subscribe({ topic, fromBeginning: true });
    let n = 0;
    await new Promise((resolve, reject) => {
      consumer.run({
        eachMessage: async ({ partition, message }) => {
          if (n >= count) return;
          try {
            const headers = headersText(message.headers);
            const key = message.key === null ? null : message.key.toString('utf8');
            const value = message.value === null ? '' : message.value.toString('utf8');
            const km = { key, value, headers, timestamp: message.timestamp };
            let mode = '';
            let ev;
            if (Kafka.isEvent(km)) {
              const ce = validated(Kafka.toEvent(km));
              mode = (headers['content-type'] || '').startsWith('application/cloudevents') ? 'structured' : 'binary';
              ev = describe(ce);
            }
            out({
              kind: 'received',
              index: n,
              mode,
              event: ev,
              partition,
              expectedPartition: key === null ? null : partitioner({ topic, partitionMetadata, message: { key } }),
              offset: message.offset,
              key,
              timestamp: message.timestamp,
              headers,
              body: value,
            });
            if (++n === count) resolve();
          } catch (err) {
            reject(err);
          }
        },
      }).catch(reject);
    });
    out({ kind: 'done', count: n });
  } finally {
    await consumer.disconnect();
  }
});
