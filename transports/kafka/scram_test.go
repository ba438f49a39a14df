package kafka_test

import (
	"log/slog"
	"net/url"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/b2131a45/eventkit/internal/kafkatest"
	"github.com/b2131a45/eventkit/transports/internal/testutil"
	"github.com/b2131a45/eventkit/transports/kafka"
)

// TestSCRAM authenticates with SCRAM-SHA-256 and SCRAM-SHA-512 against a
// SASL-only cluster, the mechanism chosen by the URL's sasl_mechanism, and
// checks that a wrong password fails without showing either password.
func TestSCRAM(t *testing.T) {
	t.Parallel()
	for _, mech := range []kafka.Mechanism{kafka.MechanismSCRAMSHA256, kafka.MechanismSCRAMSHA512} {
		t.Run(string(mech), func(t *testing.T) {
			t.Parallel()
			const secret = "Sc=r,am-Pa55word"
			c := kafkatest.Cluster(t, kfake.EnableSASL(), kfake.Superuser(string(mech), "alice", secret))
			raw := "kafka://alice:" + url.PathEscape(secret) + "@" + strings.Join(c.ListenAddrs(), ",") +
				"?sasl_mechanism=" + string(mech) + "&heartbeat_interval=100ms&nack_resend_interval=10ms"
			cfg, err := kafka.ParseURL(raw)
			require.NoError(t, err)
			require.Equal(t, mech, cfg.Mechanism)
			var logs testutil.LogBuffer
			cfg.Logger = slog.New(slog.NewTextHandler(&logs, nil))
			authenticates(t, cfg, secret, "Wr0ng-"+secret, &logs)
		})
	}
}

func TestMechanismOption(t *testing.T) {
	t.Parallel()
	cfg, err := kafka.ParseURL("kafka://u:p@k:9092?tls=true&sasl_mechanism=PLAIN")
	require.NoError(t, err)
	require.Equal(t, kafka.MechanismPlain, cfg.Mechanism)
	require.NotNil(t, cfg.TLS)

	_, err = kafka.ParseURL("kafka://u:hunter2@k:9092?sasl_mechanism=GSSAPI")
	require.ErrorContains(t, err, `invalid value "GSSAPI" for option "sasl_mechanism"`)
	require.NotContains(t, err.Error(), "hunter2")
	_, err = kafka.ParseURL("kafka://k:9092?sasl_mechanism=SCRAM-SHA-256")
	require.ErrorContains(t, err, "needs Config.User")
	_, err = kafka.New(kafka.Config{Brokers: []string{"k:1"}, User: "u", Password: "p", Mechanism: "OAUTHBEARER"})
	require.ErrorContains(t, err, "Config.Mechanism")
}
