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
type climber struct {
	min, max int
	gain     float64
	n        int

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
}

func (c *climber) set(n int) int {
	c.n = clampInt(n, c.min, c.max)
	return c.n
}

func (c *climber) next(goodput float64) int {
	switch c.phase {
	case phaseMeasure:
		c.refN, c.refG = c.n, goodput
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
		if goodput >= c.refG*(1+c.gain) {
			c.refN, c.refG = c.n, goodput
			if c.n < c.max {
				return c.set(c.n + max(1, c.n/2))
			}
		} else {
			c.set(c.refN)
		}
		c.phase, c.hold, c.upNext = phaseHold, holdIntervals, false
	case phaseDown:
		if goodput >= c.refG*(1-c.gain/2) {
			c.refN = c.n
			if c.n > c.min {
				return c.set(c.n - max(1, c.n/4))
			}
		} else {
			c.set(c.refN)
		}
		c.phase, c.hold, c.upNext = phaseHold, holdIntervals, true
	case phaseHold:
		c.hold--
		if c.hold <= 0 {
			c.phase = phaseMeasure
		}
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
