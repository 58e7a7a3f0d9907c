package ass

import (
	"errors"
	"fmt"
	"sort"
	"strings"
)

// ErrTypeMismatch is returned when a key is updated with a type other than
// the one it holds.
var ErrTypeMismatch = errors.New("ass: key holds a different CRDT type")

// mapEntry is one key of an OR-Map. Each key carries its own causal context,
// so an entry is a self-contained state: it can be hashed, shipped and merged
// alone, which is what digest anti-entropy needs. dots is the key's presence
// (add-wins, like an OR-Set element); value is the nested CRDT.
type mapEntry struct {
	dots  dotSet
	ctx   CausalContext
	value CRDT
}

func (e *mapEntry) clone() *mapEntry {
	c := &mapEntry{dots: e.dots.clone(), ctx: e.ctx.clone()}
	if e.value != nil {
		c.value = e.value.Clone()
	}
	return c
}

// merge joins o into e. Two values of different types (two actors that chose
// different types for one key) resolve to the greater type tag, which keeps
// the join deterministic.
func (e *mapEntry) merge(o *mapEntry) {
	e.dots = joinDots(e.dots, &e.ctx, o.dots, &o.ctx)
	e.ctx.Merge(&o.ctx)
	switch {
	case o.value == nil:
	case e.value == nil || o.value.Type() > e.value.Type():
		e.value = o.value.Clone()
	case o.value.Type() == e.value.Type():
		e.value.Merge(o.value)
	}
}

// ORMap maps string keys to nested CRDTs. Updating a key adds it (add-wins
// against a concurrent remove); removing a key hides the adds it has seen.
// The nested value is kept when a key is removed so that merges stay a join:
// a key added again resumes from the merged value (set every field again if
// that matters, as ClusterState does).
type ORMap struct{ entries map[string]*mapEntry }

// NewORMap returns an empty map.
func NewORMap() *ORMap { return &ORMap{entries: map[string]*mapEntry{}} }

// Type implements CRDT.
func (m *ORMap) Type() Type { return TypeORMap }

// Update applies mutate to the value of key (created empty with type t when
// absent) on behalf of node, and returns the map delta. mutate must call one
// mutator of the value and return the delta that mutator returned.
func (m *ORMap) Update(node, key string, t Type, mutate func(v CRDT) CRDT) (*ORMap, error) {
	if !t.valid() {
		return nil, fmt.Errorf("ass: update of key %q: invalid type %d", key, t)
	}
	e := m.entries[key]
	if e == nil {
		e = &mapEntry{}
		m.entries[key] = e
	}
	if e.value == nil {
		e.value = New(t)
	} else if e.value.Type() != t {
		return nil, fmt.Errorf("%w: key %q is %v, update wants %v", ErrTypeMismatch, key, e.value.Type(), t)
	}
	vd := mutate(e.value)
	if vd == nil || vd.Type() != t {
		return nil, fmt.Errorf("ass: update of key %q: mutate returned no %v delta", key, t)
	}
	d := e.ctx.next(node)
	seen := e.dots.with(d) // a new slice: the delta's context owns it
	e.dots = dotSet{d}
	return &ORMap{entries: map[string]*mapEntry{key: {dots: e.dots, ctx: ownedContextOf(seen), value: vd}}}, nil
}

// Remove deletes key and returns the delta (an empty delta if key is absent).
func (m *ORMap) Remove(key string) *ORMap {
	e := m.entries[key]
	if e == nil || len(e.dots) == 0 {
		return NewORMap()
	}
	seen := e.dots
	e.dots = nil
	return &ORMap{entries: map[string]*mapEntry{key: {ctx: contextOf(seen)}}}
}

// Get returns the value of key, or false if the key is absent. The value is
// the map's own; clone it to keep it past the next change.
func (m *ORMap) Get(key string) (CRDT, bool) {
	e := m.entries[key]
	if e == nil || len(e.dots) == 0 || e.value == nil {
		return nil, false
	}
	return e.value, true
}

// Keys returns the present keys that start with prefix, sorted.
func (m *ORMap) Keys(prefix string) []string {
	var out []string
	for k, e := range m.entries {
		if len(e.dots) > 0 && e.value != nil && strings.HasPrefix(k, prefix) {
			out = append(out, k)
		}
	}
	sort.Strings(out)
	return out
}

// Len returns the number of present keys.
func (m *ORMap) Len() int {
	n := 0
	for _, e := range m.entries {
		if len(e.dots) > 0 && e.value != nil {
			n++
		}
	}
	return n
}

// Merge implements CRDT.
func (m *ORMap) Merge(other CRDT) {
	mustSameType(m, other)
	m.mergeKeys(other.(*ORMap))
}

// mergeKeys merges o and returns the keys it touched.
func (m *ORMap) mergeKeys(o *ORMap) []string {
	keys := make([]string, 0, len(o.entries))
	for k, oe := range o.entries {
		if e := m.entries[k]; e != nil {
			e.merge(oe)
		} else {
			m.entries[k] = oe.clone()
		}
		keys = append(keys, k)
	}
	return keys
}

// Clone implements CRDT.
func (m *ORMap) Clone() CRDT {
	c := &ORMap{entries: make(map[string]*mapEntry, len(m.entries))}
	for k, e := range m.entries {
		c.entries[k] = e.clone()
	}
	return c
}

// subset returns a map holding copies of the given keys' entries (present or not).
func (m *ORMap) subset(keys []string) *ORMap {
	out := NewORMap()
	for _, k := range keys {
		if e := m.entries[k]; e != nil {
			out.entries[k] = e.clone()
		}
	}
	return out
}

// mergeOwned merges o, taking ownership of its entries (o must not be used
// afterwards), and returns the keys it touched.
func (m *ORMap) mergeOwned(o *ORMap) []string {
	keys := make([]string, 0, len(o.entries))
	for k, oe := range o.entries {
		if e := m.entries[k]; e != nil {
			e.merge(oe)
		} else {
			m.entries[k] = oe
		}
		keys = append(keys, k)
	}
	return keys
}
