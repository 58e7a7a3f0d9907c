package itp

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

// realisticVM is a migrating VM with the rules an engine typically sets:
// spread from its replicas, a preferred zone, an SSD label.
func realisticVM(rng *rand.Rand, i int) VM {
	vm := realisticVMs(rng, 1)[0]
	vm.ID = fmt.Sprintf("new-%d", i)
	vm.SourceSite = "site-0"
	vm.MaxDowntime = 2 * time.Second
	vm.Rules = []Rule{
		{Kind: AntiAffinity, Hard: true, VMs: []string{"old-1-0", "old-2-0", "old-3-0"}},
		{Kind: Affinity, Zones: []string{"zone-1"}},
		{Kind: AntiAffinity, LabelKey: "rack", LabelValue: "r7", Hard: true},
	}
	return vm
}

// TestDecisionLatencyP99At10kHosts: single-VM decision p99 < 50 ms with
// 10,000 loaded hosts (target of the issue), for VMs with hard and soft
// rules that migrate across two sites. The assertion is on the thread's
// CPU time per decision: on the shared 2-core machine the run queue (load
// of 10-16 from other builds) adds waits that say nothing about this code.
// Wall time is logged next to it.
func TestDecisionLatencyP99At10kHosts(t *testing.T) {
	rng := rand.New(rand.NewPCG(42, 1))
	hosts := realisticHosts(rng, 10000, true)
	loadHosts(rng, hosts)
	p := mustPlacer(t, DefaultConfig())
	links := testLinks()
	const n = 200
	wall := make([]time.Duration, 0, n)
	cpu := make([]time.Duration, 0, n)
	lockThread()
	defer unlockThread()
	var timer threadCPUTimer
	for i := range n {
		vm := realisticVM(rng, i)
		start := time.Now()
		timer.begin()
		if _, err := p.Place(context.Background(), vm, hosts, links); err != nil {
			t.Fatal(err)
		}
		cpu = append(cpu, timer.elapsed())
		wall = append(wall, time.Since(start))
	}
	slices.Sort(wall)
	slices.Sort(cpu)
	t.Logf("10,000 hosts, %d decisions: CPU p50 %v p99 %v max %v; wall p50 %v p99 %v max %v (thread clock: %v)",
		n, cpu[n/2], cpu[n*99/100], cpu[n-1], wall[n/2], wall[n*99/100], wall[n-1], haveThreadCPU)
	if p99 := cpu[n*99/100]; p99 > 50*time.Millisecond*raceSlowdown {
		t.Fatalf("p99 %v above 50 ms", p99)
	}
}

// addReplicaRules groups VMs in threes that must run on different hosts
// (hard), each preferring one zone (soft), all migrating from site-0.
func addReplicaRules(vms []VM) {
	for i := range vms {
		g := 3 * (i / 3)
		vms[i].Rules = []Rule{
			{Kind: AntiAffinity, Hard: true, VMs: []string{fmt.Sprintf("vm-%d", g), fmt.Sprintf("vm-%d", g+1), fmt.Sprintf("vm-%d", g+2)}},
			{Kind: Affinity, Zones: []string{fmt.Sprintf("zone-%d", i%3)}},
		}
		vms[i].SourceSite = "site-0"
	}
}

// TestRealisticBatchEfficiency places 1,000 realistic VMs onto 1,000
// empty hosts (identical and mixed) and compares with first-fit and random
// placement on the same instances (the baselines ignore the rules of the
// constrained variant). Targets: efficiency >= 90%, < 1 s.
// PlaceBatch starts no goroutines, so the thread's CPU clock sees all its
// work (the garbage collector's background share aside).
func TestRealisticBatchEfficiency(t *testing.T) {
	p := mustPlacer(t, DefaultConfig())
	for _, variant := range []string{"identical", "mixed", "mixed+rules"} {
		mixed := variant != "identical"
		for seed := range uint64(3) {
			rng := rand.New(rand.NewPCG(seed, 11))
			hosts := realisticHosts(rng, 1000, mixed)
			vms := realisticVMs(rng, 1000)
			var links Links
			if variant == "mixed+rules" {
				addReplicaRules(vms)
				links = testLinks()
			}
			lockThread()
			var timer threadCPUTimer
			start := time.Now()
			timer.begin()
			res, err := p.PlaceBatch(context.Background(), vms, hosts, links)
			cpu := timer.elapsed()
			elapsed := time.Since(start)
			unlockThread()
			if err != nil {
				t.Fatal(err)
			}
			ff, _ := firstFit(vms, hosts)
			rf, _ := randomFit(rand.New(rand.NewPCG(seed, 12)), vms, hosts)
			effFF := Efficiency(ff, 200)
			effRnd := Efficiency(rf, 200)
			t.Logf("%s seed=%d: itp %.1f%% (%d hosts, bound %d, LP %.1f, freed %d, soft violations %d) in %v CPU, %v wall; first-fit %.1f%% (%d); random %.1f%% (%d)",
				variant, seed, res.Efficiency.Percent, res.Efficiency.HostsUsed, res.Efficiency.LowerBound, res.Efficiency.LPBound,
				res.HostsFreedByLocalSearch, res.SoftViolations, cpu.Round(time.Millisecond), elapsed.Round(time.Millisecond), effFF.Percent, effFF.HostsUsed, effRnd.Percent, effRnd.HostsUsed)
			if variant == "mixed+rules" {
				hostOf := map[string]int{}
				for _, a := range res.Assignments {
					hostOf[a.VMID] = a.HostIndex
				}
				checkHard(t, DefaultConfig(), vms, hosts, res.Hosts, hostOf, links)
			}
			if res.Efficiency.Percent < 90 {
				t.Errorf("efficiency %.1f%% below 90%%", res.Efficiency.Percent)
			}
			if res.Efficiency.HostsUsed > effFF.HostsUsed {
				t.Errorf("itp used %d hosts, first-fit %d", res.Efficiency.HostsUsed, effFF.HostsUsed)
			}
			// The 1 s target is for an optimised build; the race detector
			// slows this code about tenfold. CPU time, as in the latency
			// test, keeps other builds' load out of the verdict.
			if limit := time.Second * time.Duration(raceSlowdown); cpu > limit {
				t.Errorf("batch took %v CPU, limit %v", cpu, limit)
			}
		}
	}
}

func BenchmarkPlace(b *testing.B) {
	for _, n := range []int{1000, 10000} {
		rng := rand.New(rand.NewPCG(1, 1))
		hosts := realisticHosts(rng, n, true)
		loadHosts(rng, hosts)
		vm := realisticVM(rng, 0)
		links := testLinks()
		b.Run(fmt.Sprintf("itp/hosts=%d", n), func(b *testing.B) {
			p := mustPlacer(b, DefaultConfig())
			b.ReportAllocs()
			for b.Loop() {
				if _, err := p.Place(context.Background(), vm, hosts, links); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "hosts/s")
		})
		// Baseline: the leanest full-scan decision, resource fit and
		// most-allocated only (no rules, no migration model, no plugins).
		b.Run(fmt.Sprintf("best-fit-scan/hosts=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				best, bestFill := -1, -1.0
				for h := range hosts {
					if hosts[h].Cordoned || !fitsIn(hosts[h].Used, vm.Request, hosts[h].Capacity) {
						continue
					}
					if fill, _ := utilization(hosts[h].Used.Add(vm.Request), hosts[h].Capacity); fill > bestFill {
						best, bestFill = h, fill
					}
				}
				if best < 0 {
					b.Fatal("no host")
				}
			}
			b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "hosts/s")
		})
	}
}

func BenchmarkPlaceBatch1000on1000(b *testing.B) {
	rng := rand.New(rand.NewPCG(0, 11))
	hosts := realisticHosts(rng, 1000, true)
	vms := realisticVMs(rng, 1000)
	b.Run("itp", func(b *testing.B) {
		p := mustPlacer(b, DefaultConfig())
		b.ReportAllocs()
		var eff float64
		for b.Loop() {
			res, err := p.PlaceBatch(context.Background(), vms, hosts, nil)
			if err != nil {
				b.Fatal(err)
			}
			eff = res.Efficiency.Percent
		}
		b.ReportMetric(eff, "efficiency%")
	})
	b.Run("first-fit", func(b *testing.B) {
		b.ReportAllocs()
		var eff float64
		for b.Loop() {
			hs, _ := firstFit(vms, hosts)
			eff = Efficiency(hs, 200).Percent
		}
		b.ReportMetric(eff, "efficiency%")
	})
	b.Run("random", func(b *testing.B) {
		b.ReportAllocs()
		var eff float64
		r := rand.New(rand.NewPCG(3, 3))
		for b.Loop() {
			hs, _ := randomFit(r, vms, hosts)
			eff = Efficiency(hs, 200).Percent
		}
		b.ReportMetric(eff, "efficiency%")
	})
}

// runningRealistic scatters VMs over mixed hosts at random (a fragmented
// cluster, as after churn) and returns the running state.
func runningRealistic(seed uint64, nHosts, nVMs int) ([]Host, []VM) {
	rng := rand.New(rand.NewPCG(seed, 21))
	hosts := realisticHosts(rng, nHosts, true)
	vms := realisticVMs(rng, nVMs)
	hosts, _ = randomFit(rng, vms, hosts)
	var running []VM
	for i := range hosts {
		for _, id := range hosts[i].VMs {
			k := slices.IndexFunc(vms, func(v VM) bool { return v.ID == id })
			vm := vms[k]
			vm.CurrentHost = hosts[i].ID
			running = append(running, vm)
		}
	}
	return hosts, running
}

func TestRebalanceRealistic(t *testing.T) {
	hosts, vms := runningRealistic(1, 300, 900)
	cfg := DefaultConfig()
	cfg.Rebalance.MaxMoves = 1000
	p := mustPlacer(t, cfg)
	start := time.Now()
	plan, err := p.PlanRebalance(context.Background(), RebalanceRequest{Hosts: hosts, VMs: vms, Links: testLinks()})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d hosts, %d VMs: %d moves (%d hosts freed), hot spots %d -> %d, efficiency %.1f%% -> %.1f%%, benefit %.1f cost %.1f, in %v",
		len(hosts), len(vms), len(plan.Moves), len(plan.HostsFreed), plan.HotspotsBefore, plan.HotspotsAfter,
		plan.EfficiencyBefore.Percent, plan.EfficiencyAfter.Percent, plan.Benefit, plan.Cost, time.Since(start).Round(time.Millisecond))
	if plan.HotspotsAfter > plan.HotspotsBefore {
		t.Fatal("the plan made hot spots")
	}
	if len(plan.HostsFreed) == 0 || plan.EfficiencyAfter.Percent <= plan.EfficiencyBefore.Percent {
		t.Fatal("a fragmented cluster was not consolidated")
	}
	hostOf := map[string]int{}
	for i := range plan.Hosts {
		for _, id := range plan.Hosts[i].VMs {
			hostOf[id] = i
		}
	}
	checkHard(t, cfg, vms, hosts, plan.Hosts, hostOf, testLinks())
}

func BenchmarkPlanRebalance(b *testing.B) {
	hosts, vms := runningRealistic(1, 1000, 3000)
	cfg := DefaultConfig()
	cfg.Rebalance.MaxMoves = 1000
	p := mustPlacer(b, cfg)
	b.ReportAllocs()
	var plan Plan
	for b.Loop() {
		var err error
		plan, err = p.PlanRebalance(context.Background(), RebalanceRequest{Hosts: hosts, VMs: vms, Links: testLinks()})
		if err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(len(plan.Moves)), "moves")
	b.ReportMetric(float64(len(plan.HostsFreed)), "freed")
	b.ReportMetric(plan.EfficiencyAfter.Percent-plan.EfficiencyBefore.Percent, "efficiency-gain-points")
}
