package itp

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

const gib = int64(1) << 30

// shape is a cloud instance size.
type shape struct {
	vcpu, gibPerVCPU int64
}

// realisticVMs draws n VMs from common cloud sizes: 2/4/8/16/32 vCPU
// (weights 30/30/20/15/5) in general-purpose (4 GiB/vCPU, 70%),
// memory-optimised (8 GiB/vCPU, 20%) and compute-optimised (2 GiB/vCPU,
// 10%) families, with dirty rates of 1-200 MB/s.
func realisticVMs(rng *rand.Rand, n int) []VM {
	sizes := []int64{2, 4, 8, 16, 32}
	weights := []int{30, 30, 20, 15, 5}
	vms := make([]VM, n)
	for i := range vms {
		x := rng.IntN(100)
		k := 0
		for ; x >= weights[k]; k++ {
			x -= weights[k]
		}
		per := int64(4)
		switch f := rng.IntN(10); {
		case f < 2:
			per = 8
		case f < 3:
			per = 2
		}
		vms[i] = VM{
			ID:                   fmt.Sprintf("vm-%d", i),
			Request:              Resources{MilliCPU: sizes[k] * 1000, MemoryBytes: sizes[k] * per * gib},
			DirtyRateBytesPerSec: float64(1+rng.IntN(200)) * 1e6,
		}
	}
	return vms
}

// realisticHosts makes n empty hosts in three zones and two sites. With
// mixed set, 60% are 64 vCPU/256 GiB, 30% 96 vCPU/384 GiB and 10%
// 64 vCPU/512 GiB (memory-optimised); otherwise all are 64 vCPU/256 GiB.
func realisticHosts(rng *rand.Rand, n int, mixed bool) []Host {
	hosts := make([]Host, n)
	for i := range hosts {
		c := Resources{MilliCPU: 64000, MemoryBytes: 256 * gib, NetworkBitsPerSec: 25e9}
		cost := 2.0
		if mixed {
			switch x := rng.IntN(10); {
			case x < 3:
				c = Resources{MilliCPU: 96000, MemoryBytes: 384 * gib, NetworkBitsPerSec: 25e9}
				cost = 3
			case x < 4:
				c = Resources{MilliCPU: 64000, MemoryBytes: 512 * gib, NetworkBitsPerSec: 25e9}
				cost = 3.5
			}
		}
		hosts[i] = Host{
			ID:          fmt.Sprintf("h-%d", i),
			Site:        fmt.Sprintf("site-%d", i%2),
			Zone:        fmt.Sprintf("zone-%d", i%3),
			Region:      "eu",
			Capacity:    c,
			CostPerHour: cost,
			Reliability: 0.99 + float64(rng.IntN(10))/1000,
			Labels:      map[string]string{"rack": fmt.Sprintf("r%d", i%20)},
		}
	}
	return hosts
}

// loadHosts fills hosts to a random 0-70% with anonymous VMs.
func loadHosts(rng *rand.Rand, hosts []Host) {
	for i := range hosts {
		f := rng.Float64() * 0.7
		h := &hosts[i]
		h.Used = Resources{MilliCPU: int64(f * float64(h.Capacity.MilliCPU)), MemoryBytes: int64(f * float64(h.Capacity.MemoryBytes))}
		for k := range rng.IntN(8) {
			h.VMs = append(h.VMs, fmt.Sprintf("old-%d-%d", i, k))
		}
	}
}

func testLinks() Links {
	return Links{
		{"site-0", "site-1"}: {BandwidthBytesPerSec: 125e6, RTT: 30 * time.Millisecond},
	}
}

// firstFit is the baseline: each VM in arrival order onto the first host
// with room (resources only; the realistic instances have no rules).
func firstFit(vms []VM, hosts []Host) ([]Host, int) {
	hs := cloneHosts(hosts)
	placed := 0
	for i := range vms {
		for h := range hs {
			if fitsIn(hs[h].Used, vms[i].Request, hs[h].Capacity) {
				hs[h].Used = hs[h].Used.Add(vms[i].Request)
				hs[h].VMs = append(hs[h].VMs, vms[i].ID)
				placed++
				break
			}
		}
	}
	return hs, placed
}

// randomFit is the other baseline: each VM onto a uniformly random host
// with room.
func randomFit(rng *rand.Rand, vms []VM, hosts []Host) ([]Host, int) {
	hs := cloneHosts(hosts)
	placed := 0
	var fit []int
	for i := range vms {
		fit = fit[:0]
		for h := range hs {
			if fitsIn(hs[h].Used, vms[i].Request, hs[h].Capacity) {
				fit = append(fit, h)
			}
		}
		if len(fit) == 0 {
			continue
		}
		h := fit[rng.IntN(len(fit))]
		hs[h].Used = hs[h].Used.Add(vms[i].Request)
		hs[h].VMs = append(hs[h].VMs, vms[i].ID)
		placed++
	}
	return hs, placed
}

func cloneHosts(hosts []Host) []Host {
	hs := slices.Clone(hosts)
	for i := range hs {
		hs[i].VMs = slices.Clone(hs[i].VMs)
	}
	return hs
}

// checkHard is an independent checker of every hard constraint of vms in
// a final placement where: hostOf maps VM IDs to host indices (a missing
// VM is unplaced); before is the host set before the placement; after the
// one after. VMs in vms must be the only change between the two.
func checkHard(t testing.TB, cfg Config, vms []VM, before, after []Host, hostOf map[string]int, links Links) {
	t.Helper()
	// Capacity: recompute the load independently.
	load := make([]Resources, len(before))
	for i := range before {
		load[i] = before[i].Used
	}
	loc := map[string]int{}
	for i := range after {
		for _, id := range after[i].VMs {
			loc[id] = i
		}
	}
	for i := range vms {
		vm := &vms[i]
		if h, ok := hostOf[vm.ID]; ok {
			if loc[vm.ID] != h {
				t.Fatalf("vm %s: hostOf says %d, host lists say %d", vm.ID, h, loc[vm.ID])
			}
			if from := indexOfHost(before, vm.CurrentHost); from >= 0 {
				load[from] = load[from].Sub(vm.Request)
			}
			load[h] = load[h].Add(vm.Request)
		} else {
			delete(loc, vm.ID)
		}
	}
	for i := range after {
		if load[i] != after[i].Used {
			t.Fatalf("host %s: Used %+v, recomputed %+v", after[i].ID, after[i].Used, load[i])
		}
		if !fitsIn(Resources{}, load[i], after[i].Capacity) && load[i] != before[i].Used {
			t.Fatalf("host %s over capacity: %+v > %+v", after[i].ID, load[i], after[i].Capacity)
		}
	}
	for i := range vms {
		vm := &vms[i]
		h, ok := hostOf[vm.ID]
		if !ok {
			continue
		}
		host := &after[h]
		moved := vm.CurrentHost != host.ID
		if moved && (host.Cordoned || host.ID == vm.CurrentHost) {
			t.Fatalf("vm %s on cordoned or current host %s", vm.ID, host.ID)
		}
		if len(vm.AllowedZones) > 0 && !slices.Contains(vm.AllowedZones, host.Zone) {
			t.Fatalf("vm %s in zone %s, allowed %v", vm.ID, host.Zone, vm.AllowedZones)
		}
		if vm.MinReliability > 0 && host.Reliability < vm.MinReliability {
			t.Fatalf("vm %s on host of reliability %v < %v", vm.ID, host.Reliability, vm.MinReliability)
		}
		for _, r := range vm.Rules {
			if !r.Hard {
				continue
			}
			if !ruleHoldsFinal(&r, vm.ID, h, after, loc) {
				t.Fatalf("vm %s on %s violates hard rule %+v", vm.ID, host.ID, r)
			}
		}
		for hi := range after {
			for _, rr := range after[hi].RunningRules {
				if rr.Rule.Hard && slices.Contains(rr.Rule.VMs, vm.ID) && !ruleHoldsFinal(&rr.Rule, rr.VMID, loc[rr.VMID], after, loc) {
					t.Fatalf("vm %s on %s violates running vm %s's hard rule %+v", vm.ID, host.ID, rr.VMID, rr.Rule)
				}
			}
		}
		src := vm.SourceSite
		if from := indexOfHost(before, vm.CurrentHost); from >= 0 {
			src = before[from].Site
		}
		if moved && (src != "" || indexOfHost(before, vm.CurrentHost) >= 0) {
			link, ok := links.lookup(src, host.Site, cfg.LocalLink)
			if !ok || link.BandwidthBytesPerSec <= 0 {
				t.Fatalf("vm %s moved over a missing link %s->%s", vm.ID, src, host.Site)
			}
			limit := vm.MaxDowntime
			if limit == 0 {
				limit = cfg.MaxDowntime
			}
			if p := PredictMigration(vm.size(), vm.DirtyRateBytesPerSec, link, cfg.Precopy); limit > 0 && p.Downtime > limit {
				t.Fatalf("vm %s predicted downtime %v > %v", vm.ID, p.Downtime, limit)
			}
		}
	}
}

func ruleHoldsFinal(r *Rule, self string, h int, hosts []Host, loc map[string]int) bool {
	host := &hosts[h]
	var match bool
	switch {
	case len(r.VMs) > 0:
		anyPlaced := false
		for _, id := range r.VMs {
			at, ok := loc[id]
			if id == self || !ok {
				continue
			}
			anyPlaced = true
			if at == h || (r.Scope == ScopeZone && hosts[at].Zone == host.Zone) {
				match = true
			}
		}
		if !anyPlaced {
			return true
		}
	case r.LabelKey != "":
		v, ok := host.Labels[r.LabelKey]
		match = ok && (r.LabelValue == "" || v == r.LabelValue)
	default:
		match = slices.Contains(r.Zones, host.Zone)
	}
	return match == (r.Kind == Affinity)
}

func indexOfHost(hosts []Host, id string) int {
	if id == "" {
		return -1
	}
	return slices.IndexFunc(hosts, func(h Host) bool { return h.ID == id })
}

// randomConstrainedInstance makes a small random instance with every kind
// of rule, hard and soft.
func randomConstrainedInstance(rng *rand.Rand, nHosts, nVMs int) ([]Host, []VM) {
	hosts := make([]Host, nHosts)
	zones := []string{"a", "b", "c"}
	for i := range hosts {
		hosts[i] = Host{
			ID:          fmt.Sprintf("h%d", i),
			Site:        fmt.Sprintf("s%d", rng.IntN(2)),
			Zone:        zones[rng.IntN(len(zones))],
			Capacity:    Resources{MilliCPU: int64(8+rng.IntN(3)*8) * 1000, MemoryBytes: int64(16+rng.IntN(3)*16) * gib},
			Reliability: 0.9 + rng.Float64()/10,
			Cordoned:    rng.IntN(15) == 0,
			Labels:      map[string]string{},
		}
		if rng.IntN(2) == 0 {
			hosts[i].Labels["ssd"] = "true"
		}
		if rng.IntN(3) == 0 {
			hosts[i].Used = Resources{MilliCPU: 2000, MemoryBytes: 4 * gib}
			hosts[i].VMs = []string{fmt.Sprintf("old%d", i)}
		}
	}
	// Some running VMs have rules about the new ones.
	for i := range hosts {
		if len(hosts[i].VMs) == 0 || rng.IntN(2) == 0 {
			continue
		}
		r := Rule{Kind: RuleKind(1 + rng.IntN(2)), Hard: rng.IntN(3) > 0, Scope: Scope(rng.IntN(2))}
		for range 1 + rng.IntN(2) {
			r.VMs = append(r.VMs, fmt.Sprintf("v%d", rng.IntN(nVMs)))
		}
		hosts[i].RunningRules = []RunningRule{{VMID: hosts[i].VMs[0], Rule: r}}
	}
	vms := make([]VM, nVMs)
	for i := range vms {
		vms[i] = VM{
			ID:                   fmt.Sprintf("v%d", i),
			Request:              Resources{MilliCPU: int64(1+rng.IntN(8)) * 1000, MemoryBytes: int64(1+rng.IntN(16)) * gib},
			DirtyRateBytesPerSec: float64(rng.IntN(300)) * 1e6,
			Priority:             rng.IntN(3),
		}
		vm := &vms[i]
		if rng.IntN(4) == 0 {
			vm.AllowedZones = []string{zones[rng.IntN(3)], zones[rng.IntN(3)]}
		}
		if rng.IntN(6) == 0 {
			vm.MinReliability = 0.95
		}
		if rng.IntN(5) == 0 {
			vm.SourceSite = fmt.Sprintf("s%d", rng.IntN(3)) // s2 has no links
			vm.MaxDowntime = time.Duration(100+rng.IntN(900)) * time.Millisecond
		}
		for range rng.IntN(3) {
			r := Rule{Kind: RuleKind(1 + rng.IntN(2)), Hard: rng.IntN(2) == 0, Weight: float64(rng.IntN(3))}
			switch rng.IntN(4) {
			case 0, 1:
				for range 1 + rng.IntN(3) {
					if rng.IntN(5) == 0 {
						r.VMs = append(r.VMs, fmt.Sprintf("old%d", rng.IntN(nHosts)))
					} else {
						r.VMs = append(r.VMs, fmt.Sprintf("v%d", rng.IntN(nVMs)))
					}
				}
				r.Scope = Scope(rng.IntN(2))
			case 2:
				r.LabelKey = "ssd"
				if rng.IntN(2) == 0 {
					r.LabelValue = "true"
				}
			default:
				r.Zones = []string{zones[rng.IntN(3)]}
			}
			vm.Rules = append(vm.Rules, r)
		}
	}
	return hosts, vms
}

func mustPlacer(t testing.TB, cfg Config) *Placer {
	t.Helper()
	p, err := NewPlacer(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	return p
}
