package acp

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"testing"
	"time"

	"github.com/dwcp/dwcp/metrics"
	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// fastRaftConfig returns timeouts short enough for tests to elect in tens
// of milliseconds on a loaded 2-core machine.
func fastRaftConfig(t testing.TB) RaftConfig {
	cfg := DefaultRaftConfig("", "")
	cfg.HeartbeatTimeout = 100 * time.Millisecond
	cfg.ElectionTimeout = 100 * time.Millisecond
	cfg.LeaderLeaseTimeout = 50 * time.Millisecond
	cfg.CommitTimeout = 5 * time.Millisecond
	cfg.Logger = hclog.New(&hclog.LoggerOptions{Output: io.Discard, Level: hclog.Off})
	return cfg
}

func registerCmd(t testing.TB, vm, host string) []byte {
	b, err := EncodeCommand(Command{Op: OpRegister, VMID: vm, From: host})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// waitReplicas polls until every running replica has applied want.
func waitReplicas(t *testing.T, ctx context.Context, nodes []*RaftNode, want func(r *Registry) bool) {
	t.Helper()
	for {
		ok := true
		for _, n := range nodes {
			if n == nil {
				continue
			}
			n.View(func(r *Registry) { ok = ok && want(r) })
		}
		if ok {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("replicas did not converge: %v", ctx.Err())
		case <-time.After(5 * time.Millisecond):
		}
	}
}

func TestRaftKillLeaderKeepsCommitted(t *testing.T) {
	for _, n := range []int{3, 5, 7} {
		t.Run(fmt.Sprintf("nodes=%d", n), func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			m := metrics.New(nil)
			c, err := NewRaftCluster(ctx, n, t.TempDir(), fastRaftConfig(t), m)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			const total, killAt = 60, 20
			var acked []string
			firstLeader := -1
			for i := 0; len(acked) < total; i++ {
				if len(acked) == killAt && firstLeader < 0 {
					firstLeader = c.LeaderIndex()
					if err := c.Kill(firstLeader); err != nil {
						t.Fatal(err)
					}
				}
				vm := fmt.Sprintf("vm-%d", i)
				pctx, pcancel := context.WithTimeout(ctx, 5*time.Second)
				out, err := c.Propose(pctx, registerCmd(t, vm, "h1"))
				pcancel()
				if err != nil {
					t.Fatalf("propose %s: %v", vm, err)
				}
				if r, err := DecodeResult(out); err != nil || r.Err != nil || r.Epoch != 1 {
					t.Fatalf("result %+v %v", r, err)
				}
				acked = append(acked, vm)
			}
			if newLeader := c.LeaderIndex(); newLeader == firstLeader || newLeader < 0 {
				t.Fatalf("leader %d after killing %d", newLeader, firstLeader)
			}
			var nodes []*RaftNode
			for i := 0; i < n; i++ {
				nodes = append(nodes, c.Node(i))
			}
			waitReplicas(t, ctx, nodes, func(r *Registry) bool {
				for _, vm := range acked {
					if _, ok := r.Get(vm); !ok {
						return false
					}
				}
				return true
			})
			// The killed leader comes back and catches up too.
			if err := c.Restart(firstLeader); err != nil {
				t.Fatal(err)
			}
			waitReplicas(t, ctx, []*RaftNode{c.Node(firstLeader)}, func(r *Registry) bool { return r.Len() == total })
			if got := testutil.ToFloat64(m.ACPLeaderElections.WithLabelValues(metrics.ConsensusRaft)); got < 2 {
				t.Errorf("leader elections = %v, want >= 2", got)
			}
			if got := testutil.ToFloat64(m.ACPQuorumSize.WithLabelValues(metrics.ConsensusRaft)); got != float64(n/2+1) {
				t.Errorf("quorum size = %v, want %d", got, n/2+1)
			}
		})
	}
}

// inmemCluster builds n replicas over raft's in-memory transport so a test
// can cut links; stores are still BoltDB on disk.
func inmemCluster(t *testing.T, n int, m *metrics.Metrics) ([]*RaftNode, []*raft.InmemTransport) {
	t.Helper()
	dir := t.TempDir()
	var nodes []*RaftNode
	var trans []*raft.InmemTransport
	var peers []RaftPeer
	for i := 0; i < n; i++ {
		addr, tr := raft.NewInmemTransport("")
		cfg := fastRaftConfig(t)
		cfg.ID = fmt.Sprintf("raft-%d", i)
		cfg.DataDir = filepath.Join(dir, cfg.ID)
		cfg.Transport = tr
		node, err := NewRaftNode(cfg, m)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { node.Close() })
		nodes, trans = append(nodes, node), append(trans, tr)
		peers = append(peers, RaftPeer{ID: cfg.ID, Addr: string(addr)})
	}
	for i := range trans {
		for j := range trans {
			if i != j {
				trans[i].Connect(trans[j].LocalAddr(), trans[j])
			}
		}
	}
	if err := nodes[0].Bootstrap(context.Background(), peers); err != nil {
		t.Fatal(err)
	}
	return nodes, trans
}

func waitLeaderAmong(t *testing.T, ctx context.Context, nodes []*RaftNode) *RaftNode {
	t.Helper()
	for {
		for _, n := range nodes {
			if n.IsLeader() {
				return n
			}
		}
		select {
		case <-ctx.Done():
			t.Fatalf("no leader: %v", ctx.Err())
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// proposeAny commits cmd through whichever of nodes leads, retrying across
// leadership changes (elections are frequent with test timeouts under -race).
func proposeAny(t *testing.T, ctx context.Context, nodes []*RaftNode, cmd []byte) {
	t.Helper()
	for {
		for _, n := range nodes {
			if n.IsLeader() {
				pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
				_, err := n.Propose(pctx, cmd)
				cancel()
				if err == nil {
					return
				}
			}
		}
		select {
		case <-ctx.Done():
			t.Fatalf("no commit: %v", ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
}

func TestRaftMinorityPartitionCannotCommit(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 45*time.Second)
	defer cancel()
	m := metrics.New(nil)
	nodes, trans := inmemCluster(t, 5, m)
	proposeAny(t, ctx, nodes, registerCmd(t, "before", "h1"))
	leader := waitLeaderAmong(t, ctx, nodes)
	li := 0
	for i, n := range nodes {
		if n == leader {
			li = i
		}
	}
	// Minority = the leader plus the next replica; majority = the other 3.
	minority := []int{li, (li + 1) % 5}
	majority := []int{(li + 2) % 5, (li + 3) % 5, (li + 4) % 5}
	for _, a := range minority {
		for _, b := range majority {
			trans[a].Disconnect(trans[b].LocalAddr())
			trans[b].Disconnect(trans[a].LocalAddr())
		}
	}
	// Whether the cut-off leader still believes it leads or has already
	// stepped down (lease expired), it must not commit.
	for _, i := range minority {
		pctx, pcancel := context.WithTimeout(ctx, 500*time.Millisecond)
		_, err := nodes[i].Propose(pctx, registerCmd(t, fmt.Sprintf("minority-%d", i), "h1"))
		pcancel()
		if err == nil {
			t.Fatalf("minority replica %s committed a command", nodes[i].ID())
		}
	}
	if got := testutil.ToFloat64(m.ACPConsensusFailures.WithLabelValues(metrics.ConsensusRaft)); got < 2 {
		t.Errorf("consensus failures = %v, want >= 2", got)
	}
	if got := testutil.ToFloat64(m.Errors.WithLabelValues(metrics.ComponentACP, metrics.ErrorConsensusFailure)); got < 2 {
		t.Errorf("errors_total{consensus_failure} = %v, want >= 2", got)
	}
	var side []*RaftNode
	for _, i := range majority {
		side = append(side, nodes[i])
	}
	proposeAny(t, ctx, side, registerCmd(t, "majority", "h2"))
	// Heal: the minority's uncommitted entries are overwritten everywhere.
	for _, a := range minority {
		for _, b := range majority {
			trans[a].Connect(trans[b].LocalAddr(), trans[b])
			trans[b].Connect(trans[a].LocalAddr(), trans[a])
		}
	}
	waitReplicas(t, ctx, nodes, func(r *Registry) bool {
		_, ok := r.Get("majority")
		return ok
	})
	proposeAny(t, ctx, nodes, registerCmd(t, "after", "h2"))
	waitReplicas(t, ctx, nodes, func(r *Registry) bool {
		_, ok := r.Get("after")
		return ok
	})
	for _, n := range nodes {
		n.View(func(r *Registry) {
			for _, i := range minority {
				if _, ok := r.Get(fmt.Sprintf("minority-%d", i)); ok {
					t.Errorf("%s applied minority-%d (leader at partition: %d; stats %v)", n.ID(), i, li, n.raft.Stats())
				}
			}
		})
	}
}

func TestRaftRestartFromDiskWithSnapshot(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := NewRaftCluster(ctx, 3, t.TempDir(), fastRaftConfig(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	oc := NewOwnershipClient(c)
	for i := 0; i < 30; i++ {
		if _, err := oc.Register(ctx, fmt.Sprintf("vm-%d", i), "h1"); err != nil {
			t.Fatal(err)
		}
	}
	epoch, err := oc.Handover(ctx, "vm-0", "h1", "h2")
	if err != nil || epoch != 2 {
		t.Fatalf("handover: epoch %d, %v", epoch, err)
	}
	for i := 0; i < 3; i++ {
		waitReplicas(t, ctx, []*RaftNode{c.Node(i)}, func(r *Registry) bool { return r.CanResume("vm-0", "h2", 2) })
		if err := c.Node(i).Snapshot(ctx); err != nil {
			t.Fatal(err)
		}
	}
	// Entries after the snapshot are recovered from the log, not the snapshot.
	for i := 30; i < 40; i++ {
		if _, err := oc.Register(ctx, fmt.Sprintf("vm-%d", i), "h1"); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < 3; i++ {
		if err := c.Kill(i); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < 3; i++ {
		if err := c.Restart(i); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.WaitLeader(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.Node(1).Bootstrap(ctx, []RaftPeer{{ID: "raft-1", Addr: c.Node(1).Addr()}}); !errors.Is(err, ErrAlreadyBootstrapped) {
		t.Fatalf("bootstrap after restart: %v, want ErrAlreadyBootstrapped", err)
	}
	waitReplicas(t, ctx, []*RaftNode{c.Node(0), c.Node(1), c.Node(2)}, func(r *Registry) bool {
		return r.Len() == 40 && r.CanResume("vm-0", "h2", 2)
	})
	if err := oc.ConfirmResume(ctx, "vm-0", "h1", 1); !errors.Is(err, ErrNotOwner) {
		t.Fatalf("old owner resume after restart: %v, want ErrNotOwner", err)
	}
}

func TestRaftJoinAndRemove(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	dir := t.TempDir()
	c, err := NewRaftCluster(ctx, 3, dir, fastRaftConfig(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Propose(ctx, registerCmd(t, "vm-a", "h1")); err != nil {
		t.Fatal(err)
	}
	cfg := fastRaftConfig(t)
	cfg.ID, cfg.DataDir = "raft-new", filepath.Join(dir, "raft-new")
	extra, err := NewRaftNode(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer extra.Close()
	leader := c.Node(c.LeaderIndex())
	if err := leader.Join(ctx, extra.ID(), extra.Addr()); err != nil {
		t.Fatal(err)
	}
	waitReplicas(t, ctx, []*RaftNode{extra}, func(r *Registry) bool { _, ok := r.Get("vm-a"); return ok })
	if got := len(leader.Members()); got != 4 {
		t.Fatalf("members after join = %d, want 4", got)
	}
	victim := (c.LeaderIndex() + 1) % 3
	if err := leader.Remove(ctx, fmt.Sprintf("raft-%d", victim)); err != nil {
		t.Fatal(err)
	}
	if got := len(leader.Members()); got != 3 {
		t.Fatalf("members after remove = %d, want 3", got)
	}
	if _, err := c.Propose(ctx, registerCmd(t, "vm-b", "h1")); err != nil {
		t.Fatal(err)
	}
	waitReplicas(t, ctx, []*RaftNode{extra}, func(r *Registry) bool { _, ok := r.Get("vm-b"); return ok })
}

func TestRaftConfigValidate(t *testing.T) {
	good := DefaultRaftConfig("a", "/tmp/x")
	tests := []struct {
		name string
		mut  func(*RaftConfig)
		want string
	}{
		{"ok", func(*RaftConfig) {}, ""},
		{"no id", func(c *RaftConfig) { c.ID = "" }, "ID"},
		{"no dir", func(c *RaftConfig) { c.DataDir = "" }, "DataDir"},
		{"tiny heartbeat", func(c *RaftConfig) { c.HeartbeatTimeout = time.Millisecond }, "HeartbeatTimeout 1ms"},
		{"lease too long", func(c *RaftConfig) { c.LeaderLeaseTimeout = time.Hour }, "LeaderLeaseTimeout 1h0m0s"},
		{"election < heartbeat", func(c *RaftConfig) { c.ElectionTimeout = 10 * time.Millisecond }, "ElectionTimeout 10ms"},
		{"retain", func(c *RaftConfig) { c.SnapshotRetain = 0 }, "SnapshotRetain 0"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := good
			tc.mut(&c)
			err := c.Validate()
			if (err == nil) != (tc.want == "") || (err != nil && !containsStr(err.Error(), tc.want)) {
				t.Fatalf("Validate() = %v, want error containing %q", err, tc.want)
			}
		})
	}
}

func containsStr(s, sub string) bool {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return true
		}
	}
	return false
}
