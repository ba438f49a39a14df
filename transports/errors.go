package transports

import (
	"errors"
	"strconv"

	"github.com/b2131a45/eventkit/transports/internal/errs"
)

// ErrClosed is returned by Publish, Subscribe and Subscriber after Close.
var ErrClosed = errs.ErrClosed

// ErrNoGroup is returned by Subscriber for an empty group name.
var ErrNoGroup = errs.ErrNoGroup

// ErrInvalidName is wrapped by the error for a topic or consumer-group
// name outside 1 to 249 of A-Z a-z 0-9 . _ : - (not starting with . : or
// -): every transport checks names before they reach SQL or the broker.
var ErrInvalidName = errs.ErrInvalidName

// ErrUnknownScheme is wrapped by the *URLError of a URL whose scheme no
// transport handles.
var ErrUnknownScheme = errors.New("unknown scheme")

// PublishError lists the messages of a Publish call that the broker did
// not confirm (AMQP, Kafka), and why.
type PublishError = errs.PublishError

// URLError reports a URL that Open cannot use: unknown scheme, missing
// host, unknown or invalid option. URL has its password masked.
type URLError struct {
	URL string
	Err error
}

func (e *URLError) Error() string {
	return "transports: invalid URL " + strconv.Quote(e.URL) + ": " + e.Err.Error()
}

func (e *URLError) Unwrap() error { return e.Err }
