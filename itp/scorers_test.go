package itp

import (
	"context"
	"math"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dwcp/dwcp/metrics"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func cycleFor(t *testing.T, vm VM, hosts []Host, links Links) *Cycle {
	t.Helper()
	cfg := DefaultConfig()
	st := newClusterState(&cfg)
	st.reset(hosts, links, false, &vm)
	c := &Cycle{}
	st.prepare(c, &vm)
	return c
}

// TestScorers is a table of every built-in scorer on two or three hosts.
func TestScorers(t *testing.T) {
	vm := VM{ID: "v", Request: Resources{MilliCPU: 4000, MemoryBytes: 16 * gib}}
	half := host("half", 16, 64)
	half.Used = Resources{MilliCPU: 8000, MemoryBytes: 32 * gib}
	empty := host("empty", 16, 64)
	far := host("far", 16, 64)
	far.Site, far.Zone = "remote", "z2"
	far.Used = Resources{MilliCPU: 12000, MemoryBytes: 48 * gib}
	links := Links{{"s", "remote"}: {BandwidthBytesPerSec: 100e6, RTT: 50 * time.Millisecond}}
	migrating := vm
	migrating.SourceSite = "s"
	cases := []struct {
		name   string
		scorer Scorer
		vm     VM
		hosts  []Host
		want   []float64
	}{
		// half: after 12/16 cpu, 48/64 mem = 75%; empty: 25%.
		{"most-allocated", MostAllocated{}, vm, []Host{half, empty}, []float64{75, 25}},
		{"least-allocated", LeastAllocated{}, vm, []Host{half, empty}, []float64{25, 75}},
		// zone z1 holds half+empty: 8/32 cpu, 32/128 mem = 25% used; z2 holds far: 75%.
		{"zone-balance", ZoneBalance{}, vm, []Host{half, empty, far}, []float64{75, 75, 25}},
		{"migration-cost fresh start", MigrationCost{}, vm, []Host{half, far}, []float64{100, 100}},
		{"soft-constraints none", SoftConstraints{}, vm, []Host{half}, []float64{100}},
		{"reliability", Reliability{}, vm, []Host{withRel(half, 0.99), withRel(empty, 0)}, []float64{99, 50}},
		{"cost", Cost{}, vm, []Host{withCost(half, 2), withCost(empty, 1), withCost(far, 0)}, []float64{0, 50, 100}},
		{"cost all free", Cost{}, vm, []Host{half, empty}, []float64{100, 100}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := cycleFor(t, tc.vm, tc.hosts, links)
			for i, w := range tc.want {
				if got := tc.scorer.Score(c, i); math.Abs(got-w) > 1e-9 {
					t.Fatalf("host %s: score %v, want %v", tc.hosts[i].ID, got, w)
				}
			}
		})
	}

	t.Run("migration-cost ratio", func(t *testing.T) {
		c := cycleFor(t, migrating, []Host{half, far}, links)
		local, _ := c.Prediction(0)
		remote, _ := c.Prediction(1)
		if local.Total >= remote.Total {
			t.Fatalf("local %v not faster than remote %v", local.Total, remote.Total)
		}
		if got := (MigrationCost{}).Score(c, 0); got != 100 {
			t.Fatalf("fastest host scores %v", got)
		}
		want := 100 * float64(local.Total) / float64(remote.Total)
		if got := (MigrationCost{}).Score(c, 1); math.Abs(got-want) > 1e-9 {
			t.Fatalf("remote scores %v, want %v", got, want)
		}
	})
	t.Run("soft-constraints weights", func(t *testing.T) {
		v := vm
		v.Rules = []Rule{
			{Kind: Affinity, LabelKey: "ssd", Weight: 3},
			{Kind: AntiAffinity, Zones: []string{"z2"}},
		}
		ssd := withLabel(empty, "ssd", "1")
		c := cycleFor(t, v, []Host{ssd, half, far}, links)
		for i, w := range []float64{100, 25, 0} {
			if got := (SoftConstraints{}).Score(c, i); math.Abs(got-w) > 1e-9 {
				t.Fatalf("host %d: %v, want %v", i, got, w)
			}
		}
		if n, _, _ := c.SoftViolations(2); n != 2 {
			t.Fatalf("far violates %d rules, want 2", n)
		}
	})
}

func withRel(h Host, r float64) Host     { h.Reliability = r; return h }
func withCost(h Host, c float64) Host    { h.CostPerHour = c; return h }
func withLabel(h Host, k, v string) Host { h.Labels = map[string]string{k: v}; return h }

// TestPlaceWeighsScorers checks the pipeline's selection: packing wins with
// the default weights, spreading with SpreadScorers, and a soft rule beats
// packing.
func TestPlaceWeighsScorers(t *testing.T) {
	vm := VM{ID: "v", Request: Resources{MilliCPU: 2000, MemoryBytes: 8 * gib}}
	half := host("half", 16, 64)
	half.Used = Resources{MilliCPU: 8000, MemoryBytes: 32 * gib}
	empty := host("empty", 16, 64)
	hosts := []Host{empty, half}
	for _, tc := range []struct {
		name    string
		scorers []WeightedScorer
		vm      VM
		want    string
	}{
		{"bin-pack", DefaultScorers(), vm, "half"},
		{"spread", SpreadScorers(), vm, "empty"},
		{"soft rule beats packing", DefaultScorers(), VM{ID: "v", Request: vm.Request, Rules: []Rule{{Kind: AntiAffinity, LabelKey: "busy"}}}, "empty"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := DefaultConfig()
			cfg.Scorers = tc.scorers
			p := mustPlacer(t, cfg)
			hs := []Host{hosts[0], withLabel(hosts[1], "busy", "yes")}
			d, err := p.Place(context.Background(), tc.vm, hs, nil)
			if err != nil || d.HostID != tc.want {
				t.Fatalf("chose %s (%v), want %s", d.HostID, err, tc.want)
			}
			if d.Score < 0 || d.Score > 100 {
				t.Fatalf("score %v outside 0..100", d.Score)
			}
		})
	}
}

func TestConfigValidate(t *testing.T) {
	if err := func() *Config { c := DefaultConfig(); return &c }().Validate(); err != nil {
		t.Fatalf("default config invalid: %v", err)
	}
	for _, tc := range []struct {
		name   string
		mutate func(*Config)
		want   string
	}{
		{"no scorers", func(c *Config) { c.Scorers = nil }, "Scorers is empty"},
		{"nil scorer", func(c *Config) { c.Scorers[0].Scorer = nil }, "Scorers[0].Scorer is nil"},
		{"negative weight", func(c *Config) { c.Scorers[1].Weight = -1 }, "weight -1"},
		{"NaN weight", func(c *Config) { c.Scorers[1].Weight = math.NaN() }, "weight NaN"},
		{"zero weights", func(c *Config) {
			for i := range c.Scorers {
				c.Scorers[i].Weight = 0
			}
		}, "sum to 0"},
		{"duplicate", func(c *Config) { c.Scorers = append(c.Scorers, WeightedScorer{Cost{}, 1}) }, `"cost" appears twice`},
		{"nil filter", func(c *Config) { c.ExtraFilters = []Filter{nil} }, "ExtraFilters[0] is nil"},
		{"local link", func(c *Config) { c.LocalLink.BandwidthBytesPerSec = 0 }, "LocalLink.BandwidthBytesPerSec 0"},
		{"rtt", func(c *Config) { c.LocalLink.RTT = -1 }, "LocalLink.RTT -1ns"},
		{"rounds", func(c *Config) { c.Precopy.MaxRounds = 0 }, "MaxRounds 0"},
		{"target downtime", func(c *Config) { c.Precopy.TargetDowntime = -time.Second }, "TargetDowntime -1s"},
		{"max downtime", func(c *Config) { c.MaxDowntime = -time.Second }, "MaxDowntime -1s"},
		{"exact vms", func(c *Config) { c.ExactSearchMaxVMs = -1 }, "ExactSearchMaxVMs -1"},
		{"exact nodes", func(c *Config) { c.ExactSearchNodes = 0 }, "ExactSearchNodes 0"},
		{"lp types", func(c *Config) { c.LPMaxHostTypes = -2 }, "LPMaxHostTypes -2"},
		{"hot threshold", func(c *Config) { c.Rebalance.HotThreshold = 1.5 }, "HotThreshold 1.5"},
		{"horizon", func(c *Config) { c.Rebalance.Horizon = 0 }, "Horizon 0s"},
		{"hotspot cost", func(c *Config) { c.Rebalance.HotspotCostPerHour = math.Inf(1) }, "HotspotCostPerHour +Inf"},
		{"host cost", func(c *Config) { c.Rebalance.DefaultHostCostPerHour = -1 }, "DefaultHostCostPerHour -1"},
		{"migration cost", func(c *Config) { c.Rebalance.MigrationCostPerSecond = -1 }, "MigrationCostPerSecond -1"},
		{"downtime cost", func(c *Config) { c.Rebalance.DowntimeCostPerSecond = -1 }, "DowntimeCostPerSecond -1"},
		{"priority factor", func(c *Config) { c.Rebalance.PriorityCostFactor = -1 }, "PriorityCostFactor -1"},
		{"max moves", func(c *Config) { c.Rebalance.MaxMoves = -1 }, "MaxMoves -1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := DefaultConfig()
			tc.mutate(&c)
			err := c.Validate()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error naming %q", err, tc.want)
			}
			if _, err := NewPlacer(c, nil); err == nil {
				t.Fatal("NewPlacer accepted an invalid config")
			}
		})
	}
}

func TestVMValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		vm   VM
		want string
	}{
		{"empty id", VM{}, "empty ID"},
		{"negative request", VM{ID: "a", Request: Resources{MilliCPU: -1}}, "negative resources"},
		{"negative size", VM{ID: "a", SizeBytes: -1}, "SizeBytes -1"},
		{"NaN dirty rate", VM{ID: "a", DirtyRateBytesPerSec: math.NaN()}, "DirtyRateBytesPerSec NaN"},
		{"reliability", VM{ID: "a", MinReliability: 2}, "MinReliability 2"},
		{"downtime", VM{ID: "a", MaxDowntime: -1}, "MaxDowntime -1ns"},
		{"rule kind", VM{ID: "a", Rules: []Rule{{LabelKey: "x"}}}, "rule 0: kind RuleKind(0)"},
		{"rule targets", VM{ID: "a", Rules: []Rule{{Kind: Affinity, LabelKey: "x", Zones: []string{"z"}}}}, "has 2 targets"},
		{"rule no target", VM{ID: "a", Rules: []Rule{{Kind: Affinity}}}, "has 0 targets"},
		{"rule scope", VM{ID: "a", Rules: []Rule{{Kind: Affinity, VMs: []string{"b"}, Scope: 7}}}, "scope 7"},
		{"rule weight", VM{ID: "a", Rules: []Rule{{Kind: Affinity, VMs: []string{"b"}, Weight: -1}}}, "weight -1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.vm.Validate()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error containing %q", err, tc.want)
			}
			p := mustPlacer(t, DefaultConfig())
			if _, err := p.Place(context.Background(), tc.vm, []Host{host("h", 8, 8)}, nil); err == nil {
				t.Fatal("Place accepted an invalid VM")
			}
		})
	}
}

// TestPlaceMetrics checks that a decision records its latency in both
// histograms and soft violations in the counter.
func TestPlaceMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := metrics.New(reg)
	p, err := NewPlacer(DefaultConfig(), m)
	if err != nil {
		t.Fatal(err)
	}
	vm := VM{ID: "v", Request: Resources{MilliCPU: 1000}, Rules: []Rule{{Kind: Affinity, LabelKey: "nowhere"}, {Kind: Affinity, Zones: []string{"zz"}}}}
	for range 3 {
		if _, err := p.Place(context.Background(), vm, []Host{host("a", 8, 8)}, nil); err != nil {
			t.Fatal(err)
		}
	}
	if got := testutil.ToFloat64(m.ITPConstraintViolations); got != 6 {
		t.Fatalf("constraint violations %v, want 6", got)
	}
	if n := testutil.CollectAndCount(m.ITPDecisionLatency); n != 1 {
		t.Fatalf("decision latency series %d", n)
	}
	for _, name := range []string{"dwcp_v3_itp_decision_latency_seconds", "dwcp_v3_migration_latency_seconds"} {
		count := histogramCount(t, reg, name)
		if count != 3 {
			t.Fatalf("%s count %d, want 3", name, count)
		}
	}
}

func histogramCount(t *testing.T, reg *prometheus.Registry, name string) uint64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		var n uint64
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "component" && l.GetValue() != metrics.ComponentITP {
					t.Fatalf("%s has component %q", name, l.GetValue())
				}
			}
			n += m.GetHistogram().GetSampleCount()
		}
		return n
	}
	return 0
}

// TestPlaceConcurrent runs decisions from several goroutines on one
// Placer (run with -race) and checks they agree with a serial run.
func TestPlaceConcurrent(t *testing.T) {
	p := mustPlacer(t, DefaultConfig())
	hosts := []Host{host("a", 8, 32), host("b", 16, 64), host("c", 4, 8)}
	hosts[1].Used.MilliCPU = 12000
	vm := VM{ID: "v", Request: Resources{MilliCPU: 2000, MemoryBytes: 4 * gib}, SourceSite: "s", Rules: []Rule{{Kind: AntiAffinity, VMs: []string{"x"}, Hard: true}}}
	want, err := p.Place(context.Background(), vm, hosts, nil)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 8 {
		wg.Go(func() {
			for range 200 {
				d, err := p.Place(context.Background(), vm, hosts, nil)
				if err != nil || d.HostID != want.HostID || d.Score != want.Score {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Fatalf("concurrent decision differs: %v", e)
	}
}

func TestPlaceCancelled(t *testing.T) {
	p := mustPlacer(t, DefaultConfig())
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := p.Place(ctx, VM{ID: "v"}, []Host{host("a", 1, 1)}, nil); err != context.Canceled {
		t.Fatalf("got %v", err)
	}
	if _, err := p.PlaceBatch(ctx, []VM{{ID: "v"}}, []Host{host("a", 1, 1)}, nil); err != context.Canceled {
		t.Fatalf("batch got %v", err)
	}
	if _, err := p.PlanRebalance(ctx, RebalanceRequest{}); err != context.Canceled {
		t.Fatalf("rebalance got %v", err)
	}
}
