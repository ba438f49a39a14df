package errs

import (
	"fmt"
	"regexp"
)

// ErrInvalidName is wrapped by the error for a topic or consumer-group name
// that no transport accepts. It is permanent: publishing to the same topic
// again cannot succeed.
var ErrInvalidName = Refused("invalid name")

// MaxNameLength is the longest topic or group name: Kafka's limit on topic
// names.
const MaxNameLength = 249

var validName = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9._:-]*$`)

// CheckName returns nil when name, a topic or a consumer group (kind says
// which, for the error), is 1 to MaxNameLength letters, digits, '.', '_',
// ':' and '-', not starting with '.', ':' or '-'. Names go into SQL table
// names, AMQP exchange and queue names and Kafka topics; this is what all
// of them accept, and it leaves no room for quotes, spaces, slashes or
// control characters. The error names the bad value (quoted, so control
// characters show) and wraps ErrInvalidName.
func CheckName(kind, name string) error {
	if len(name) > MaxNameLength {
		return fmt.Errorf("%w: %s %.40q… is %d bytes long, longer than %d", ErrInvalidName, kind, name, len(name), MaxNameLength)
	}
	if !validName.MatchString(name) {
		return fmt.Errorf("%w: %s %q: want 1 to %d of A-Z a-z 0-9 . _ : -, not starting with . : or -", ErrInvalidName, kind, name, MaxNameLength)
	}
	return nil
}
