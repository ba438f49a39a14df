// Package cesdk_test proves that eventkit and the official CloudEvents Go SDK
// (github.com/cloudevents/sdk-go/v2) understand each other, in both
// directions, over the SDK's own protocol bindings:
//
//   - Kafka (kfake, in process): the SDK's kafka_sarama sender and receiver
//     (a Sarama consumer group) against eventkit's kafka:// transport, in
//     binary and structured content mode;
//   - RabbitMQ: the SDK's AMQP 1.0 binding (Azure/go-amqp, through the
//     broker's rabbitmq_amqp1_0 plugin) against eventkit's amqp:// transport,
//     which speaks AMQP 0-9-1.
//
// Each test sends 1,000 events and checks every envelope field and the data
// of every one of them on the other side, and that each arrived once.
//
// The tests need RabbitMQ at testenv.AMQPURL() with the rabbitmq_amqp1_0
// plugin enabled (AMQP 1.0 on the same port); without it they skip, and fail
// under CI=true. Kafka is always there: kfake runs in the test process.
//
// One limit of RabbitMQ before 3.13, which the tests assert on such a
// broker: its AMQP 1.0 plugin hands a message that an AMQP 0-9-1 client
// published to AMQP 1.0 consumers without mapping the 0-9-1 headers to
// application properties, so the "cloudEvents:" attributes of eventkit's
// binary mode (?wire=cloudevents) never reach an AMQP 1.0 receiver there.
// eventkit → an AMQP 1.0 CloudEvents receiver needs structured mode
// (?wire=cloudevents-structured) on RabbitMQ 3.10 – 3.12; from 3.13 on the
// broker maps headers to application properties, and the test then asserts
// that binary mode works as well. The other way (an AMQP 1.0 sender → eventkit) works in both
// modes on every version: eventkit decodes the x-amqp-1.0-app-properties
// header in which RabbitMQ 3.x passes the application properties on.
package cesdk_test

import (
	"testing"

	"go.uber.org/goleak"

	"github.com/b2131a45/eventkit/internal/testenv"
)

func TestMain(m *testing.M) {
	testenv.Main(m,
		// Sarama starts one process-wide metrics ticker (rcrowley/go-metrics) that never stops.
		goleak.IgnoreTopFunction("github.com/rcrowley/go-metrics.(*meterArbiter).tick"),
	)
}
