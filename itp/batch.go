package itp

import (
	"cmp"
	"context"
	"fmt"
	"math"
	"slices"
	"strings"
)

// Assignment is one VM's host in a batch.
type Assignment struct {
	VMID      string
	HostID    string
	HostIndex int
}

// BatchResult is the outcome of PlaceBatch.
type BatchResult struct {
	// Assignments lists the placed VMs in the order they were given.
	Assignments []Assignment
	// Hosts is the host set with the batch applied (Used and VMs updated).
	Hosts []Host
	// Efficiency measures Hosts (see Efficiency).
	Efficiency EfficiencyReport
	// SoftViolations counts the soft rules the final placement violates.
	SoftViolations int
	// HostsFreedByLocalSearch counts hosts the improvement pass emptied
	// after best-fit decreasing.
	HostsFreedByLocalSearch int
	// ExactSearch reports the branch-and-bound pass on small batches:
	// "skipped", "optimal" (search finished: no placement uses fewer hosts
	// under the same constraints), or "budget" (stopped by its node budget,
	// its timeout or the context; the best placement found is kept).
	ExactSearch string
}

// batch is the working state of one PlaceBatch call.
type batch struct {
	p      *Placer
	st     *clusterState
	vms    []VM
	order  []int // VM indices in placement order
	hostOf []int // per VM, -1 while unplaced
	cy     Cycle
	// closed is a host the local search is trying to empty; nothing may
	// move onto it meanwhile.
	closed int
	// wasEmpty marks hosts empty before the batch: only they can be freed.
	wasEmpty []bool
	maxCPU   float64
	maxMem   float64
	// typeOf maps initially empty hosts to their capacity type; target is
	// the LP's count of hosts of each type, opened the batch's count.
	typeOf   []int
	target   []float64
	opened   []float64
	lpGuided bool
}

// PlaceBatch places many VMs at once onto hosts, minimising the hosts used
// while never violating a hard constraint, in three stages:
//
//  1. Best-fit decreasing: VMs by priority, then size (normalised CPU plus
//     memory), each onto the feasible host with the fewest soft violations,
//     preferring a host already in use (the fullest afterwards) over opening
//     an empty one. Which empty one: the LP relaxation of the batch's demand
//     (see Efficiency) says how many hosts of each capacity type an ideal
//     mix uses; a type still below that count is opened first, and among
//     those the host whose CPU:memory shape is closest to the VM's (with
//     one host type, or no LP, the largest host).
//  2. Local search: try to empty each lightly loaded host the batch opened
//     by moving its VMs into other open hosts (best fit, no new soft
//     violations); keep the move when all of them fit.
//  3. Branch and bound, for batches of at most Config.ExactSearchMaxVMs VMs
//     still above the lower bound: an exact search over host assignments
//     (symmetric empty hosts tried once) within Config.ExactSearchNodes
//     and Config.ExactSearchTimeout, keeping the best placement found.
//
// Rules hold both ways among the batch's VMs, the VMs running on the hosts
// and their Host.RunningRules. links serves VMs with a source, as in Place.
// A VM whose CurrentHost is among hosts leaves it in BatchResult.Hosts. VMs no host can take are reported
// in a *BatchError; the others are placed. The call sets
// itp_placement_efficiency_percent and adds the placement's soft
// violations to itp_constraint_violations_total.
func (p *Placer) PlaceBatch(ctx context.Context, vms []VM, hosts []Host, links Links) (BatchResult, error) {
	seen := make(map[string]bool, len(vms))
	for i := range vms {
		if err := vms[i].Validate(); err != nil {
			return BatchResult{}, err
		}
		if seen[vms[i].ID] {
			return BatchResult{}, fmt.Errorf("itp: vm %q appears twice in the batch", vms[i].ID)
		}
		seen[vms[i].ID] = true
	}
	if err := validateHosts(hosts); err != nil {
		return BatchResult{}, err
	}
	if err := ctx.Err(); err != nil {
		return BatchResult{}, err
	}
	b := p.newBatch(vms, hosts, links)
	var unplaced []*NoFitError
	for _, v := range b.order {
		if v&63 == 63 {
			if err := ctx.Err(); err != nil {
				return BatchResult{}, err
			}
		}
		if nf := b.placeOne(v); nf != nil {
			unplaced = append(unplaced, nf)
		}
	}
	res := BatchResult{ExactSearch: "skipped"}
	freed, err := b.localSearch(ctx)
	if err != nil {
		return BatchResult{}, err
	}
	res.HostsFreedByLocalSearch = freed
	if n := len(vms); n > 0 && n <= p.cfg.ExactSearchMaxVMs && len(unplaced) == 0 {
		if rep := Efficiency(b.st.hosts, p.cfg.LPMaxHostTypes); rep.HostsUsed > rep.LowerBound {
			res.ExactSearch = b.branchAndBound(ctx)
		} else {
			res.ExactSearch = "optimal"
		}
	}
	for i := range vms {
		if h := b.hostOf[i]; h >= 0 {
			res.Assignments = append(res.Assignments, Assignment{VMID: vms[i].ID, HostID: b.st.hosts[h].ID, HostIndex: h})
			res.SoftViolations += b.softViolations(i)
		}
	}
	// A migrating VM leaves its current host once placed elsewhere; until
	// now that host kept its load, so nothing was planned into space the
	// VM still occupies.
	for i := range vms {
		src := b.st.hostIndex(vms[i].CurrentHost)
		if h := b.hostOf[i]; h < 0 || src < 0 || src == h {
			continue
		}
		if k := slices.Index(b.st.hosts[src].VMs, vms[i].ID); k >= 0 {
			b.st.hosts[src].VMs = slices.Delete(b.st.hosts[src].VMs, k, k+1)
			b.st.hosts[src].Used = b.st.hosts[src].Used.Sub(vms[i].Request)
		}
	}
	res.Hosts = b.st.hosts
	res.Efficiency = Efficiency(res.Hosts, p.cfg.LPMaxHostTypes)
	p.m.ITPPlacementEfficiency.Set(res.Efficiency.Percent)
	if res.SoftViolations > 0 {
		p.m.ITPConstraintViolations.Add(float64(res.SoftViolations))
	}
	if len(unplaced) > 0 {
		return res, &BatchError{Unplaced: unplaced}
	}
	return res, nil
}

func (p *Placer) newBatch(vms []VM, hosts []Host, links Links) *batch {
	st := newClusterState(&p.cfg)
	st.reset(hosts, links, true, nil)
	st.indexRules(vms)
	b := &batch{p: p, st: st, vms: vms, hostOf: make([]int, len(vms)), closed: -1, wasEmpty: make([]bool, len(hosts))}
	for i := range hosts {
		b.wasEmpty[i] = hosts[i].empty()
		b.maxCPU = math.Max(b.maxCPU, float64(hosts[i].Capacity.MilliCPU))
		b.maxMem = math.Max(b.maxMem, float64(hosts[i].Capacity.MemoryBytes))
	}
	for i := range b.hostOf {
		b.hostOf[i] = -1
	}
	b.planHostTypes()
	b.order = make([]int, len(vms))
	for i := range b.order {
		b.order[i] = i
	}
	slices.SortStableFunc(b.order, func(x, y int) int {
		if c := cmp.Compare(vms[y].Priority, vms[x].Priority); c != 0 {
			return c
		}
		if c := cmp.Compare(b.size(&vms[y]), b.size(&vms[x])); c != 0 {
			return c
		}
		return strings.Compare(vms[x].ID, vms[y].ID)
	})
	return b
}

// planHostTypes solves the covering LP (see Efficiency) for the batch's
// demand over the initially empty hosts, grouped by capacity. With one
// type, or when the LP fails or is too large, opening falls back to the
// largest host.
func (b *batch) planHostTypes() {
	type key struct{ cpu, mem int64 }
	types := map[key]int{}
	b.typeOf = make([]int, len(b.st.hosts))
	var caps [2][]float64
	var counts []float64
	for h := range b.st.hosts {
		b.typeOf[h] = -1
		if !b.wasEmpty[h] {
			continue
		}
		k := key{b.st.hosts[h].Capacity.MilliCPU, b.st.hosts[h].Capacity.MemoryBytes}
		t, ok := types[k]
		if !ok {
			t = len(types)
			types[k] = t
			caps[0] = append(caps[0], float64(k.cpu))
			caps[1] = append(caps[1], float64(k.mem))
			counts = append(counts, 0)
		}
		counts[t]++
		b.typeOf[h] = t
	}
	b.target = make([]float64, len(counts))
	b.opened = make([]float64, len(counts))
	if len(counts) < 2 || len(counts) > b.p.cfg.LPMaxHostTypes {
		return
	}
	var dem [2]float64
	for i := range b.vms {
		dem[0] += float64(b.vms[i].Request.MilliCPU)
		dem[1] += float64(b.vms[i].Request.MemoryBytes)
	}
	if _, y, ok := coverLP(caps[:], dem[:], counts); ok {
		copy(b.target, y)
		b.lpGuided = true
	}
}

// size is the VM's demand normalised by the largest host, the "decreasing"
// key of best-fit decreasing.
func (b *batch) size(v *VM) float64 {
	return ratio(float64(v.Request.MilliCPU), b.maxCPU) + ratio(float64(v.Request.MemoryBytes), b.maxMem)
}

func ratio(a, c float64) float64 {
	if c <= 0 {
		return 0
	}
	return a / c
}

// candidate is how the batch ranks a feasible host for a VM.
type candidate struct {
	host     int
	violated float64 // soft rule weight the host violates (lower first)
	open     bool    // already in use (first)
	deficit  float64 // empty host: hosts its type still lacks of its LP count, at most 1 (higher first)
	key      float64 // fill after placing if open; shape match, or size without LP, if empty (higher first)
}

func (a candidate) better(o candidate) bool {
	if o.host < 0 {
		return true
	}
	if a.violated != o.violated {
		return a.violated < o.violated
	}
	if a.open != o.open {
		return a.open
	}
	if !a.open && a.deficit != o.deficit {
		return a.deficit > o.deficit
	}
	return a.key > o.key
}

// bestHost returns the best feasible host for VM v under the batch's
// ranking, the filter counts when there is none, and never the closed host.
func (b *batch) bestHost(v int, onlyOpen bool, counts []int) candidate {
	vm := &b.vms[v]
	b.st.prepare(&b.cy, vm)
	best := candidate{host: -1}
	for i := range b.st.hosts {
		if i == b.closed {
			continue
		}
		h := &b.st.hosts[i]
		open := !h.empty()
		if onlyOpen && !open {
			continue
		}
		if k := b.cy.firstFailure(i); k >= 0 {
			if counts != nil {
				counts[k]++
			}
			continue
		}
		c := candidate{host: i, open: open}
		if b.cy.softTotal > 0 {
			_, c.violated, _ = b.cy.SoftViolations(i)
		}
		if open {
			c.key, _ = utilization(h.Used.Add(vm.Request), h.Capacity)
		} else {
			if t := b.typeOf[i]; t >= 0 && b.lpGuided {
				// Open a type the LP mix still lacks, and among those
				// the one shaped most like the VM, so that memory-heavy
				// VMs land on memory-rich hosts.
				c.deficit = min(1, math.Ceil(b.target[t]-b.opened[t]-1e-9))
				c.key = cosine(h, vm, b.maxCPU, b.maxMem)
			} else {
				c.key = ratio(float64(h.Capacity.MilliCPU), b.maxCPU) + ratio(float64(h.Capacity.MemoryBytes), b.maxMem)
			}
		}
		if c.better(best) {
			best = c
		}
	}
	return best
}

func (b *batch) placeOne(v int) *NoFitError {
	counts := make([]int, numCoreFilters+len(b.p.cfg.ExtraFilters))
	c := b.bestHost(v, false, counts)
	if c.host < 0 {
		return b.cy.noFit(counts)
	}
	if !c.open && b.typeOf[c.host] >= 0 {
		b.opened[b.typeOf[c.host]]++
	}
	b.st.assign(&b.vms[v], c.host)
	b.hostOf[v] = c.host
	return nil
}

// softViolations counts the VM's own soft rules its host violates.
func (b *batch) softViolations(v int) int {
	b.st.prepare(&b.cy, &b.vms[v])
	n, _, _ := b.cy.SoftViolations(b.hostOf[v])
	return n
}

// localSearch repeatedly tries to empty the least-loaded hosts that the
// batch opened, moving their VMs into other open hosts. It returns the
// hosts freed.
func (b *batch) localSearch(ctx context.Context) (int, error) {
	byHost := make([][]int, len(b.st.hosts))
	for v, h := range b.hostOf {
		if h >= 0 {
			byHost[h] = append(byHost[h], v)
		}
	}
	freed := 0
	for pass := 0; pass < 3; pass++ {
		var targets []int
		for h := range b.st.hosts {
			if b.wasEmpty[h] && len(byHost[h]) > 0 {
				targets = append(targets, h)
			}
		}
		slices.SortStableFunc(targets, func(x, y int) int {
			ux, _ := utilization(b.st.hosts[x].Used, b.st.hosts[x].Capacity)
			uy, _ := utilization(b.st.hosts[y].Used, b.st.hosts[y].Capacity)
			return cmp.Compare(ux, uy)
		})
		improved := false
		for n, h := range targets {
			if n&15 == 15 {
				if err := ctx.Err(); err != nil {
					return freed, err
				}
			}
			if len(byHost[h]) == 0 || !b.tryEmpty(h, byHost) {
				continue
			}
			freed++
			improved = true
		}
		if !improved {
			break
		}
	}
	return freed, nil
}

// tryEmpty moves every VM of host h elsewhere or nothing at all.
func (b *batch) tryEmpty(h int, byHost [][]int) bool {
	moving := append([]int(nil), byHost[h]...)
	slices.SortStableFunc(moving, func(x, y int) int { return cmp.Compare(b.size(&b.vms[y]), b.size(&b.vms[x])) })
	before := make([]float64, len(moving))
	for k, v := range moving {
		b.st.prepare(&b.cy, &b.vms[v])
		_, before[k], _ = b.cy.SoftViolations(h)
	}
	for _, v := range moving {
		b.st.unassign(&b.vms[v], h)
	}
	b.closed = h
	dest := make([]int, 0, len(moving))
	ok := true
	for k, v := range moving {
		c := b.bestHost(v, true, nil)
		if c.host < 0 || c.violated > before[k] {
			ok = false
			break
		}
		b.st.assign(&b.vms[v], c.host)
		dest = append(dest, c.host)
	}
	b.closed = -1
	if !ok {
		for k, d := range dest {
			b.st.unassign(&b.vms[moving[k]], d)
		}
		for _, v := range moving {
			b.st.assign(&b.vms[v], h)
		}
		return false
	}
	byHost[h] = byHost[h][:0]
	for k, v := range moving {
		b.hostOf[v] = dest[k]
		byHost[dest[k]] = append(byHost[dest[k]], v)
	}
	return true
}

// cosine is the cosine similarity of the host's capacity and the VM's
// request, each normalised by the largest host: 1 when their CPU:memory
// shapes match.
func cosine(h *Host, vm *VM, maxCPU, maxMem float64) float64 {
	hc, hm := ratio(float64(h.Capacity.MilliCPU), maxCPU), ratio(float64(h.Capacity.MemoryBytes), maxMem)
	vc, vm2 := ratio(float64(vm.Request.MilliCPU), maxCPU), ratio(float64(vm.Request.MemoryBytes), maxMem)
	d := math.Sqrt((hc*hc + hm*hm) * (vc*vc + vm2*vm2))
	if d == 0 {
		return 0
	}
	return (hc*vc + hm*vm2) / d
}
