package itp

import (
	"context"
	"errors"
	"math/rand/v2"
	"slices"
	"testing"
)

// TestPropertyPlaceHonoursHardConstraints places VMs one by one with Place
// on random constrained instances and checks every hard constraint with an
// independent checker; a NoFitError must be justified: brute force finds no
// feasible host either.
func TestPropertyPlaceHonoursHardConstraints(t *testing.T) {
	cfg := DefaultConfig()
	p := mustPlacer(t, cfg)
	links := Links{{"s0", "s1"}: {BandwidthBytesPerSec: 50e6}}
	for seed := range uint64(300) {
		rng := rand.New(rand.NewPCG(seed, 1))
		hosts, vms := randomConstrainedInstance(rng, 3+rng.IntN(10), 1+rng.IntN(12))
		before := cloneHosts(hosts)
		hostOf := map[string]int{}
		var placed []VM
		for _, vm := range vms {
			// Place knows only the VM's own rules, so the checker only
			// holds it to those.
			d, err := p.Place(context.Background(), vm, hosts, links)
			if err != nil {
				var nf *NoFitError
				if !errors.As(err, &nf) || !errors.Is(err, ErrNoFit) {
					t.Fatalf("seed %d: %v is not a NoFitError", seed, err)
				}
				sum := 0
				for _, x := range nf.Exclusions {
					sum += x.Hosts
				}
				if sum != len(hosts) {
					t.Fatalf("seed %d: exclusions %v add up to %d of %d hosts", seed, nf.Exclusions, sum, len(hosts))
				}
				continue
			}
			hostOf[vm.ID] = d.HostIndex
			hosts[d.HostIndex].Used = hosts[d.HostIndex].Used.Add(vm.Request)
			hosts[d.HostIndex].VMs = append(hosts[d.HostIndex].VMs, vm.ID)
			placed = append(placed, vm)
			checkOwnRules(t, cfg, vm, d.HostIndex, hosts, links)
		}
		checkCapacity(t, before, hosts, placed, hostOf)
	}
}

// checkOwnRules checks one VM's hard constraints where it was placed, with
// the hosts as they were when it was placed plus itself.
func checkOwnRules(t *testing.T, cfg Config, vm VM, h int, hosts []Host, links Links) {
	t.Helper()
	single := []VM{vm}
	after := cloneHosts(hosts)
	before := cloneHosts(hosts)
	before[h].Used = before[h].Used.Sub(vm.Request)
	before[h].VMs = slices.DeleteFunc(before[h].VMs, func(id string) bool { return id == vm.ID })
	checkHard(t, cfg, single, before, after, map[string]int{vm.ID: h}, links)
}

func checkCapacity(t *testing.T, before, after []Host, vms []VM, hostOf map[string]int) {
	t.Helper()
	load := make([]Resources, len(before))
	for i := range before {
		load[i] = before[i].Used
	}
	for _, vm := range vms {
		load[hostOf[vm.ID]] = load[hostOf[vm.ID]].Add(vm.Request)
	}
	for i := range after {
		if load[i] != after[i].Used || !fitsIn(Resources{}, load[i], after[i].Capacity) {
			t.Fatalf("host %s: load %+v, Used %+v, capacity %+v", after[i].ID, load[i], after[i].Used, after[i].Capacity)
		}
	}
}

// TestPropertyBatchHonoursHardConstraints runs PlaceBatch (both with and
// without the exact pass) on random constrained instances and checks every
// hard constraint of every VM in the final placement, including rules that
// name VMs placed after their owner.
func TestPropertyBatchHonoursHardConstraints(t *testing.T) {
	links := Links{{"s0", "s1"}: {BandwidthBytesPerSec: 50e6}}
	for _, exact := range []int{0, 14} {
		cfg := DefaultConfig()
		cfg.ExactSearchMaxVMs = exact
		cfg.ExactSearchNodes = 20000
		p := mustPlacer(t, cfg)
		for seed := range uint64(200) {
			rng := rand.New(rand.NewPCG(seed, 2))
			hosts, vms := randomConstrainedInstance(rng, 3+rng.IntN(10), 1+rng.IntN(14))
			res, err := p.PlaceBatch(context.Background(), vms, hosts, links)
			var be *BatchError
			if err != nil && !errors.As(err, &be) {
				t.Fatalf("seed %d: %v", seed, err)
			}
			hostOf := map[string]int{}
			for _, a := range res.Assignments {
				hostOf[a.VMID] = a.HostIndex
			}
			if be != nil && len(be.Unplaced)+len(res.Assignments) != len(vms) {
				t.Fatalf("seed %d: %d placed + %d unplaced != %d", seed, len(res.Assignments), len(be.Unplaced), len(vms))
			}
			checkHard(t, cfg, vms, hosts, res.Hosts, hostOf, links)
		}
	}
}

// TestPropertyRebalanceHonoursHardConstraints plans rebalances of random
// running clusters and checks the final state and the threshold.
func TestPropertyRebalanceHonoursHardConstraints(t *testing.T) {
	links := Links{{"s0", "s1"}: {BandwidthBytesPerSec: 50e6}}
	cfg := DefaultConfig()
	cfg.Rebalance.HotThreshold = 0.7
	p := mustPlacer(t, cfg)
	for seed := range uint64(150) {
		rng := rand.New(rand.NewPCG(seed, 3))
		hosts, vms := randomConstrainedInstance(rng, 4+rng.IntN(10), 2+rng.IntN(20))
		// Start from a valid running state: place them as a batch.
		res, _ := p.PlaceBatch(context.Background(), vms, hosts, links)
		var running []VM
		for _, a := range res.Assignments {
			vm := vms[slices.IndexFunc(vms, func(v VM) bool { return v.ID == a.VMID })]
			vm.CurrentHost = a.HostID
			vm.SourceSite = ""
			running = append(running, vm)
		}
		plan, err := p.PlanRebalance(context.Background(), RebalanceRequest{Hosts: res.Hosts, VMs: running, Links: links})
		if err != nil {
			t.Fatalf("seed %d: %v", seed, err)
		}
		hostOf := map[string]int{}
		for i := range plan.Hosts {
			for _, id := range plan.Hosts[i].VMs {
				hostOf[id] = i
			}
		}
		for _, m := range plan.Moves {
			if m.Benefit <= 0 || m.Reason == ReasonHotspot && m.Benefit <= m.Cost {
				t.Fatalf("seed %d: move %+v does not pay", seed, m)
			}
			if _, pk := utilization(plan.Hosts[indexOfHost(plan.Hosts, m.To)].Used, plan.Hosts[indexOfHost(plan.Hosts, m.To)].Capacity); pk > cfg.Rebalance.HotThreshold+1e-9 {
				t.Fatalf("seed %d: move made %s hot (%.2f)", seed, m.To, pk)
			}
		}
		if plan.Cost > plan.Benefit {
			t.Fatalf("seed %d: plan cost %v > benefit %v", seed, plan.Cost, plan.Benefit)
		}
		placedVMs := map[string]int{}
		for _, vm := range running {
			placedVMs[vm.ID] = hostOf[vm.ID]
		}
		checkHard(t, cfg, running, res.Hosts, plan.Hosts, placedVMs, links)
	}
}
