package middleware

// handlerStack is the stack Recover reserves for a handler's goroutine
// before the chain runs. Watermill's router starts a goroutine per message,
// with a small stack (8 KiB) that the chain, a typed handler's decoding and
// a database driver outgrow twice; each growth copies the stack and walks
// every frame on it, deep in the call chain: 9 % of the consumer's CPU in
// the bench's consume scenario (cmd/eventkit-bench). Growing it
// once, at the top where the stack is nearly empty, costs a fraction of
// that; a goroutine whose stack is large enough already does not grow.
const handlerStack = 16 << 10

// reserveStack makes the runtime grow the calling goroutine's stack, if it
// is smaller, to hold a handlerStack frame, in one step.
//
//go:noinline
func reserveStack() {
	var frame [handlerStack]byte
	touch(frame[:])
}

// touch keeps frame alive (and so the frame's size) without letting it
// escape.
//
//go:noinline
func touch(b []byte) {
	if len(b) > 0 {
		b[len(b)-1] = 1
	}
}
