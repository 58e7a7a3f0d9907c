package ass

import (
	"bytes"
	"fmt"
	"sort"

	"github.com/dwcp/dwcp/metrics"
)

// Type identifies a CRDT type on the wire and in metrics.
type Type uint8

// The CRDT types. The numeric values are part of the wire format.
const (
	TypeGCounter    Type = 1
	TypePNCounter   Type = 2
	TypeLWWRegister Type = 3
	TypeMVRegister  Type = 4
	TypeORSet       Type = 5
	TypeORMap       Type = 6
)

// String returns the crdt_type label value of the metrics catalogue.
func (t Type) String() string {
	switch t {
	case TypeGCounter:
		return metrics.CRDTGCounter
	case TypePNCounter:
		return metrics.CRDTPNCounter
	case TypeLWWRegister:
		return metrics.CRDTLWWRegister
	case TypeMVRegister:
		return metrics.CRDTMVRegister
	case TypeORSet:
		return metrics.CRDTORSet
	case TypeORMap:
		return metrics.CRDTORMap
	}
	return fmt.Sprintf("type(%d)", uint8(t))
}

func (t Type) valid() bool { return t >= TypeGCounter && t <= TypeORMap }

// CRDT is a join-semilattice: Merge is commutative, associative and
// idempotent, so replicas that merge the same states in any order, any number
// of times, end equal. Every mutator of the concrete types changes its
// receiver and returns a delta of the same type: a small state that, merged
// into any replica, has the effect of the mutation. Values are not safe for
// concurrent use; the Replica serialises access to the ones it owns.
type CRDT interface {
	Type() Type
	// Merge joins other into the receiver. other must have the same Type;
	// a different type is a programming error and panics (the OR-Map, which
	// sees types chosen by remote peers, resolves mismatches before merging).
	Merge(other CRDT)
	// Clone returns a deep copy.
	Clone() CRDT
	// encode appends the canonical encoding: equal states encode equally.
	encode(e *encoder)
}

// New returns the empty (bottom) state of type t, or nil for an unknown type.
func New(t Type) CRDT {
	switch t {
	case TypeGCounter:
		return NewGCounter()
	case TypePNCounter:
		return NewPNCounter()
	case TypeLWWRegister:
		return NewLWWRegister()
	case TypeMVRegister:
		return NewMVRegister()
	case TypeORSet:
		return NewORSet()
	case TypeORMap:
		return NewORMap()
	}
	return nil
}

// Equal reports whether a and b are the same state (by canonical encoding).
func Equal(a, b CRDT) bool {
	if a == nil || b == nil {
		return a == nil && b == nil
	}
	return bytes.Equal(Marshal(a), Marshal(b))
}

func mustSameType(a, b CRDT) {
	if a.Type() != b.Type() {
		panic(fmt.Sprintf("ass: merge of %v into %v", b.Type(), a.Type()))
	}
}

// GCounter is a grow-only counter: one monotone count per actor.
type GCounter struct{ counts map[string]uint64 }

// NewGCounter returns a zero counter.
func NewGCounter() *GCounter { return &GCounter{counts: map[string]uint64{}} }

// Type implements CRDT.
func (g *GCounter) Type() Type { return TypeGCounter }

// Inc adds n on behalf of actor node and returns the delta.
func (g *GCounter) Inc(node string, n uint64) *GCounter {
	if n == 0 {
		return NewGCounter()
	}
	g.counts[node] += n
	return &GCounter{counts: map[string]uint64{node: g.counts[node]}}
}

// Value returns the sum of all actors' counts.
func (g *GCounter) Value() uint64 {
	var s uint64
	for _, v := range g.counts {
		s += v
	}
	return s
}

// Merge implements CRDT: the pointwise maximum.
func (g *GCounter) Merge(other CRDT) {
	mustSameType(g, other)
	for n, v := range other.(*GCounter).counts {
		if v > g.counts[n] {
			g.counts[n] = v
		}
	}
}

// Clone implements CRDT.
func (g *GCounter) Clone() CRDT {
	c := &GCounter{counts: make(map[string]uint64, len(g.counts))}
	for n, v := range g.counts {
		c.counts[n] = v
	}
	return c
}

// PNCounter is a counter that can go down: two grow-only counters, P - N.
type PNCounter struct{ p, n *GCounter }

// NewPNCounter returns a zero counter.
func NewPNCounter() *PNCounter { return &PNCounter{p: NewGCounter(), n: NewGCounter()} }

// Type implements CRDT.
func (c *PNCounter) Type() Type { return TypePNCounter }

// Add adds delta (which may be negative) on behalf of node and returns the delta state.
func (c *PNCounter) Add(node string, delta int64) *PNCounter {
	out := NewPNCounter()
	switch {
	case delta > 0:
		out.p = c.p.Inc(node, uint64(delta))
	case delta < 0:
		out.n = c.n.Inc(node, uint64(-delta))
	}
	return out
}

// Value returns P - N.
func (c *PNCounter) Value() int64 { return int64(c.p.Value() - c.n.Value()) }

// Merge implements CRDT.
func (c *PNCounter) Merge(other CRDT) {
	mustSameType(c, other)
	o := other.(*PNCounter)
	c.p.Merge(o.p)
	c.n.Merge(o.n)
}

// Clone implements CRDT.
func (c *PNCounter) Clone() CRDT {
	return &PNCounter{p: c.p.Clone().(*GCounter), n: c.n.Clone().(*GCounter)}
}

// LWWRegister holds the value of the write with the greatest hybrid logical
// clock timestamp; the writer's actor id breaks ties between equal clocks.
type LWWRegister struct {
	ts    Timestamp
	value []byte
}

// NewLWWRegister returns an unset register.
func NewLWWRegister() *LWWRegister { return &LWWRegister{} }

// Type implements CRDT.
func (r *LWWRegister) Type() Type { return TypeLWWRegister }

// Set writes v at ts and returns the delta. If ts does not order after the
// current timestamp (a slow clock, or a write that read a value from a faster
// clock), it is raised just past it: a write made after reading a value must
// win over that value.
func (r *LWWRegister) Set(ts Timestamp, v []byte) *LWWRegister {
	if ts.Compare(r.ts) <= 0 {
		ts = r.ts.after(ts.Node)
	}
	r.ts = ts
	r.value = append([]byte(nil), v...)
	return &LWWRegister{ts: ts, value: r.value}
}

// Value returns the current value (nil when unset); the caller must not modify it.
func (r *LWWRegister) Value() []byte { return r.value }

// Timestamp returns the timestamp of the winning write.
func (r *LWWRegister) Timestamp() Timestamp { return r.ts }

// Merge implements CRDT.
func (r *LWWRegister) Merge(other CRDT) {
	mustSameType(r, other)
	o := other.(*LWWRegister)
	if o.ts.Compare(r.ts) > 0 {
		r.ts, r.value = o.ts, o.value
	}
}

// Clone implements CRDT. Values are never mutated in place, so they are shared.
func (r *LWWRegister) Clone() CRDT { return &LWWRegister{ts: r.ts, value: r.value} }

// MVRegister keeps every concurrent write: a write replaces the values its
// writer had seen, and writes that did not see each other both survive.
type MVRegister struct {
	values map[Dot][]byte
	ctx    CausalContext
}

// NewMVRegister returns an empty register.
func NewMVRegister() *MVRegister { return &MVRegister{values: map[Dot][]byte{}} }

// Type implements CRDT.
func (r *MVRegister) Type() Type { return TypeMVRegister }

// Set writes v on behalf of node, replacing all values seen, and returns the delta.
func (r *MVRegister) Set(node string, v []byte) *MVRegister {
	seen := make([]Dot, 0, len(r.values)+1)
	for d := range r.values {
		seen = append(seen, d)
	}
	d := r.ctx.next(node)
	v = append([]byte(nil), v...)
	r.values = map[Dot][]byte{d: v}
	return &MVRegister{values: map[Dot][]byte{d: v}, ctx: contextOf(dotSetOf(append(seen, d)...))}
}

func (r *MVRegister) dots() dotSet {
	out := make([]Dot, 0, len(r.values))
	for d := range r.values {
		out = append(out, d)
	}
	return dotSetOf(out...)
}

// Values returns the concurrent values, ordered by their dots.
func (r *MVRegister) Values() [][]byte {
	out := make([][]byte, 0, len(r.values))
	for _, d := range r.dots() {
		out = append(out, r.values[d])
	}
	return out
}

// Merge implements CRDT.
func (r *MVRegister) Merge(other CRDT) {
	mustSameType(r, other)
	o := other.(*MVRegister)
	keep := joinDots(r.dots(), &r.ctx, o.dots(), &o.ctx)
	out := make(map[Dot][]byte, len(keep))
	for _, d := range keep {
		if v, ok := r.values[d]; ok {
			out[d] = v
		} else {
			out[d] = o.values[d]
		}
	}
	r.values = out
	r.ctx.Merge(&o.ctx)
}

// Clone implements CRDT.
func (r *MVRegister) Clone() CRDT {
	c := &MVRegister{values: make(map[Dot][]byte, len(r.values)), ctx: r.ctx.clone()}
	for d, v := range r.values {
		c.values[d] = v
	}
	return c
}

// ORSet is an add-wins observed-remove set of strings: a remove deletes only
// the adds it has seen, so an add concurrent with a remove survives.
type ORSet struct {
	elems map[string]dotSet
	ctx   CausalContext
}

// NewORSet returns an empty set.
func NewORSet() *ORSet { return &ORSet{elems: map[string]dotSet{}} }

// Type implements CRDT.
func (s *ORSet) Type() Type { return TypeORSet }

// Add inserts elem on behalf of node and returns the delta.
func (s *ORSet) Add(node, elem string) *ORSet {
	d := s.ctx.next(node)
	seen := s.elems[elem].with(d)
	s.elems[elem] = dotSet{d}
	return &ORSet{elems: map[string]dotSet{elem: s.elems[elem]}, ctx: ownedContextOf(seen)}
}

// Remove deletes elem (the adds of it seen so far) and returns the delta.
func (s *ORSet) Remove(elem string) *ORSet {
	seen := s.elems[elem]
	delete(s.elems, elem)
	return &ORSet{elems: map[string]dotSet{}, ctx: contextOf(seen)}
}

// Contains reports whether elem is in the set.
func (s *ORSet) Contains(elem string) bool { return len(s.elems[elem]) > 0 }

// Elements returns the elements in sorted order.
func (s *ORSet) Elements() []string {
	out := make([]string, 0, len(s.elems))
	for e := range s.elems {
		out = append(out, e)
	}
	sort.Strings(out)
	return out
}

// Len returns the number of elements.
func (s *ORSet) Len() int { return len(s.elems) }

// Merge implements CRDT.
func (s *ORSet) Merge(other CRDT) {
	mustSameType(s, other)
	o := other.(*ORSet)
	for e, od := range o.elems {
		j := joinDots(s.elems[e], &s.ctx, od, &o.ctx)
		if len(j) == 0 {
			delete(s.elems, e)
		} else {
			s.elems[e] = j
		}
	}
	for e, sd := range s.elems {
		if _, ok := o.elems[e]; ok {
			continue
		}
		j := joinDots(sd, &s.ctx, nil, &o.ctx)
		if len(j) == 0 {
			delete(s.elems, e)
		} else if len(j) != len(sd) {
			s.elems[e] = j
		}
	}
	s.ctx.Merge(&o.ctx)
}

// Clone implements CRDT.
func (s *ORSet) Clone() CRDT {
	c := &ORSet{elems: make(map[string]dotSet, len(s.elems)), ctx: s.ctx.clone()}
	for e, d := range s.elems {
		c.elems[e] = d.clone()
	}
	return c
}
