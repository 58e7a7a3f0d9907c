package amst

import (
	"context"
	"sync"
	"time"
)

// climber is the stream-count hill climb, a pure state machine: each call to
// next gets the goodput measured with the current count over one tune window
// and returns the count for the next window. It probes upwards by half the
// current count while each step gains at least gain (relative), steps back
// when a probe does not pay, holds, then probes downwards by a quarter while
// goodput stays within gain/2 of the reference, and so on alternately.
//
// Goodput windows on WAN paths vary by tens of percent, so one window
// decides nothing: the reference is the mean of tuneConfirm windows; an
// upward probe is kept only if every one of its windows gains, and a
// downward probe is undone only if every one of its windows loses. Under
// noise the climb thus prefers fewer streams instead of ratcheting upwards
// on lucky windows (extra streams cost CPU and queueing on a saturated
// path); a real knee still shows in every window.
type climber struct {
	min, max int
	gain     float64
	n        int
	samples  []float64 // windows measured at n in the current phase

	phase  int
	refN   int
	refG   float64
	hold   int
	upNext bool
}

const (
	phaseMeasure = iota // measure the reference at n
	phaseUp
	phaseDown
	phaseHold
)

// holdIntervals is how many tune windows the climber rests after a probe
// that did not pay, before probing the other way.
const holdIntervals = 3

// tuneConfirm is how many tune windows make one measurement.
const tuneConfirm = 2

func newClimber(min, max, start int, gain float64) *climber {
	c := &climber{min: min, max: max, gain: gain, upNext: true}
	c.reset(start)
	return c
}

// reset moves to n and restarts the climb from there.
func (c *climber) reset(n int) {
	c.n = clampInt(n, c.min, c.max)
	c.phase = phaseMeasure
	c.upNext = true
	c.samples = c.samples[:0]
}

func (c *climber) set(n int) int {
	c.n = clampInt(n, c.min, c.max)
	return c.n
}

// measured returns the mean, minimum and maximum of the windows collected
// in the current phase once there are tuneConfirm of them, and clears them.
func (c *climber) measured(goodput float64) (mean, least, most float64, ok bool) {
	c.samples = append(c.samples, goodput)
	if len(c.samples) < tuneConfirm {
		return 0, 0, 0, false
	}
	least, most = c.samples[0], c.samples[0]
	for _, g := range c.samples {
		mean += g
		least, most = min(least, g), max(most, g)
	}
	mean /= float64(len(c.samples))
	c.samples = c.samples[:0]
	return mean, least, most, true
}

func (c *climber) next(goodput float64) int {
	if c.phase == phaseHold {
		c.hold--
		if c.hold <= 0 {
			c.phase = phaseMeasure
		}
		return c.n
	}
	mean, least, most, ok := c.measured(goodput)
	if !ok {
		return c.n
	}
	switch c.phase {
	case phaseMeasure:
		c.refN, c.refG = c.n, mean
		if c.upNext && c.n < c.max {
			c.phase = phaseUp
			return c.set(c.n + max(1, c.n/2))
		}
		if c.n > c.min {
			c.phase = phaseDown
			return c.set(c.n - max(1, c.n/4))
		}
		c.phase, c.hold, c.upNext = phaseHold, holdIntervals, !c.upNext
	case phaseUp:
		if least >= c.refG*(1+c.gain) {
			c.refN, c.refG = c.n, mean
			if c.n < c.max {
				return c.set(c.n + max(1, c.n/2))
			}
		} else {
			c.set(c.refN)
		}
		c.phase, c.hold, c.upNext = phaseHold, holdIntervals, false
	case phaseDown:
		if most >= c.refG*(1-c.gain/2) {
			c.refN = c.n
			if c.n > c.min {
				return c.set(c.n - max(1, c.n/4))
			}
		} else {
			c.set(c.refN)
		}
		c.phase, c.hold, c.upNext = phaseHold, holdIntervals, true
	}
	return c.n
}

// pacer spaces the session's frames so that the aggregate rate stays at or
// below rate bytes/s: each frame departs at max(now, previous departure +
// previous size/rate).
type pacer struct {
	mu   sync.Mutex
	rate float64
	next time.Time
}

// wait blocks until n bytes may depart, or ctx ends.
func (p *pacer) wait(ctx context.Context, n int) error {
	if p == nil || p.rate <= 0 {
		return nil
	}
	p.mu.Lock()
	now := time.Now()
	start := p.next
	if start.Before(now) {
		start = now
	}
	p.next = start.Add(time.Duration(float64(n) / p.rate * float64(time.Second)))
	p.mu.Unlock()
	d := time.Until(start)
	if d <= 0 {
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
