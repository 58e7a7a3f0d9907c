package pbft

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"sync"
	"testing"
	"time"
)

// logApp is a deterministic test application: its state is the hash chain
// of applied ops and each result names the op's position in the chain.
type logApp struct {
	n     uint64
	chain [32]byte
}

func (a *logApp) Apply(op []byte) []byte {
	a.n++
	a.chain = sha256.Sum256(append(a.chain[:], op...))
	return binary.BigEndian.AppendUint64(append([]byte(nil), op...), a.n)
}

func (a *logApp) Snapshot() []byte {
	return append(binary.BigEndian.AppendUint64(nil, a.n), a.chain[:]...)
}

func (a *logApp) Restore(b []byte) error {
	if len(b) != 40 {
		return fmt.Errorf("logApp snapshot of %d bytes", len(b))
	}
	a.n = binary.BigEndian.Uint64(b)
	copy(a.chain[:], b[8:])
	return nil
}

func testKeys(n int) ([]ed25519.PublicKey, []ed25519.PrivateKey) {
	pubs := make([]ed25519.PublicKey, n)
	privs := make([]ed25519.PrivateKey, n)
	for i := range privs {
		seed := sha256.Sum256([]byte(fmt.Sprintf("pbft-test-key-%d", i)))
		privs[i] = ed25519.NewKeyFromSeed(seed[:])
		pubs[i] = privs[i].Public().(ed25519.PublicKey)
	}
	return pubs, privs
}

type testCluster struct {
	t     *testing.T
	net   *MemNetwork
	nodes []*Node
	apps  []*logApp
	privs []ed25519.PrivateKey

	mu    sync.Mutex
	execs [][]Execution
	dets  map[string]int
	views int
}

// wrap lets a test replace a node's transport with a Byzantine one.
type wrapFn func(id uint32, tr Transport) Transport

func newTestCluster(t *testing.T, n int, seed int64, wrap wrapFn) *testCluster {
	return newTestClusterOn(t, n, seed, false, wrap)
}

// newTestClusterOn builds the cluster over MemNetwork or, with tcp, over
// real sockets on 127.0.0.1.
func newTestClusterOn(t *testing.T, n int, seed int64, tcp bool, wrap wrapFn) *testCluster {
	t.Helper()
	pubs, privs := testKeys(n)
	c := &testCluster{t: t, net: NewMemNetwork(seed), privs: privs, execs: make([][]Execution, n), dets: map[string]int{}}
	var socks []*TCPTransport
	if tcp {
		for i := 0; i < n; i++ {
			st, err := ListenTCP(uint32(i), "127.0.0.1:0", DefaultMaxMessageBytes)
			if err != nil {
				t.Fatal(err)
			}
			socks = append(socks, st)
		}
		for _, a := range socks {
			for j, b := range socks {
				a.SetPeer(uint32(j), b.Addr())
			}
		}
	}
	for i := 0; i < n; i++ {
		cfg := NodeConfig{Replica: DefaultConfig(uint32(i), n), Tick: 5 * time.Millisecond,
			RequestRetry: 100 * time.Millisecond, MaxMessageBytes: DefaultMaxMessageBytes, FirstTimestamp: uint64(i) << 40}
		cfg.Replica.Keys, cfg.Replica.PrivateKey = pubs, privs[i]
		cfg.Replica.CheckpointInterval, cfg.Replica.Window = 8, 32
		cfg.Replica.ViewChangeTicks, cfg.Replica.RetransmitTicks = 100, 10
		app := &logApp{}
		var tr Transport
		if tcp {
			tr = socks[i]
		} else {
			tr = c.net.Endpoint(uint32(i))
		}
		if wrap != nil {
			tr = wrap(uint32(i), tr)
		}
		id := i
		node, err := NewNode(cfg, app, tr, Hooks{
			OnExecute: func(e Execution) { c.mu.Lock(); c.execs[id] = append(c.execs[id], e); c.mu.Unlock() },
			OnDetection: func(d Detection) {
				c.mu.Lock()
				c.dets[d.Type]++
				c.mu.Unlock()
			},
			OnNewView: func(v uint64, primary bool) {
				if primary {
					c.mu.Lock()
					c.views++
					c.mu.Unlock()
				}
			},
		})
		if err != nil {
			t.Fatal(err)
		}
		c.nodes, c.apps = append(c.nodes, node), append(c.apps, app)
	}
	t.Cleanup(c.close)
	return c
}

func (c *testCluster) close() {
	for _, n := range c.nodes {
		n.Close()
	}
	c.net.Close()
}

// propose runs count sequential proposals through node from.
func (c *testCluster) propose(ctx context.Context, from, count int, tag string) {
	c.t.Helper()
	for i := 0; i < count; i++ {
		op := []byte(fmt.Sprintf("%s-%d", tag, i))
		res, err := c.nodes[from].Propose(ctx, op)
		if err != nil {
			for i, n := range c.nodes {
				n.mu.Lock()
				r := n.rep
				sl := r.slots[r.lastExec+1]
				desc := "none"
				if sl != nil {
					desc = fmt.Sprintf("view %d pp=%v digest=%x prepares=%d commits=%d prepared=%v", sl.view, sl.pp != nil, sl.digest[:3], len(sl.prepares), len(sl.commits), sl.prepared)
				}
				c.t.Logf("replica %d: view %d ivc %v target %d exec %d low %d pending %d timer %d timeout %d next slot %s", i, r.view, r.inViewChange, r.targetView, r.lastExec, r.low, len(r.pending), r.timer, r.timeout, desc)
				n.mu.Unlock()
			}
			c.t.Fatalf("propose %s: %v", op, err)
		}
		if !bytes.HasPrefix(res, op) {
			c.t.Fatalf("result %q for op %q", res, op)
		}
	}
}

// checkAgreement waits until at least 2f+1 of the correct replicas have
// executed the same, highest sequence number (>= minExec); a correct
// replica may legitimately lag until the next stable checkpoint, e.g. if
// it timed out alone. It then checks those replicas hold the same state
// and that every sequence number executed by any two correct replicas
// carries the same request and result.
func (c *testCluster) checkAgreement(ctx context.Context, correct []int, minExec int) {
	c.t.Helper()
	quorum := 2*F(len(c.nodes)) + 1
	var caughtUp []int
	for {
		var top uint64
		execs := map[int]uint64{}
		for _, i := range correct {
			execs[i] = c.nodes[i].Status().LastExecuted
			top = max(top, execs[i])
		}
		caughtUp = caughtUp[:0]
		for _, i := range correct {
			if execs[i] == top {
				caughtUp = append(caughtUp, i)
			}
		}
		if int(top) >= minExec && len(caughtUp) >= quorum {
			break
		}
		select {
		case <-ctx.Done():
			c.t.Fatalf("replicas did not converge: last executed %v", execs)
		case <-time.After(10 * time.Millisecond):
		}
	}
	correct = caughtUp
	var ref []byte
	for _, i := range correct {
		var snap []byte
		c.nodes[i].WithApp(func() { snap = c.apps[i].Snapshot() })
		if ref == nil {
			ref = snap
		} else if !bytes.Equal(ref, snap) {
			c.t.Fatalf("replica %d state %x differs from %x", i, snap, ref)
		}
	}
	// Sequence numbers executed by more than one replica agree.
	c.mu.Lock()
	defer c.mu.Unlock()
	type pos struct {
		seq   uint64
		index int
	}
	bySeq := map[pos]Execution{}
	for _, i := range correct {
		for _, e := range c.execs[i] {
			if prev, ok := bySeq[pos{e.Seq, e.Index}]; ok {
				if !bytes.Equal(prev.Result, e.Result) || prev.Client != e.Client || prev.Timestamp != e.Timestamp {
					c.t.Fatalf("seq %d: replica %d executed %+v, another %+v", e.Seq, i, e, prev)
				}
			} else {
				bySeq[pos{e.Seq, e.Index}] = e
			}
		}
	}
}

func (c *testCluster) detections(kind string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.dets[kind]
}

func TestNormalCase(t *testing.T) {
	for _, n := range []int{4, 7} {
		t.Run(fmt.Sprintf("n=%d", n), func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			c := newTestCluster(t, n, 1, nil)
			c.propose(ctx, 1, 40, "op")
			all := make([]int, n)
			for i := range all {
				all[i] = i
			}
			c.checkAgreement(ctx, all, 40)
			for i, node := range c.nodes {
				st := node.Status()
				// View changes may happen when a loaded machine (-race,
				// parallel packages) delays a request past the timeout.
				if st.Stable < 32 {
					t.Errorf("replica %d: %+v, want a stable checkpoint >= 32", i, st)
				}
				// Garbage collection keeps the log within the window.
				if st.LogSize > int(c.nodes[i].cfg.Replica.Window) {
					t.Errorf("replica %d holds %d log entries", i, st.LogSize)
				}
			}
			for _, k := range []string{DetectBadSignature, DetectEquivocation, DetectConflictingDigest} {
				if d := c.detections(k); d != 0 {
					t.Errorf("%d %s detections among correct replicas", d, k)
				}
			}
		})
	}
}

func TestConcurrentProposalsAreBatched(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c := newTestCluster(t, 4, 9, nil)
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for w := 0; w < 16; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; i < 10; i++ {
				op := []byte(fmt.Sprintf("w%d-%d", w, i))
				res, err := c.nodes[w%4].Propose(ctx, op)
				if err != nil || !bytes.HasPrefix(res, op) {
					errs <- fmt.Errorf("propose %s: %q %v", op, res, err)
					return
				}
			}
		}(w)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	c.checkAgreement(ctx, []int{0, 1, 2, 3}, 1)
	c.mu.Lock()
	defer c.mu.Unlock()
	ops, batched := 0, false
	for _, e := range c.execs[0] {
		if e.Op != nil {
			ops++
		}
		batched = batched || e.Index > 0
	}
	if !batched {
		t.Error("160 concurrent proposals were never batched")
	}
	// Replica 0 may lag by a few sequence numbers; every op ran at most once.
	if ops > 160 {
		t.Fatalf("%d ops executed for 160 proposals", ops)
	}
}
