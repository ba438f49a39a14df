'use strict';
// The kafkajs client of the Kafka scripts: logs on stderr, never stdout.

const { Kafka, logLevel } = require('kafkajs');
const { env } = require('./lib');

function stderrLogger() {
  return ({ namespace, level, label, log }) => {
    const { message, ...extra } = log;
    process.stderr.write(`kafkajs ${label} [${namespace}] ${message} ${JSON.stringify(extra)}\n`);
  };
}

function client() {
  return new Kafka({
    clientId: 'interop-node',
    brokers: env('KAFKA_BROKERS').split(','),
    logLevel: logLevel.WARN,
    logCreator: stderrLogger,
    retry: { retries: 10 },
  });
}

module.exports = { client };
