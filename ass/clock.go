package ass

import (
	"sync"
	"time"
)

// Timestamp is a hybrid logical clock reading (Kulkarni et al., 2014): the
// wall clock in nanoseconds, a logical counter that orders events within one
// wall-clock tick, and the writer's actor id, which breaks the remaining ties
// so that two different writes never compare equal.
type Timestamp struct {
	Wall    int64  // Unix nanoseconds of the physical component
	Logical uint32 // counter within one Wall value
	Node    string // actor id of the writer; the final tie-break
}

// Compare returns -1, 0 or +1 as t orders before, equal to or after u.
func (t Timestamp) Compare(u Timestamp) int {
	switch {
	case t.Wall < u.Wall:
		return -1
	case t.Wall > u.Wall:
		return 1
	case t.Logical < u.Logical:
		return -1
	case t.Logical > u.Logical:
		return 1
	case t.Node < u.Node:
		return -1
	case t.Node > u.Node:
		return 1
	}
	return 0
}

// IsZero reports whether t was never set.
func (t Timestamp) IsZero() bool { return t.Wall == 0 && t.Logical == 0 && t.Node == "" }

// after returns the smallest timestamp of node that orders after t.
func (t Timestamp) after(node string) Timestamp {
	if node > t.Node {
		return Timestamp{Wall: t.Wall, Logical: t.Logical, Node: node}
	}
	if t.Logical == ^uint32(0) {
		return Timestamp{Wall: t.Wall + 1, Node: node}
	}
	return Timestamp{Wall: t.Wall, Logical: t.Logical + 1, Node: node}
}

// Clock is a hybrid logical clock. Its readings never go backwards, even when
// the wall clock does, and Observe pulls it past timestamps seen from other
// replicas so that a write made after reading a remote value orders after it.
// Safe for concurrent use.
type Clock struct {
	node string
	now  func() time.Time
	mu   sync.Mutex
	last Timestamp
}

// NewClock returns a clock for actor node; now may be nil (time.Now).
func NewClock(node string, now func() time.Time) *Clock {
	if now == nil {
		now = time.Now
	}
	return &Clock{node: node, now: now}
}

// Now returns a timestamp greater than every one returned or observed before.
func (c *Clock) Now() Timestamp {
	wall := c.now().UnixNano()
	c.mu.Lock()
	defer c.mu.Unlock()
	if wall > c.last.Wall {
		c.last = Timestamp{Wall: wall, Node: c.node}
	} else {
		c.last = c.last.after(c.node)
		c.last.Node = c.node
	}
	return c.last
}

// Observe moves the clock past a remote timestamp.
func (c *Clock) Observe(t Timestamp) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if t.Wall > c.last.Wall || (t.Wall == c.last.Wall && t.Logical > c.last.Logical) {
		c.last = Timestamp{Wall: t.Wall, Logical: t.Logical, Node: c.node}
	}
}
