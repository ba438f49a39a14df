// Package node proves eventkit's wire forms against real Node.js clients:
// amqplib on RabbitMQ and kafkajs on Kafka (kfake, in process, over TCP),
// with the CloudEvents JS SDK making and validating every CloudEvent, in
// both directions. It holds only tests and the Node.js scripts they run
// (npm ci --prefix internal/interop/node installs their dependencies).
package node
