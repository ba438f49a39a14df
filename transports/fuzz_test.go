package transports_test

import (
	"strings"
	"testing"

	"github.com/b2131a45/eventkit/transports/amqp"
	"github.com/b2131a45/eventkit/transports/internal/redact"
	"github.com/b2131a45/eventkit/transports/kafka"
	"github.com/b2131a45/eventkit/transports/memory"
	"github.com/b2131a45/eventkit/transports/sql"
)

var fuzzSchemes = []string{"amqp", "amqps", "kafka", "postgres", "postgresql", "mysql", "mem"}

// FuzzParseURL feeds arbitrary URLs to the parsers transports.Open uses,
// built as scheme://user:password@rest so that the password is known: no
// parser may panic, and neither an error nor the redacted form of the URL
// may contain the password.
func FuzzParseURL(f *testing.F) {
	f.Add(uint8(0), "guest", "s3cr3t-pass", "127.0.0.1:5672/vhost?prefetch=10&heartbeat=5")
	f.Add(uint8(1), "u", "s3cr3t-pass", "rabbit:5671/?cacertfile=/ca.pem&server_name_indication=rabbit")
	f.Add(uint8(2), "alice", "s3cr3t-pass", "k1:9092,k2:9092?tls=true&sasl_mechanism=SCRAM-SHA-512")
	f.Add(uint8(2), "", "", "k1:9092?partitions=0&version=x")
	f.Add(uint8(3), "postgres", "s3cr3t-pass", "db:5432/test?sslmode=verify-full&sslrootcert=/ca.pem")
	f.Add(uint8(3), "p", "s3cr3t-pass", "db:5432/test?sslmode=bogus")
	f.Add(uint8(5), "root", "s3cr3t-pass", "db:3306/test?tls=skip-verify&poll_interval=5ms")
	f.Add(uint8(5), "root", "s3cr3t-pass", "db:3306/")
	f.Add(uint8(6), "", "", "?resend_interval=1s")
	f.Add(uint8(0), "a", "s3cr3t-pass", "[::1")
	f.Fuzz(func(t *testing.T, scheme uint8, user, password, rest string) {
		s := fuzzSchemes[int(scheme)%len(fuzzSchemes)]
		raw := s + "://"
		if user != "" || password != "" {
			raw += user + ":" + password + "@"
		}
		raw += rest
		var err error
		switch s {
		case "amqp", "amqps":
			_, err = amqp.ParseURL(raw)
		case "kafka":
			_, err = kafka.ParseURL(raw)
		case "postgres", "postgresql", "mysql":
			_, err = sql.ParseURL(raw)
		case "mem":
			_, err = memory.ParseURL(raw)
		}
		// Only a password that is distinctive and unambiguous can be checked:
		// at least 8 bytes, not found elsewhere in the URL, without the
		// characters that end or escape userinfo.
		if len(password) < 8 || strings.ContainsAny(password, "@:/?#%[]\\") ||
			strings.Contains(s+user+rest, password) || strings.Contains(redact.Mask, password) {
			return
		}
		if err != nil && strings.Contains(err.Error(), password) {
			t.Fatalf("error shows the password: %v", err)
		}
		if shown := redact.URL(raw); strings.Contains(shown, password) {
			t.Fatalf("redact.URL(%q) = %q", raw, shown)
		}
	})
}
