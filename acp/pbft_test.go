package acp

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/dwcp/dwcp/metrics"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// fastPBFTConfig shortens the timers for loopback tests.
func fastPBFTConfig() PBFTConfig {
	cfg := DefaultPBFTConfig(0, 4)
	cfg.Tick = 5 * time.Millisecond
	cfg.ViewChangeTimeout = 200 * time.Millisecond
	cfg.RetransmitInterval = 50 * time.Millisecond
	cfg.RequestRetry = 150 * time.Millisecond
	cfg.CheckpointInterval, cfg.Window = 8, 32
	return cfg
}

func TestPBFTClusterOwnershipOverTCP(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	m := metrics.New(nil)
	c, err := NewPBFTCluster(ctx, 4, fastPBFTConfig(), m)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	oc := NewOwnershipClient(c)
	if err := oc.PlanMigration(ctx, "vm-1", "h1", "h2"); err != nil {
		t.Fatal(err)
	}
	if err := oc.Advance(ctx, "vm-1", StatePrecopy); err != nil {
		t.Fatal(err)
	}
	epoch, err := oc.Handover(ctx, "vm-1", "h1", "h2")
	if err != nil || epoch != 2 {
		t.Fatalf("handover: %d %v", epoch, err)
	}
	if err := oc.ConfirmResume(ctx, "vm-1", "h1", 1); !errors.Is(err, ErrNotOwner) {
		t.Fatalf("old owner resume: %v", err)
	}
	if err := oc.ConfirmResume(ctx, "vm-1", "h2", 2); err != nil {
		t.Fatal(err)
	}
	if host, e := oc.Owner("vm-1"); host != "h2" || e != 2 || !oc.CanResume("vm-1", "h2", 2) || oc.CanResume("vm-1", "h1", 1) {
		t.Fatalf("read after commit: owner %s epoch %d", host, e)
	}
	if c.Leader() != "pbft-0" || len(c.Members()) != 4 {
		t.Fatalf("leader %q members %v", c.Leader(), c.Members())
	}
	// Crash the primary: a view change elects pbft-1 and commits resume.
	if err := c.Kill(0); err != nil {
		t.Fatal(err)
	}
	node := c.Node(1)
	for i := 0; i < 5; i++ {
		if _, err := NewOwnershipClient(node).Register(ctx, fmt.Sprintf("vm-after-%d", i), "h3"); err != nil {
			t.Fatalf("after primary crash: %v (status %+v)", err, node.Status())
		}
	}
	if node.Leader() == "pbft-0" {
		t.Fatalf("primary still pbft-0: %+v", node.Status())
	}
	if got := testutil.ToFloat64(m.ACPLeaderElections.WithLabelValues(metrics.ConsensusPBFT)); got < 1 {
		t.Errorf("pbft leader elections = %v", got)
	}
	if got := testutil.ToFloat64(m.ACPQuorumSize.WithLabelValues(metrics.ConsensusPBFT)); got != 3 {
		t.Errorf("pbft quorum = %v, want 3", got)
	}
	if got := testutil.CollectAndCount(m.ACPConsensusLatency); got != 1 {
		t.Errorf("latency series = %d, want 1 (pbft, 4)", got)
	}
	if got := testutil.ToFloat64(m.ACPByzantineDetections.WithLabelValues(metrics.ByzantineBadSignature)); got != 0 {
		t.Errorf("bad signatures among correct replicas: %v", got)
	}
}

func TestSelect(t *testing.T) {
	ms := func(rtt time.Duration, domains ...string) []Member {
		var out []Member
		for i, d := range domains {
			out = append(out, Member{ID: fmt.Sprint(i), TrustDomain: d, RTT: rtt})
		}
		return out
	}
	def := DefaultSelectorConfig()
	tests := []struct {
		name    string
		members []Member
		cfg     SelectorConfig
		want    string
	}{
		{"one domain, fast", ms(2*time.Millisecond, "dc1", "dc1", "dc1"), def, AlgorithmRaft},
		{"one domain, slow", ms(40*time.Millisecond, "dc1", "dc1", "dc1"), def, AlgorithmPBFT},
		{"at the threshold", ms(10*time.Millisecond, "dc1", "dc1", "dc1"), def, AlgorithmPBFT},
		{"two domains, fast", ms(time.Millisecond, "a", "a", "b", "b"), def, AlgorithmPBFT},
		{"forced raft", ms(time.Second, "a", "b"), SelectorConfig{Force: AlgorithmRaft, MaxRaftRTT: time.Millisecond}, AlgorithmRaft},
		{"forced pbft", ms(0, "a", "a"), SelectorConfig{Force: AlgorithmPBFT, MaxRaftRTT: time.Millisecond}, AlgorithmPBFT},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got, why := Select(tc.members, tc.cfg); got != tc.want {
				t.Fatalf("Select = %s (%s), want %s", got, why, tc.want)
			}
		})
	}
	if err := (SelectorConfig{Force: "paxos", MaxRaftRTT: 1}).Validate(); err == nil {
		t.Error("accepted Force=paxos")
	}
}

func TestNewPicksAlgorithm(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	dc := []Member{{"a", "dc", time.Millisecond}, {"b", "dc", time.Millisecond}, {"c", "dc", time.Millisecond}}
	cfg := DefaultConfig(dc, t.TempDir())
	cfg.Raft = fastRaftConfig(t)
	c, err := New(ctx, cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.Algorithm() != AlgorithmRaft {
		t.Fatalf("algorithm %s", c.Algorithm())
	}
	c.Close()
	if err := c.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}

	wan := []Member{{"a", "eu", 80 * time.Millisecond}, {"b", "us", 80 * time.Millisecond}, {"c", "ap", 80 * time.Millisecond}}
	if _, err := New(ctx, DefaultConfig(wan, ""), nil); err == nil {
		t.Fatal("PBFT with 3 members accepted")
	}
	wan = append(wan, Member{"d", "sa", 90 * time.Millisecond})
	cfg = DefaultConfig(wan, "")
	cfg.PBFT = fastPBFTConfig()
	p, err := New(ctx, cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if p.Algorithm() != AlgorithmPBFT {
		t.Fatalf("algorithm %s", p.Algorithm())
	}
	if _, err := NewOwnershipClient(p).Register(ctx, "vm", "h"); err != nil {
		t.Fatal(err)
	}
}

func TestPBFTConfigValidate(t *testing.T) {
	pubs, privs, err := GenerateKeys(4)
	if err != nil {
		t.Fatal(err)
	}
	good := DefaultPBFTConfig(1, 4)
	good.Keys, good.PrivateKey = pubs, privs[1]
	tests := []struct {
		name string
		mut  func(*PBFTConfig)
		want string
	}{
		{"ok", func(*PBFTConfig) {}, ""},
		{"three replicas", func(c *PBFTConfig) { c.N = 3 }, "N=3"},
		{"wrong key", func(c *PBFTConfig) { c.PrivateKey = privs[2] }, "does not match Keys[1]"},
		{"tick", func(c *PBFTConfig) { c.Tick = 0 }, "Tick 0s"},
		{"window", func(c *PBFTConfig) { c.Window = 65 }, "Window 65"},
		{"bind", func(c *PBFTConfig) { c.BindAddr = "" }, "BindAddr"},
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
