package ass

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sort"
)

// ErrCorrupt marks every error caused by bytes that do not decode: a bad
// frame, a bad checksum, or a state encoding that is truncated or malformed.
var ErrCorrupt = errors.New("ass: corrupt input")

// maxNesting bounds OR-Maps inside OR-Maps, so hostile input cannot exhaust the stack.
const maxNesting = 16

type encoder struct{ buf []byte }

func (e *encoder) uvarint(v uint64) { e.buf = binary.AppendUvarint(e.buf, v) }
func (e *encoder) varint(v int64)   { e.buf = binary.AppendVarint(e.buf, v) }
func (e *encoder) byte(b byte)      { e.buf = append(e.buf, b) }
func (e *encoder) bytes(b []byte)   { e.uvarint(uint64(len(b))); e.buf = append(e.buf, b...) }
func (e *encoder) string(s string)  { e.uvarint(uint64(len(s))); e.buf = append(e.buf, s...) }

func (e *encoder) dots(s dotSet) {
	e.uvarint(uint64(len(s)))
	for _, d := range s.sorted() {
		e.string(d.Node)
		e.uvarint(d.Counter)
	}
}

func (e *encoder) context(c *CausalContext) {
	nodes := make([]string, 0, len(c.vv))
	for n := range c.vv {
		nodes = append(nodes, n)
	}
	sort.Strings(nodes)
	e.uvarint(uint64(len(nodes)))
	for _, n := range nodes {
		e.string(n)
		e.uvarint(c.vv[n])
	}
	e.dots(c.cloud)
}

func (e *encoder) timestamp(t Timestamp) {
	e.varint(t.Wall)
	e.uvarint(uint64(t.Logical))
	e.string(t.Node)
}

// value encodes an optional CRDT as its type tag (0 for none) and body.
func (e *encoder) value(v CRDT) {
	if v == nil {
		e.byte(0)
		return
	}
	e.byte(byte(v.Type()))
	v.encode(e)
}

func (g *GCounter) encode(e *encoder) {
	nodes := make([]string, 0, len(g.counts))
	for n, v := range g.counts {
		if v > 0 {
			nodes = append(nodes, n)
		}
	}
	sort.Strings(nodes)
	e.uvarint(uint64(len(nodes)))
	for _, n := range nodes {
		e.string(n)
		e.uvarint(g.counts[n])
	}
}

func (c *PNCounter) encode(e *encoder) { c.p.encode(e); c.n.encode(e) }

func (r *LWWRegister) encode(e *encoder) { e.timestamp(r.ts); e.bytes(r.value) }

func (r *MVRegister) encode(e *encoder) {
	dots := r.dots()
	e.uvarint(uint64(len(dots)))
	for _, d := range dots {
		e.string(d.Node)
		e.uvarint(d.Counter)
		e.bytes(r.values[d])
	}
	e.context(&r.ctx)
}

func (s *ORSet) encode(e *encoder) {
	elems := make([]string, 0, len(s.elems))
	for el := range s.elems {
		elems = append(elems, el)
	}
	sort.Strings(elems)
	e.uvarint(uint64(len(elems)))
	for _, el := range elems {
		e.string(el)
		e.dots(s.elems[el])
	}
	e.context(&s.ctx)
}

func (m *ORMap) encode(e *encoder) {
	keys := make([]string, 0, len(m.entries))
	for k := range m.entries {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	e.uvarint(uint64(len(keys)))
	for _, k := range keys {
		e.string(k)
		m.entries[k].encode(e)
	}
}

func (me *mapEntry) encode(e *encoder) {
	e.dots(me.dots)
	e.context(&me.ctx)
	e.value(me.value)
}

// Marshal returns the canonical encoding of v: a type tag and the state.
// Equal states have equal encodings.
func Marshal(v CRDT) []byte {
	e := encoder{}
	e.value(v)
	return e.buf
}

// Unmarshal decodes an encoding made by Marshal. Bad input gives an error
// wrapping ErrCorrupt, never a panic or an allocation larger than the input.
func Unmarshal(b []byte) (CRDT, error) {
	d := decoder{buf: b}
	v := d.value(0)
	if d.err == nil && v == nil {
		d.fail("no value")
	}
	d.end()
	if d.err != nil {
		return nil, d.err
	}
	return v, nil
}

// decoder reads the encodings above. The first error sticks; after it every
// read returns zero values, so decode functions need not check after each field.
type decoder struct {
	buf   []byte
	off   int
	err   error
	names map[string]string // actor ids seen in this input, decoded once
}

func (d *decoder) fail(format string, args ...any) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: %s at offset %d", ErrCorrupt, fmt.Sprintf(format, args...), d.off)
	}
}

func (d *decoder) end() {
	if d.err == nil && d.off != len(d.buf) {
		d.fail("%d trailing bytes", len(d.buf)-d.off)
	}
}

func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.buf[d.off:])
	if n <= 0 {
		d.fail("bad varint")
		return 0
	}
	d.off += n
	return v
}

func (d *decoder) varint() int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.buf[d.off:])
	if n <= 0 {
		d.fail("bad varint")
		return 0
	}
	d.off += n
	return v
}

func (d *decoder) byte() byte {
	if d.err != nil {
		return 0
	}
	if d.off >= len(d.buf) {
		d.fail("truncated")
		return 0
	}
	b := d.buf[d.off]
	d.off++
	return b
}

// count reads a collection length and checks that the remaining input could
// hold that many items of at least minSize bytes each, which bounds every
// allocation by the input size.
func (d *decoder) count(minSize int) int {
	n := d.uvarint()
	if d.err != nil {
		return 0
	}
	if n > uint64(len(d.buf)-d.off)/uint64(minSize) {
		d.fail("count %d exceeds remaining %d bytes", n, len(d.buf)-d.off)
		return 0
	}
	return int(n)
}

func (d *decoder) bytes() []byte {
	n := d.count(1)
	if d.err != nil {
		return nil
	}
	b := d.buf[d.off : d.off+n : d.off+n]
	d.off += n
	return b
}

func (d *decoder) string() string { return string(d.bytes()) }

// name decodes an actor id. A frame repeats a few actor ids many times, so
// each distinct one is allocated once.
func (d *decoder) name() string {
	b := d.bytes()
	if s, ok := d.names[string(b)]; ok {
		return s
	}
	if d.names == nil {
		d.names = make(map[string]string)
	}
	s := string(b)
	if len(d.names) < 1024 {
		d.names[s] = s
	}
	return s
}

func (d *decoder) dots() dotSet {
	n := d.count(2)
	if n == 0 {
		return nil
	}
	s := make(dotSet, 0, n)
	for i := 0; i < n && d.err == nil; i++ {
		dot := Dot{Node: d.name(), Counter: d.uvarint()}
		if dot.Counter == 0 {
			d.fail("dot counter 0")
		}
		if i > 0 && !dotLess(s[i-1], dot) {
			d.fail("dots not in canonical order")
		}
		s = append(s, dot)
	}
	return s
}

func (d *decoder) context() CausalContext {
	var c CausalContext
	n := d.count(2)
	prev := ""
	for i := 0; i < n && d.err == nil; i++ {
		node, v := d.name(), d.uvarint()
		if i > 0 && node <= prev {
			d.fail("version vector not in canonical order")
		}
		prev = node
		if v > 0 {
			if c.vv == nil {
				c.vv = make(map[string]uint64, n)
			}
			c.vv[node] = v
		}
	}
	c.cloud = d.dots()
	c.compact()
	return c
}

func (d *decoder) timestamp() Timestamp {
	wall := d.varint()
	logical := d.uvarint()
	if logical > uint64(^uint32(0)) {
		d.fail("logical clock %d overflows", logical)
	}
	return Timestamp{Wall: wall, Logical: uint32(logical), Node: d.name()}
}

func (d *decoder) value(depth int) CRDT {
	tag := d.byte()
	if d.err != nil || tag == 0 {
		return nil
	}
	switch Type(tag) {
	case TypeGCounter:
		return d.gcounter()
	case TypePNCounter:
		p := d.gcounter()
		return &PNCounter{p: p, n: d.gcounter()}
	case TypeLWWRegister:
		ts := d.timestamp()
		return &LWWRegister{ts: ts, value: d.bytes()}
	case TypeMVRegister:
		n := d.count(3)
		r := &MVRegister{values: make(map[Dot][]byte, n)}
		var prev Dot
		for i := 0; i < n && d.err == nil; i++ {
			dot := Dot{Node: d.name(), Counter: d.uvarint()}
			if i > 0 && !dotLess(prev, dot) {
				d.fail("dots not in canonical order")
			}
			prev = dot
			r.values[dot] = d.bytes()
		}
		r.ctx = d.context()
		return r
	case TypeORSet:
		n := d.count(2)
		s := &ORSet{elems: make(map[string]dotSet, n)}
		prev := ""
		for i := 0; i < n && d.err == nil; i++ {
			el := d.string()
			if i > 0 && el <= prev {
				d.fail("set elements not in canonical order")
			}
			prev = el
			if dots := d.dots(); len(dots) > 0 {
				s.elems[el] = dots
			}
		}
		s.ctx = d.context()
		return s
	case TypeORMap:
		if depth >= maxNesting {
			d.fail("maps nested deeper than %d", maxNesting)
			return nil
		}
		return d.ormap(depth)
	}
	d.fail("unknown CRDT type %d", tag)
	return nil
}

func (d *decoder) gcounter() *GCounter {
	n := d.count(2)
	g := &GCounter{counts: make(map[string]uint64, n)}
	prev := ""
	for i := 0; i < n && d.err == nil; i++ {
		node, v := d.name(), d.uvarint()
		if i > 0 && node <= prev {
			d.fail("counter actors not in canonical order")
		}
		prev = node
		if v > 0 {
			g.counts[node] = v
		}
	}
	return g
}

func (d *decoder) ormap(depth int) *ORMap {
	n := d.count(4)
	m := &ORMap{entries: make(map[string]*mapEntry, n)}
	prev := ""
	for i := 0; i < n && d.err == nil; i++ {
		k := d.string()
		if i > 0 && k <= prev {
			d.fail("map keys not in canonical order")
		}
		prev = k
		e := &mapEntry{dots: d.dots()}
		e.ctx = d.context()
		e.value = d.value(depth + 1)
		m.entries[k] = e
	}
	return m
}
