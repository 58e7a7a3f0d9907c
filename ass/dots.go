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

// dotSet is a set of dots.
type dotSet map[Dot]struct{}

func (s dotSet) clone() dotSet {
	c := make(dotSet, len(s))
	for d := range s {
		c[d] = struct{}{}
	}
	return c
}

func (s dotSet) sorted() []Dot {
	out := make([]Dot, 0, len(s))
	for d := range s {
		out = append(out, d)
	}
	sort.Slice(out, func(i, j int) bool { return dotLess(out[i], out[j]) })
	return out
}

// joinDots is the dot-kernel join: a dot survives if both sides hold it, or if
// one side holds it and the other has not seen it (so has not removed it).
func joinDots(a dotSet, actx *CausalContext, b dotSet, bctx *CausalContext) dotSet {
	out := make(dotSet, len(a)+len(b))
	for d := range a {
		if _, ok := b[d]; ok || !bctx.Contains(d) {
			out[d] = struct{}{}
		}
	}
	for d := range b {
		if _, ok := a[d]; !ok && !actx.Contains(d) {
			out[d] = struct{}{}
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
	_, ok := c.cloud[d]
	return ok
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
	if c.cloud == nil {
		c.cloud = make(dotSet)
	}
	c.cloud[d] = struct{}{}
}

// next returns a fresh dot for node and records it. A node's own dots are
// always contiguous in its own contexts, so max+1 is never reused.
func (c *CausalContext) next(node string) Dot {
	max := c.vv[node]
	for d := range c.cloud {
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
	for d := range o.cloud {
		if !c.Contains(d) {
			if c.cloud == nil {
				c.cloud = make(dotSet)
			}
			c.cloud[d] = struct{}{}
		}
	}
	c.compact()
}

// compact folds cloud dots that extend the version vector into it.
func (c *CausalContext) compact() {
	if len(c.cloud) == 0 {
		c.cloud = nil
		return
	}
	for changed := true; changed; {
		changed = false
		for d := range c.cloud {
			v := c.vv[d.Node]
			switch {
			case d.Counter <= v:
				delete(c.cloud, d)
			case d.Counter == v+1:
				if c.vv == nil {
					c.vv = make(map[string]uint64)
				}
				c.vv[d.Node] = d.Counter
				delete(c.cloud, d)
				changed = true
			}
		}
	}
	if len(c.cloud) == 0 {
		c.cloud = nil
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
func contextOf(dots dotSet) CausalContext {
	var c CausalContext
	for _, d := range dots.sorted() {
		c.Add(d)
	}
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
