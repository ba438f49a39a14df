package console

import (
	"context"
	"fmt"
	"html/template"
	"math"
	"strings"
	"sync"
	"time"

	"github.com/b2131a45/eventkit/forwarder"
)

// sample is one reading of an outbox's counters.
type sample struct {
	At    time.Time
	Stats forwarder.Stats
	Err   string
}

// ring keeps the last samples of an outbox, oldest first.
type ring struct {
	mu   sync.Mutex
	buf  []sample
	next int
	full bool
}

func newRing(n int) *ring { return &ring{buf: make([]sample, max(n, 2))} }

func (r *ring) add(s sample) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.buf[r.next] = s
	r.next = (r.next + 1) % len(r.buf)
	r.full = r.full || r.next == 0
}

func (r *ring) all() []sample {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.full {
		return append([]sample(nil), r.buf[:r.next]...)
	}
	return append(append([]sample(nil), r.buf[r.next:]...), r.buf[:r.next]...)
}

func (r *ring) last() (sample, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.full && r.next == 0 {
		return sample{}, false
	}
	return r.buf[(r.next-1+len(r.buf))%len(r.buf)], true
}

// outboxState is a shown outbox with its samples.
type outboxState struct {
	Outbox
	key  string // its URL segment
	ring *ring
	mu   sync.Mutex // one sampling at a time
}

// sample reads every outbox's counters, unless the last sample is younger
// than SampleInterval (force: Run's ticks, which are due).
func (c *Console) sample(ctx context.Context, force bool) {
	var wg sync.WaitGroup
	for _, o := range c.outboxes {
		if last, ok := o.ring.last(); ok && !force && time.Since(last.At) < c.cfg.SampleInterval {
			continue
		}
		if !o.mu.TryLock() {
			if _, ok := o.ring.last(); ok {
				continue // being sampled: the page shows the last sample
			}
			o.mu.Lock() // the first sample is being read: wait for it
			if _, ok := o.ring.last(); ok && !force {
				o.mu.Unlock()
				continue
			}
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer o.mu.Unlock()
			sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			defer cancel()
			st, err := o.Outbox.Outbox.Stats(sctx)
			s := sample{At: time.Now(), Stats: st}
			if err != nil {
				s.Err = err.Error()
			}
			o.ring.add(s)
		}()
	}
	wg.Wait()
}

// point is a value at a time, for a chart.
type point struct {
	At time.Time
	V  float64
}

// series returns the lag (seconds) and the relay throughput (rows marked
// published per second between two samples; a purge in between, which
// lowers the count, leaves a gap) of the samples.
func series(samples []sample) (lag, rate []point) {
	var prev *sample
	for i := range samples {
		s := &samples[i]
		if s.Err != "" {
			prev = nil
			continue
		}
		lag = append(lag, point{s.At, s.Stats.OldestPendingAge.Seconds()})
		if prev != nil {
			dt := s.At.Sub(prev.At).Seconds()
			if d := s.Stats.Published - prev.Stats.Published; d >= 0 && dt > 0 {
				rate = append(rate, point{s.At, float64(d) / dt})
			}
		}
		prev = s
	}
	return lag, rate
}

// lastActivity is what the samples say of the relay's last work: the last
// interval in which rows were published, and how many.
func lastActivity(samples []sample) (rows int64, from, to time.Time) {
	for i := len(samples) - 1; i > 0; i-- {
		a, b := samples[i-1], samples[i]
		if a.Err == "" && b.Err == "" && b.Stats.Published > a.Stats.Published {
			return b.Stats.Published - a.Stats.Published, a.At, b.At
		}
	}
	return 0, time.Time{}, time.Time{}
}

// chart is an inline SVG line chart of points over the last window.
type chart struct {
	Title, Unit string
	SVG         template.HTML
}

const chartW, chartH, chartPad = 560.0, 120.0, 28.0

// svgChart draws points over [now-window, now]. Every value in the SVG is
// a number the console computed or an escaped label: no payload text.
func svgChart(title, unit string, pts []point, window time.Duration, now time.Time) chart {
	maxV := 0.0
	for _, p := range pts {
		maxV = math.Max(maxV, p.V)
	}
	top := niceCeil(maxV)
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 %.0f %.0f" width="%.0f" height="%.0f" role="img" aria-label="%s">`,
		chartW, chartH, chartW, chartH, template.HTMLEscapeString(title))
	fmt.Fprintf(&b, `<rect x="%.0f" y="4" width="%.0f" height="%.0f" fill="#fafafa" stroke="#ddd"/>`, chartPad, chartW-chartPad-4, chartH-chartPad)
	for i := 1; i < 4; i++ {
		y := 4 + (chartH-chartPad)*float64(i)/4
		fmt.Fprintf(&b, `<line x1="%.0f" y1="%.1f" x2="%.0f" y2="%.1f" stroke="#eee"/>`, chartPad, y, chartW-4, y)
	}
	fmt.Fprintf(&b, `<text x="2" y="14" font-size="10" fill="#666">%s</text>`, template.HTMLEscapeString(short(top)))
	fmt.Fprintf(&b, `<text x="2" y="%.0f" font-size="10" fill="#666">0</text>`, chartH-chartPad+4)
	fmt.Fprintf(&b, `<text x="%.0f" y="%.0f" font-size="10" fill="#666">−%s</text>`, chartPad, chartH-8, template.HTMLEscapeString(dur(window)))
	fmt.Fprintf(&b, `<text x="%.0f" y="%.0f" font-size="10" fill="#666" text-anchor="end">now</text>`, chartW-4, chartH-8)
	if len(pts) == 0 {
		fmt.Fprintf(&b, `<text x="%.0f" y="%.0f" font-size="12" fill="#999" text-anchor="middle">no samples yet</text>`, chartW/2, chartH/2)
	}
	var line strings.Builder
	start := now.Add(-window)
	var x, y float64
	shown := 0
	for _, p := range pts {
		if p.At.Before(start) {
			continue
		}
		x = chartPad + (chartW-chartPad-4)*p.At.Sub(start).Seconds()/window.Seconds()
		y = 4 + (chartH-chartPad)*(1-p.V/top)
		fmt.Fprintf(&line, "%.1f,%.1f ", x, y)
		shown++
	}
	if shown > 0 { // the latest value, also when it is the only one
		fmt.Fprintf(&b, `<circle cx="%.1f" cy="%.1f" r="2.5" fill="#2b6cb0"/>`, x, y)
	}
	if shown > 1 {
		fmt.Fprintf(&b, `<polyline fill="none" stroke="#2b6cb0" stroke-width="1.5" points="%s"/>`, strings.TrimSpace(line.String()))
	}
	b.WriteString(`</svg>`)
	return chart{Title: title, Unit: unit, SVG: template.HTML(b.String())} //nolint:gosec // numbers and escaped labels only
}

// niceCeil rounds v up to 1, 2 or 5 times a power of ten (at least 1).
func niceCeil(v float64) float64 {
	if v <= 1 {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 5, 10} {
		if m*p >= v {
			return m * p
		}
	}
	return 10 * p
}

func short(v float64) string {
	switch {
	case v >= 1e6:
		return fmt.Sprintf("%.0fM", v/1e6)
	case v >= 1e3:
		return fmt.Sprintf("%.0fk", v/1e3)
	}
	return fmt.Sprintf("%g", v)
}
