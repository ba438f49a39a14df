package amqp

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"
)

// fakeBroker keeps a channel's unacked deliveries as RabbitMQ does and
// fails, as RabbitMQ closes the channel, on a tag it does not hold.
type fakeBroker struct {
	mu       sync.Mutex
	unacked  map[uint64]bool
	acked    []uint64
	nacked   []uint64
	frames   int
	multiple int
	err      error
}

func newFakeBroker(tags uint64) *fakeBroker {
	b := &fakeBroker{unacked: map[uint64]bool{}}
	for t := uint64(1); t <= tags; t++ {
		b.unacked[t] = true
	}
	return b
}

func (b *fakeBroker) Ack(tag uint64, multiple bool) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.frames++
	if !b.unacked[tag] {
		b.fail(fmt.Errorf("PRECONDITION_FAILED - unknown delivery tag %d", tag))
		return nil
	}
	if !multiple {
		delete(b.unacked, tag)
		b.acked = append(b.acked, tag)
		return nil
	}
	b.multiple++
	for t := range b.unacked {
		if t <= tag {
			delete(b.unacked, t)
			b.acked = append(b.acked, t)
		}
	}
	return nil
}

func (b *fakeBroker) Nack(tag uint64, multiple, requeue bool) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.frames++
	if multiple || !requeue || !b.unacked[tag] {
		b.fail(fmt.Errorf("unexpected nack of %d (multiple %v, requeue %v)", tag, multiple, requeue))
		return nil
	}
	delete(b.unacked, tag)
	b.nacked = append(b.nacked, tag)
	return nil
}

func (b *fakeBroker) fail(err error) {
	if b.err == nil {
		b.err = err
	}
}

func TestAcker_SettlesEachDeliveryOnceAsItsHandlerDid(t *testing.T) {
	for seed := range uint64(200) {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			t.Parallel()
			r := rand.New(rand.NewPCG(seed, 1))
			n := uint64(1 + r.IntN(300))
			b := newFakeBroker(n)
			a := newAcker(b, func(err error) { t.Errorf("ack error: %v", err) })
			want := map[uint64]bool{} // tag → acked (else nacked)
			var wg sync.WaitGroup
			tags := make(chan uint64)
			for range 1 + r.IntN(8) {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for tag := range tags {
						if tag%7 == 3 {
							a.nack(tag)
						} else {
							a.ack(tag)
						}
					}
				}()
			}
			for tag := uint64(1); tag <= n; tag++ {
				a.track(tag)
				want[tag] = tag%7 != 3
			}
			order := make([]uint64, 0, n)
			for tag := uint64(1); tag <= n; tag++ {
				order = append(order, tag)
			}
			r.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
			for _, tag := range order {
				tags <- tag
			}
			close(tags)
			wg.Wait()
			a.stop()
			b.mu.Lock()
			defer b.mu.Unlock()
			if b.err != nil {
				t.Fatal(b.err)
			}
			if len(b.unacked) != 0 {
				t.Fatalf("%d deliveries left unsettled", len(b.unacked))
			}
			for _, tag := range b.acked {
				if !want[tag] {
					t.Fatalf("tag %d acked, its handler nacked it", tag)
				}
			}
			for _, tag := range b.nacked {
				if want[tag] {
					t.Fatalf("tag %d nacked, its handler acked it", tag)
				}
			}
		})
	}
}

func TestAcker_CoalescesTheSettledFrontIntoOneFrame(t *testing.T) {
	b := newFakeBroker(10)
	a := &acker{ch: b, wake: make(chan struct{}, 1), done: make(chan struct{})}
	for tag := uint64(1); tag <= 10; tag++ {
		a.track(tag)
	}
	// Before the acker runs: 1–4 acked, 5 in flight, 6 acked, 7 nacked.
	for _, tag := range []uint64{2, 1, 4, 3, 6} {
		a.ack(tag)
	}
	a.nack(7)
	go a.run()
	waitFor(t, func() bool { b.mu.Lock(); defer b.mu.Unlock(); return len(b.unacked) == 4 })
	b.mu.Lock()
	if b.frames != 3 || b.multiple != 1 {
		t.Fatalf("frames %d (multiple %d), want 3: nack 7, ack 1–4 at once, ack 6 alone", b.frames, b.multiple)
	}
	b.mu.Unlock()
	// 5 completes: the front is now 5 and 6 (sent already): ack 5 alone, by
	// a multiple ack that must not name 6.
	a.ack(5)
	for tag := uint64(8); tag <= 10; tag++ {
		a.ack(tag)
	}
	a.stop()
	if b.err != nil {
		t.Fatal(b.err)
	}
	got := slices.Sorted(slices.Values(b.acked))
	if want := []uint64{1, 2, 3, 4, 5, 6, 8, 9, 10}; !slices.Equal(got, want) {
		t.Fatalf("acked %v, want %v", got, want)
	}
	if len(a.window) != 0 {
		t.Fatalf("window still holds %v", a.window)
	}
}

func TestAcker_StopLeavesInFlightDeliveriesToTheBroker(t *testing.T) {
	b := newFakeBroker(3)
	a := newAcker(b, nil)
	for tag := uint64(1); tag <= 3; tag++ {
		a.track(tag)
	}
	a.ack(1)
	a.ack(3)
	a.stop()
	if b.err != nil {
		t.Fatal(b.err)
	}
	if !b.unacked[2] || len(b.unacked) != 1 {
		t.Fatalf("unacked %v, want only 2 (in flight at stop)", b.unacked)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 5s")
		}
		time.Sleep(time.Millisecond)
	}
}
