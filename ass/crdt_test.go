package ass

import (
	"bytes"
	"fmt"
	"math/rand"
	"sort"
	"testing"
	"time"
)

// The property tests drive random operations on random replicas, exchange
// single deltas and whole states at random (out of order, with duplicates),
// then give every replica every delta in its own random order. All replicas
// must end equal, equal to a fresh state that merged only the deltas, and
// equal to a sequential reference computed from the operation history: for
// each operation we record which earlier operations its replica had seen,
// which is exactly what observed-remove and multi-value semantics depend on.

type opRecord struct {
	id      int
	key     string // element, map key
	kind    string // "add", "remove", "set", "inc"
	val     []byte
	ts      Timestamp
	n       int64
	visible map[int]bool
}

type replicaSim struct {
	node  string
	state CRDT
	vis   map[int]bool
	clock *Clock
}

type crdtModel struct {
	name  string
	typ   Type
	op    func(rng *rand.Rand, r *replicaSim, rec *opRecord) CRDT
	check func(t *testing.T, st CRDT, ops []opRecord)
}

func skewedClock(rng *rand.Rand, node string) *Clock {
	base := time.Unix(1_700_000_000, 0)
	skew := time.Duration(rng.Intn(2000)-1000) * time.Millisecond
	var ticks int64
	return NewClock(node, func() time.Time {
		ticks++
		return base.Add(skew + time.Duration(ticks)*time.Millisecond)
	})
}

func keyOf(rng *rand.Rand, prefix string, n int) string {
	return fmt.Sprintf("%s%d", prefix, rng.Intn(n))
}

// presentByObservation: a key/element is present iff some add/update of it
// was not seen by any later operation on the same key.
func presentByObservation(ops []opRecord, key string, adds ...string) []int {
	var live []int
	for _, a := range ops {
		if a.key != key || !contains(adds, a.kind) {
			continue
		}
		covered := false
		for _, o := range ops {
			if o.key == key && o.visible[a.id] {
				covered = true
				break
			}
		}
		if !covered {
			live = append(live, a.id)
		}
	}
	return live
}

func contains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

func keysOf(ops []opRecord) []string {
	seen := map[string]bool{}
	var out []string
	for _, o := range ops {
		if !seen[o.key] {
			seen[o.key] = true
			out = append(out, o.key)
		}
	}
	sort.Strings(out)
	return out
}

var models = []crdtModel{
	{
		name: "gcounter", typ: TypeGCounter,
		op: func(rng *rand.Rand, r *replicaSim, rec *opRecord) CRDT {
			rec.kind, rec.n = "inc", int64(rng.Intn(10))
			return r.state.(*GCounter).Inc(r.node, uint64(rec.n))
		},
		check: func(t *testing.T, st CRDT, ops []opRecord) {
			var want uint64
			for _, o := range ops {
				want += uint64(o.n)
			}
			if got := st.(*GCounter).Value(); got != want {
				t.Fatalf("value %d, reference %d", got, want)
			}
		},
	},
	{
		name: "pncounter", typ: TypePNCounter,
		op: func(rng *rand.Rand, r *replicaSim, rec *opRecord) CRDT {
			rec.kind, rec.n = "inc", int64(rng.Intn(21)-10)
			return r.state.(*PNCounter).Add(r.node, rec.n)
		},
		check: func(t *testing.T, st CRDT, ops []opRecord) {
			var want int64
			for _, o := range ops {
				want += o.n
			}
			if got := st.(*PNCounter).Value(); got != want {
				t.Fatalf("value %d, reference %d", got, want)
			}
		},
	},
	{
		name: "lww", typ: TypeLWWRegister,
		op: func(rng *rand.Rand, r *replicaSim, rec *opRecord) CRDT {
			rec.kind, rec.val = "set", []byte(fmt.Sprintf("v%d", rng.Intn(1000)))
			d := r.state.(*LWWRegister).Set(r.clock.Now(), rec.val)
			rec.ts = d.Timestamp()
			// A write must order after every write its replica had seen.
			return d
		},
		check: func(t *testing.T, st CRDT, ops []opRecord) {
			var best *opRecord
			for i := range ops {
				if best == nil || ops[i].ts.Compare(best.ts) > 0 {
					best = &ops[i]
				}
			}
			for _, o := range ops {
				for v := range o.visible {
					if ops[v].ts.Compare(o.ts) >= 0 {
						t.Fatalf("write %d (%v) does not order after seen write %d (%v)", o.id, o.ts, v, ops[v].ts)
					}
				}
			}
			if got := st.(*LWWRegister).Value(); best != nil && !bytes.Equal(got, best.val) {
				t.Fatalf("value %q, reference %q", got, best.val)
			}
		},
	},
	{
		name: "mvregister", typ: TypeMVRegister,
		op: func(rng *rand.Rand, r *replicaSim, rec *opRecord) CRDT {
			rec.kind, rec.val = "set", []byte(fmt.Sprintf("v%d", rng.Intn(1000)))
			return r.state.(*MVRegister).Set(r.node, rec.val)
		},
		check: func(t *testing.T, st CRDT, ops []opRecord) {
			var want []string
			for _, id := range presentByObservation(ops, "", "set") {
				want = append(want, string(ops[id].val))
			}
			var got []string
			for _, v := range st.(*MVRegister).Values() {
				got = append(got, string(v))
			}
			sort.Strings(want)
			sort.Strings(got)
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Fatalf("values %v, reference %v", got, want)
			}
		},
	},
	{
		name: "orset", typ: TypeORSet,
		op: func(rng *rand.Rand, r *replicaSim, rec *opRecord) CRDT {
			rec.key = keyOf(rng, "e", 5)
			if rng.Intn(3) == 0 {
				rec.kind = "remove"
				return r.state.(*ORSet).Remove(rec.key)
			}
			rec.kind = "add"
			return r.state.(*ORSet).Add(r.node, rec.key)
		},
		check: func(t *testing.T, st CRDT, ops []opRecord) {
			s := st.(*ORSet)
			for _, e := range keysOf(ops) {
				want := len(presentByObservation(ops, e, "add")) > 0
				if s.Contains(e) != want {
					t.Fatalf("element %s present=%v, reference %v", e, s.Contains(e), want)
				}
			}
		},
	},
	{
		name: "ormap", typ: TypeORMap,
		op: func(rng *rand.Rand, r *replicaSim, rec *opRecord) CRDT {
			m := r.state.(*ORMap)
			if rng.Intn(2) == 0 {
				rec.key = keyOf(rng, "c", 3)
			} else {
				rec.key = keyOf(rng, "r", 3)
			}
			if rng.Intn(4) == 0 {
				rec.kind = "remove"
				return m.Remove(rec.key)
			}
			var d *ORMap
			var err error
			if rec.key[0] == 'c' {
				rec.kind, rec.n = "inc", int64(1+rng.Intn(5))
				d, err = m.Update(r.node, rec.key, TypeGCounter, func(v CRDT) CRDT { return v.(*GCounter).Inc(r.node, uint64(rec.n)) })
			} else {
				rec.kind, rec.val = "set", []byte(fmt.Sprintf("v%d", rng.Intn(1000)))
				d, err = m.Update(r.node, rec.key, TypeLWWRegister, func(v CRDT) CRDT {
					reg := v.(*LWWRegister).Set(r.clock.Now(), rec.val)
					rec.ts = reg.Timestamp()
					return reg
				})
			}
			if err != nil {
				panic(err)
			}
			return d
		},
		check: func(t *testing.T, st CRDT, ops []opRecord) {
			m := st.(*ORMap)
			for _, k := range keysOf(ops) {
				present := len(presentByObservation(ops, k, "inc", "set")) > 0
				v, ok := m.Get(k)
				if ok != present {
					t.Fatalf("key %s present=%v, reference %v", k, ok, present)
				}
				if !ok {
					continue
				}
				switch k[0] {
				case 'c':
					var want uint64
					for _, o := range ops {
						if o.key == k {
							want += uint64(o.n)
						}
					}
					if got := v.(*GCounter).Value(); got != want {
						t.Fatalf("key %s counter %d, reference %d", k, got, want)
					}
				case 'r':
					var best *opRecord
					for i := range ops {
						if ops[i].key == k && ops[i].kind == "set" && (best == nil || ops[i].ts.Compare(best.ts) > 0) {
							best = &ops[i]
						}
					}
					if got := v.(*LWWRegister).Value(); !bytes.Equal(got, best.val) {
						t.Fatalf("key %s register %q, reference %q", k, got, best.val)
					}
				}
			}
		},
	},
}

func TestCRDTProperties(t *testing.T) {
	for _, m := range models {
		t.Run(m.name, func(t *testing.T) {
			for seed := int64(1); seed <= 150; seed++ {
				runProperty(t, m, seed)
				if t.Failed() {
					t.Fatalf("seed %d", seed)
				}
			}
		})
	}
}

func runProperty(t *testing.T, m crdtModel, seed int64) {
	t.Helper()
	rng := rand.New(rand.NewSource(seed))
	reps := make([]*replicaSim, 2+rng.Intn(3))
	for i := range reps {
		node := fmt.Sprintf("n%d", i)
		reps[i] = &replicaSim{node: node, state: New(m.typ), vis: map[int]bool{}, clock: skewedClock(rng, node)}
	}
	var ops []opRecord
	var deltas []CRDT
	var pool []CRDT // snapshots for the algebraic laws
	steps := 20 + rng.Intn(60)
	for s := 0; s < steps; s++ {
		r := reps[rng.Intn(len(reps))]
		switch p := rng.Float64(); {
		case p < 0.55 || len(deltas) == 0:
			rec := opRecord{id: len(ops), visible: map[int]bool{}}
			for v := range r.vis {
				rec.visible[v] = true
			}
			d := m.op(rng, r, &rec)
			r.vis[rec.id] = true
			ops = append(ops, rec)
			deltas = append(deltas, roundTrip(t, d))
		case p < 0.85:
			k := rng.Intn(len(deltas))
			r.state.Merge(deltas[k].Clone())
			r.vis[k] = true
		default:
			from := reps[rng.Intn(len(reps))]
			r.state.Merge(roundTrip(t, from.state))
			for v := range from.vis {
				r.vis[v] = true
			}
		}
		if rng.Intn(4) == 0 {
			pool = append(pool, r.state.Clone())
		}
	}
	for _, r := range reps {
		order := rng.Perm(len(deltas))
		for i := 0; i < len(deltas)/3; i++ {
			order = append(order, rng.Intn(len(deltas))) // duplicates
		}
		rng.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
		for _, k := range order {
			r.state.Merge(deltas[k].Clone())
		}
	}
	fresh := New(m.typ)
	for _, k := range rng.Perm(len(deltas)) {
		fresh.Merge(deltas[k].Clone())
	}
	for i, r := range reps {
		if !Equal(r.state, reps[0].state) {
			t.Fatalf("replica %d differs from replica 0 after all deltas", i)
		}
	}
	if !Equal(fresh, reps[0].state) {
		t.Fatalf("join of the deltas alone differs from the replicas' state")
	}
	m.check(t, reps[0].state, ops)

	pool = append(pool, New(m.typ), reps[0].state)
	for i := 0; i < 20; i++ {
		a, b, c := pool[rng.Intn(len(pool))], pool[rng.Intn(len(pool))], pool[rng.Intn(len(pool))]
		if !Equal(join(a, b), join(b, a)) {
			t.Fatalf("merge is not commutative")
		}
		if !Equal(join(join(a, b), c), join(a, join(b, c))) {
			t.Fatalf("merge is not associative")
		}
		if !Equal(join(a, a), a) {
			t.Fatalf("merge is not idempotent")
		}
	}
}

func join(a, b CRDT) CRDT {
	c := a.Clone()
	c.Merge(b.Clone())
	return c
}

// roundTrip passes v through its encoding, as the network and the log do.
func roundTrip(t *testing.T, v CRDT) CRDT {
	t.Helper()
	b := Marshal(v)
	got, err := Unmarshal(b)
	if err != nil {
		t.Fatalf("unmarshal %v: %v", v.Type(), err)
	}
	if !bytes.Equal(Marshal(got), b) {
		t.Fatalf("%v does not survive its encoding", v.Type())
	}
	return got
}

func TestNestedORMap(t *testing.T) {
	a, b := NewORMap(), NewORMap()
	da, err := a.Update("a", "host/1", TypeORMap, func(v CRDT) CRDT {
		d, _ := v.(*ORMap).Update("a", "tags", TypeORSet, func(s CRDT) CRDT { return s.(*ORSet).Add("a", "gpu") })
		return d
	})
	if err != nil {
		t.Fatal(err)
	}
	b.Merge(da)
	// Concurrently: a removes the host, b adds a tag to it. Add wins.
	rm := a.Remove("host/1")
	db, _ := b.Update("b", "host/1", TypeORMap, func(v CRDT) CRDT {
		d, _ := v.(*ORMap).Update("b", "tags", TypeORSet, func(s CRDT) CRDT { return s.(*ORSet).Add("b", "ssd") })
		return d
	})
	a.Merge(db)
	b.Merge(rm)
	if !Equal(a, b) {
		t.Fatal("replicas differ")
	}
	v, ok := a.Get("host/1")
	if !ok {
		t.Fatal("concurrent update lost to remove")
	}
	tags, _ := v.(*ORMap).Get("tags")
	if got := fmt.Sprint(tags.(*ORSet).Elements()); got != "[gpu ssd]" {
		t.Fatalf("tags %s", got)
	}
	if _, err := a.Update("a", "host/1", TypeGCounter, func(v CRDT) CRDT { return v }); err == nil {
		t.Fatal("update with the wrong type succeeded")
	}
}

func TestClockMonotonic(t *testing.T) {
	wall := time.Unix(100, 0)
	c := NewClock("n", func() time.Time { return wall })
	prev := c.Now()
	for i := 0; i < 100; i++ {
		if i == 50 {
			wall = wall.Add(-time.Second) // the wall clock steps back
		}
		if i == 70 {
			c.Observe(Timestamp{Wall: wall.UnixNano() + 5e9, Node: "other"})
		}
		ts := c.Now()
		if ts.Compare(prev) <= 0 {
			t.Fatalf("reading %d (%v) not after %v", i, ts, prev)
		}
		prev = ts
	}
	if prev.Wall < wall.UnixNano()+5e9 {
		t.Fatal("Observe did not move the clock past the remote timestamp")
	}
}

func TestTimestampTieBreak(t *testing.T) {
	a := Timestamp{Wall: 5, Logical: 1, Node: "a"}
	b := Timestamp{Wall: 5, Logical: 1, Node: "b"}
	ra, rb := NewLWWRegister(), NewLWWRegister()
	ra.Set(a, []byte("A"))
	rb.Set(b, []byte("B"))
	ra.Merge(rb.Clone())
	rb.Merge(NewLWWRegister())
	if string(ra.Value()) != "B" {
		t.Fatalf("tie on clocks must go to the greater node id, got %q", ra.Value())
	}
}
