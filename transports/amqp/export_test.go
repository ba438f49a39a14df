package amqp

// UnmarshalForTest exposes unmarshal to the external tests.
var UnmarshalForTest = unmarshal
