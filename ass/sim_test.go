package ass

import (
	"bytes"
	"context"
	"fmt"
	"math/rand"
	"testing"
	"time"
)

// simCluster runs replicas over a MemNetwork in lock step, on a simulated
// clock, in one goroutine: a seed fixes every choice, so a failure replays.
type simCluster struct {
	t     testing.TB
	net   *MemNetwork
	now   time.Time
	reps  []*Replica
	addrs []string
	dirs  []string
}

func newSimCluster(t testing.TB, seed int64, n int, durable bool) *simCluster {
	c := &simCluster{t: t, net: NewMemNetwork(seed), now: time.Unix(1_700_000_000, 0)}
	for i := 0; i < n; i++ {
		c.addrs = append(c.addrs, fmt.Sprintf("r%d", i))
		dir := ""
		if durable {
			dir = t.TempDir()
		}
		c.dirs = append(c.dirs, dir)
	}
	for i := 0; i < n; i++ {
		c.reps = append(c.reps, c.newReplica(i))
	}
	t.Cleanup(func() {
		for _, r := range c.reps {
			r.Close()
		}
	})
	return c
}

func (c *simCluster) newReplica(i int) *Replica {
	cfg := DefaultConfig(fmt.Sprintf("node%d", i), "")
	cfg.Transport = c.net.Endpoint(c.addrs[i])
	cfg.Peers = c.addrs
	cfg.DataDir = c.dirs[i]
	cfg.RetransmitTimeout = 100 * time.Millisecond
	cfg.DigestInterval = 200 * time.Millisecond
	cfg.MaxFrameBytes = 1 << 20
	cfg.MaxBatchBytes = 16 << 10
	cfg.MaxInflightBytes = 32 << 10
	cfg.MaxBufferBytes = 48 << 10 // small, so partitions overflow it and digests must repair
	cfg.Now = func() time.Time { return c.now }
	r, err := NewReplica(cfg, nil)
	if err != nil {
		c.t.Fatal(err)
	}
	// Only the transport is started: the test drives tick itself.
	if err := r.tr.Start(r.handleFrame); err != nil {
		c.t.Fatal(err)
	}
	return r
}

// round advances the clock by one sync interval, ticks every replica and
// delivers the frames queued so far.
func (c *simCluster) round() {
	c.now = c.now.Add(20 * time.Millisecond)
	for _, r := range c.reps {
		r.tick(c.now)
	}
	c.net.Deliver()
}

// converged compares the replicas' digest leaves (a 64-bit hash sum per
// leaf of per-key hashes): cheap enough to call every round. identical then
// confirms with the full canonical encodings.
func (c *simCluster) converged() bool {
	for _, r := range c.reps {
		r.index.refresh(r.state)
	}
	first := c.reps[0].index
	for _, r := range c.reps[1:] {
		if len(r.index.keys) != len(first.keys) {
			return false
		}
		for i, s := range r.index.leaves {
			if s != first.leaves[i] {
				return false
			}
		}
	}
	return true
}

func (c *simCluster) identical() bool {
	first := Marshal(c.reps[0].state)
	for _, r := range c.reps[1:] {
		if !bytes.Equal(Marshal(r.state), first) {
			return false
		}
	}
	return true
}

type simReference struct {
	counters map[string]int64
	elems    map[string]bool
}

func (c *simCluster) randomWrites(rng *rand.Rand, ref *simReference, n int) {
	ctx := context.Background()
	for i := 0; i < n; i++ {
		r := c.reps[rng.Intn(len(c.reps))]
		switch rng.Intn(3) {
		case 0:
			key := fmt.Sprintf("ctr/%d", rng.Intn(20))
			d := int64(rng.Intn(11) - 5)
			if err := r.Update(ctx, key, TypePNCounter, func(w Writer, v CRDT) CRDT { return v.(*PNCounter).Add(w.Node, d) }); err != nil {
				c.t.Fatal(err)
			}
			ref.counters[key] += d
		case 1:
			key := fmt.Sprintf("reg/%d", rng.Intn(300))
			val := bytes.Repeat([]byte{byte(rng.Intn(256))}, 200)
			if err := r.SetRegister(ctx, key, val); err != nil {
				c.t.Fatal(err)
			}
		case 2:
			el := fmt.Sprintf("e%d", rng.Intn(100))
			if err := r.Update(ctx, "set", TypeORSet, func(w Writer, v CRDT) CRDT { return v.(*ORSet).Add(w.Node, el) }); err != nil {
				c.t.Fatal(err)
			}
			ref.elems[el] = true
		}
	}
}

func (c *simCluster) checkReference(ref *simReference) {
	r := c.reps[0]
	for k, want := range ref.counters {
		v, ok := r.Get(k)
		if !ok || v.(*PNCounter).Value() != want {
			c.t.Fatalf("counter %s = %v, reference %d", k, v, want)
		}
	}
	v, _ := r.Get("set")
	if got := v.(*ORSet).Len(); got != len(ref.elems) {
		c.t.Fatalf("set has %d elements, reference %d", got, len(ref.elems))
	}
}

// TestSimulationConverges: five replicas, lossy, duplicating, reordering
// network, a partition during writes, one replica restarted from its data
// directory mid-partition; after healing they must converge within a bound.
func TestSimulationConverges(t *testing.T) {
	const maxRoundsAfterHeal = 150 // 3 s of simulated time
	for seed := int64(1); seed <= 4; seed++ {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) {
			rng := rand.New(rand.NewSource(seed))
			c := newSimCluster(t, seed, 5, true)
			c.net.SetFaults(Faults{Drop: 0.2, Duplicate: 0.1, Reorder: true})
			ref := &simReference{counters: map[string]int64{}, elems: map[string]bool{}}
			for round := 0; round < 80; round++ {
				switch round {
				case 15:
					c.net.Partition(c.addrs[:2], c.addrs[2:])
				case 45:
					// Restart replica 4 from disk, as a crash would (no Close first).
					old := c.reps[4]
					old.tr.Close()
					c.reps[4] = c.newReplica(4)
					old.Close()
				}
				c.randomWrites(rng, ref, 1+rng.Intn(8))
				c.round()
			}
			if c.converged() {
				t.Fatal("replicas converged across a partition: the test proves nothing")
			}
			c.net.Heal()
			rounds := 0
			for ; !c.converged(); rounds++ {
				if rounds == maxRoundsAfterHeal {
					t.Fatalf("not converged %d rounds after healing", rounds)
				}
				c.round()
			}
			if !c.identical() {
				t.Fatal("digests agree but states differ")
			}
			c.checkReference(ref)
			delivered, dropped := c.net.Stats()
			t.Logf("converged %d rounds after healing (%d frames delivered, %d dropped)", rounds, delivered, dropped)
		})
	}
}

// TestDigestCatchUpWithoutFullTransfer: a replica that missed 1% of a
// 5000-key state catches up by digest, sending far less than the state.
func TestDigestCatchUpWithoutFullTransfer(t *testing.T) {
	c := newSimCluster(t, 1, 2, false)
	ctx := context.Background()
	val := bytes.Repeat([]byte("v"), 100)
	for i := 0; i < 5000; i++ {
		if err := c.reps[0].SetRegister(ctx, fmt.Sprintf("k/%05d", i), val); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < 50 && !c.converged(); i++ {
		c.round()
	}
	if !c.converged() {
		t.Fatal("initial sync did not converge")
	}
	// Replica 1 misses 50 updates: the network drops everything meanwhile,
	// and replica 0's buffer overflows so the delta path cannot repair it.
	c.net.SetFaults(Faults{Drop: 1})
	big := bytes.Repeat([]byte("w"), 2000)
	for i := 0; i < 50; i++ {
		if err := c.reps[0].SetRegister(ctx, fmt.Sprintf("k/%05d", i*100), big); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < 10; i++ {
		c.round()
	}
	c.net.SetFaults(Faults{})
	sentBefore := c.sentBytes()
	rounds := 0
	for ; !c.converged(); rounds++ {
		if rounds == 50 {
			t.Fatal("digest exchange did not repair the replica")
		}
		c.round()
	}
	sent := c.sentBytes() - sentBefore
	full := int64(len(Marshal(c.reps[0].state)))
	t.Logf("caught up in %d rounds with %d bytes on the wire; full state is %d bytes", rounds, sent, full)
	if sent*3 > full {
		t.Fatalf("catch-up sent %d bytes, more than a third of the %d-byte state", sent, full)
	}
}

func (c *simCluster) sentBytes() int64 {
	var n int64
	for _, r := range c.reps {
		n += int64(testCounter(r.m.ASSSyncBytes.WithLabelValues("sent")))
	}
	return n
}

// TestLostIntervalIsResent: the first of two pipelined intervals is lost and
// the second arrives at a replica that never heard from the sender. It must
// not acknowledge past the gap; the lost delta must come back by the delta
// path alone (digests are switched off here).
func TestLostIntervalIsResent(t *testing.T) {
	c := newSimCluster(t, 1, 2, false)
	for _, r := range c.reps {
		r.cfg.DigestInterval = time.Hour
		for _, p := range r.peers {
			p.digestDue = false
		}
	}
	ctx := context.Background()
	c.net.SetFaults(Faults{Drop: 1})
	if err := c.reps[0].SetRegister(ctx, "k1", []byte("one")); err != nil {
		t.Fatal(err)
	}
	c.round()
	c.net.SetFaults(Faults{})
	if err := c.reps[0].SetRegister(ctx, "k2", []byte("two")); err != nil {
		t.Fatal(err)
	}
	c.round() // [1,2) arrives alone; the ack must stay at 0
	if acked := c.reps[0].Stats().Peers[0].Acked; acked != 0 {
		t.Fatalf("peer acknowledged %d deltas across a gap", acked)
	}
	for i := 0; i < 5; i++ {
		c.round()
	}
	if v, ok := c.reps[1].Register("k1"); !ok || string(v) != "one" {
		t.Fatal("lost delta never resent")
	}
	if acked := c.reps[0].Stats().Peers[0].Acked; acked != 2 {
		t.Fatalf("acked %d, want 2", acked)
	}
}
