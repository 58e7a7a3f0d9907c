package ass

import "sort"

// Dot names one event: the Counter-th event of actor Node within one causal
// context. Dots tag the elements of OR-Sets, MV-Registers and OR-Map keys so
// that a remove can say exactly which adds it has seen.
type Dot struct {
	Node    string
	Counter uint64
}

func dotLess(a, b Dot) bool {
	if a.Node != b.Node {
		return a.Node < b.Node
	}
	return a.Counter < b.Counter
}

// dotSet is a set of dots as a sorted slice without duplicates: most sets
// hold one or two dots, where a slice is far cheaper than a map. A dotSet is
// never modified after it is built (every operation returns a new one), so
// states and deltas may share them.
type dotSet []Dot

func (s dotSet) clone() dotSet {
	if len(s) == 0 {
		return nil
	}
	return append(dotSet(nil), s...)
}

func (s dotSet) sorted() []Dot { return s }

func (s dotSet) search(d Dot) int {
	return sort.Search(len(s), func(i int) bool { return !dotLess(s[i], d) })
}

func (s dotSet) has(d Dot) bool {
	i := s.search(d)
	return i < len(s) && s[i] == d
}

// with returns s plus d (s is not modified).
func (s dotSet) with(d Dot) dotSet {
	i := s.search(d)
	if i < len(s) && s[i] == d {
		return s.clone()
	}
	out := make(dotSet, 0, len(s)+1)
	out = append(append(append(out, s[:i]...), d), s[i:]...)
	return out
}

// dotSetOf returns the set of the given dots.
func dotSetOf(dots ...Dot) dotSet {
	out := append(dotSet(nil), dots...)
	sort.Slice(out, func(i, j int) bool { return dotLess(out[i], out[j]) })
	j := 0
	for i := range out {
		if i == 0 || out[i] != out[j-1] {
			out[j] = out[i]
			j++
		}
	}
	return out[:j]
}

// joinDots is the dot-kernel join: a dot survives if both sides hold it, or if
// one side holds it and the other has not seen it (so has not removed it).
func joinDots(a dotSet, actx *CausalContext, b dotSet, bctx *CausalContext) dotSet {
	var out dotSet
	i, j := 0, 0
	for i < len(a) || j < len(b) {
		switch {
		case j == len(b) || (i < len(a) && dotLess(a[i], b[j])):
			if !bctx.Contains(a[i]) {
				out = append(out, a[i])
			}
			i++
		case i == len(a) || dotLess(b[j], a[i]):
			if !actx.Contains(b[j]) {
				out = append(out, b[j])
			}
			j++
		default: // equal
			out = append(out, a[i])
			i++
			j++
		}
	}
	return out
}

// CausalContext is the set of dots a state has seen, stored compactly as a
// version vector (every counter up to vv[node] seen) plus a cloud of dots
// beyond a gap. After every join the cloud is folded into the vector, so two
// contexts holding the same dots have the same representation.
type CausalContext struct {
	vv    map[string]uint64
	cloud dotSet
}

// Contains reports whether d has been seen.
func (c *CausalContext) Contains(d Dot) bool {
	if d.Counter <= c.vv[d.Node] {
		return true
	}
	return len(c.cloud) > 0 && c.cloud.has(d)
}

// Add records d as seen.
func (c *CausalContext) Add(d Dot) {
	if c.Contains(d) {
		return
	}
	if d.Counter == c.vv[d.Node]+1 {
		if c.vv == nil {
			c.vv = make(map[string]uint64)
		}
		c.vv[d.Node] = d.Counter
		c.compact()
		return
	}
	c.cloud = c.cloud.with(d)
}

// next returns a fresh dot for node and records it. A node's own dots are
// always contiguous in its own contexts, so max+1 is never reused.
func (c *CausalContext) next(node string) Dot {
	max := c.vv[node]
	for _, d := range c.cloud {
		if d.Node == node && d.Counter > max {
			max = d.Counter
		}
	}
	d := Dot{Node: node, Counter: max + 1}
	c.Add(d)
	return d
}

// Merge adds every dot of o.
func (c *CausalContext) Merge(o *CausalContext) {
	for n, v := range o.vv {
		if v > c.vv[n] {
			if c.vv == nil {
				c.vv = make(map[string]uint64)
			}
			c.vv[n] = v
		}
	}
	if len(o.cloud) > 0 {
		merged := make(dotSet, 0, len(c.cloud)+len(o.cloud))
		i, j := 0, 0
		for i < len(c.cloud) || j < len(o.cloud) {
			switch {
			case j == len(o.cloud) || (i < len(c.cloud) && dotLess(c.cloud[i], o.cloud[j])):
				merged = append(merged, c.cloud[i])
				i++
			case i == len(c.cloud) || dotLess(o.cloud[j], c.cloud[i]):
				merged = append(merged, o.cloud[j])
				j++
			default:
				merged = append(merged, c.cloud[i])
				i++
				j++
			}
		}
		c.cloud = merged
	}
	c.compact()
}

// compact folds cloud dots that extend the version vector into it. The
// cloud is sorted by node then counter, so one pass suffices.
func (c *CausalContext) compact() {
	if len(c.cloud) == 0 {
		c.cloud = nil
		return
	}
	keep := c.cloud[:0]
	for _, d := range c.cloud {
		v := c.vv[d.Node]
		switch {
		case d.Counter <= v:
		case d.Counter == v+1:
			if c.vv == nil {
				c.vv = make(map[string]uint64)
			}
			c.vv[d.Node] = d.Counter
		default:
			keep = append(keep, d)
		}
	}
	if len(keep) == 0 {
		c.cloud = nil
	} else {
		c.cloud = keep
	}
}

func (c *CausalContext) clone() CausalContext {
	var out CausalContext
	if len(c.vv) > 0 {
		out.vv = make(map[string]uint64, len(c.vv))
		for n, v := range c.vv {
			out.vv[n] = v
		}
	}
	if len(c.cloud) > 0 {
		out.cloud = c.cloud.clone()
	}
	return out
}

// contextOf returns a context holding exactly the given dots.
func contextOf(dots dotSet) CausalContext { return ownedContextOf(dots.clone()) }

// ownedContextOf is contextOf for a slice nobody else holds: compaction
// reuses it.
func ownedContextOf(dots dotSet) CausalContext {
	c := CausalContext{cloud: dots}
	c.compact()
	return c
}

// VersionVector returns a copy of the contiguous part of the context: for
// each actor, the highest counter below which every event has been seen.
func (c *CausalContext) VersionVector() map[string]uint64 {
	out := make(map[string]uint64, len(c.vv))
	for n, v := range c.vv {
		out[n] = v
	}
	return out
}
