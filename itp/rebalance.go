package itp

import (
	"cmp"
	"context"
	"fmt"
	"slices"
)

// Reasons a Move is proposed.
const (
	ReasonHotspot     = "hotspot"
	ReasonConsolidate = "consolidate"
)

// RebalanceRequest is the cluster as it runs now.
type RebalanceRequest struct {
	// Hosts with their current load; Used includes the VMs below.
	Hosts []Host
	// VMs are the movable VMs, each with CurrentHost set. Load on a host
	// that no VM here accounts for stays where it is, and a host running a
	// VM not listed here is never emptied.
	VMs []VM
	// Links forecasts the bandwidth between sites.
	Links Links
}

// Move is one proposed live migration.
type Move struct {
	VMID, From, To string
	Reason         string
	Prediction     Prediction
	// Cost is the move's predicted cost, Benefit its share of the gain it
	// enables, both in Host.CostPerHour currency over Config.Rebalance.Horizon.
	Cost, Benefit float64
}

// Plan is an ordered list of moves: each is valid (hard constraints, no
// host above the hot threshold) after the ones before it.
type Plan struct {
	Moves []Move
	// HostsFreed are hosts the plan empties.
	HostsFreed []string
	// Hotspots counts hosts above Config.Rebalance.HotThreshold.
	HotspotsBefore, HotspotsAfter int
	Benefit, Cost                 float64
	EfficiencyBefore              EfficiencyReport
	EfficiencyAfter               EfficiencyReport
	// Hosts is the host set after every move.
	Hosts []Host
}

type rebalancer struct {
	*batch
	rc      *RebalanceConfig
	hours   float64
	moved   []bool
	movable map[string]bool
	plan    Plan
}

// PlanRebalance proposes migrations that relieve hot spots and consolidate
// lightly loaded hosts, each only where its benefit beats its predicted
// cost (Config.Rebalance prices both):
//
//   - A hot spot's VMs are considered one at a time; the move with the best
//     benefit minus cost goes first, where the benefit is the cut in the
//     host's overload (peak utilisation above HotThreshold) priced at
//     HotspotCostPerHour, and the cost prices the predicted migration time
//     and downtime (scaled up by the VM's priority), plus a host's price if
//     the move has to power one on. It stops when the host is no longer
//     hot or no move pays.
//   - Hosts are then tried for emptying, least loaded first: all their VMs
//     must fit into other hosts in use, and the host's price over the
//     horizon must beat the sum of the moves' costs.
//
// Destinations pass every filter of Place, stay at or below HotThreshold
// and gain no soft-rule violations. No VM moves twice. The call adds the
// plan's moves to itp_rebalancing_events_total.
func (p *Placer) PlanRebalance(ctx context.Context, req RebalanceRequest) (Plan, error) {
	seen := map[string]bool{}
	for i := range req.VMs {
		vm := &req.VMs[i]
		if err := vm.Validate(); err != nil {
			return Plan{}, err
		}
		if seen[vm.ID] {
			return Plan{}, fmt.Errorf("itp: vm %q appears twice in the rebalance request", vm.ID)
		}
		seen[vm.ID] = true
	}
	if err := validateHosts(req.Hosts); err != nil {
		return Plan{}, err
	}
	if err := ctx.Err(); err != nil {
		return Plan{}, err
	}
	b := p.newBatch(req.VMs, req.Hosts, req.Links)
	for v := range req.VMs {
		vm := &req.VMs[v]
		h := b.st.hostIndex(vm.CurrentHost)
		if h < 0 {
			return Plan{}, fmt.Errorf("itp: vm %q CurrentHost %q is not among the hosts", vm.ID, vm.CurrentHost)
		}
		b.hostOf[v] = h
		if !slices.Contains(b.st.hosts[h].VMs, vm.ID) {
			b.st.hosts[h].VMs = append(b.st.hosts[h].VMs, vm.ID)
		}
		b.st.loc[vm.ID] = h
	}
	rb := &rebalancer{batch: b, rc: &p.cfg.Rebalance, hours: p.cfg.Rebalance.Horizon.Hours(), moved: make([]bool, len(req.VMs)), movable: seen}
	rb.plan.EfficiencyBefore = Efficiency(b.st.hosts, p.cfg.LPMaxHostTypes)
	rb.plan.HotspotsBefore = rb.hotspots()
	if rb.rc.RelieveHotspots {
		if err := rb.relieveHotspots(ctx); err != nil {
			return Plan{}, err
		}
	}
	if rb.rc.Consolidate {
		if err := rb.consolidate(ctx); err != nil {
			return Plan{}, err
		}
	}
	rb.plan.HotspotsAfter = rb.hotspots()
	rb.plan.Hosts = b.st.hosts
	rb.plan.EfficiencyAfter = Efficiency(b.st.hosts, p.cfg.LPMaxHostTypes)
	p.m.ITPRebalancingEvents.Add(float64(len(rb.plan.Moves)))
	return rb.plan, nil
}

func (rb *rebalancer) peak(h int) float64 {
	_, pk := utilization(rb.st.hosts[h].Used, rb.st.hosts[h].Capacity)
	return pk
}

func (rb *rebalancer) overload(h int) float64 { return max(0, rb.peak(h)-rb.rc.HotThreshold) }

func (rb *rebalancer) hotspots() int {
	n := 0
	for h := range rb.st.hosts {
		if rb.peak(h) > rb.rc.HotThreshold {
			n++
		}
	}
	return n
}

func (rb *rebalancer) hostCost(h int) float64 {
	if c := rb.st.hosts[h].CostPerHour; c > 0 {
		return c * rb.hours
	}
	return rb.rc.DefaultHostCostPerHour * rb.hours
}

func (rb *rebalancer) migrationCost(vm *VM, p Prediction) float64 {
	c := rb.rc.MigrationCostPerSecond*p.Total.Seconds() + rb.rc.DowntimeCostPerSecond*p.Downtime.Seconds()
	if vm.Priority > 0 {
		c *= 1 + rb.rc.PriorityCostFactor*float64(vm.Priority)
	}
	return c
}

type destination struct {
	host int
	pred Prediction
	cost float64 // migration cost plus a host's price if it is powered on
	fill float64
}

// bestDestination finds the cheapest host for VM v that passes every
// filter, stays at or below the hot threshold, is not the closed host and
// violates no more soft weight than the VM's current host.
func (rb *rebalancer) bestDestination(v int, allowEmpty bool) (destination, bool) {
	vm := &rb.vms[v]
	from := rb.hostOf[v]
	rb.st.prepare(&rb.cy, vm)
	_, nowViolated, _ := rb.cy.SoftViolations(from)
	best := destination{host: -1}
	for h := range rb.st.hosts {
		host := &rb.st.hosts[h]
		empty := host.empty()
		if h == rb.closed || h == from || (empty && !allowEmpty) {
			continue
		}
		if rb.cy.firstFailure(h) >= 0 {
			continue
		}
		mean, pk := utilization(host.Used.Add(vm.Request), host.Capacity)
		if pk > rb.rc.HotThreshold {
			continue
		}
		if rb.cy.softTotal > 0 {
			if _, w, _ := rb.cy.SoftViolations(h); w > nowViolated {
				continue
			}
		}
		d := destination{host: h, fill: mean}
		d.pred, _ = rb.cy.Prediction(h)
		d.cost = rb.migrationCost(vm, d.pred)
		if empty {
			d.cost += rb.hostCost(h)
		}
		if best.host < 0 || d.cost < best.cost || (d.cost == best.cost && d.fill > best.fill) {
			best = d
		}
	}
	return best, best.host >= 0
}

func (rb *rebalancer) apply(v int, d destination, reason string, benefit float64) {
	vm := &rb.vms[v]
	from := rb.hostOf[v]
	rb.st.unassign(vm, from)
	rb.st.assign(vm, d.host)
	rb.hostOf[v] = d.host
	rb.moved[v] = true
	rb.plan.Moves = append(rb.plan.Moves, Move{
		VMID: vm.ID, From: rb.st.hosts[from].ID, To: rb.st.hosts[d.host].ID, Reason: reason,
		Prediction: d.pred, Cost: d.cost, Benefit: benefit,
	})
	rb.plan.Cost += d.cost
	rb.plan.Benefit += benefit
}

func (rb *rebalancer) vmsOn(h int) []int {
	var out []int
	for v, at := range rb.hostOf {
		if at == h && !rb.moved[v] {
			out = append(out, v)
		}
	}
	return out
}

func (rb *rebalancer) relieveHotspots(ctx context.Context) error {
	var hot []int
	for h := range rb.st.hosts {
		if rb.peak(h) > rb.rc.HotThreshold {
			hot = append(hot, h)
		}
	}
	slices.SortStableFunc(hot, func(x, y int) int { return cmp.Compare(rb.peak(y), rb.peak(x)) })
	for _, h := range hot {
		for rb.peak(h) > rb.rc.HotThreshold && len(rb.plan.Moves) < rb.rc.MaxMoves {
			if err := ctx.Err(); err != nil {
				return err
			}
			before := rb.overload(h)
			bestV, bestNet, bestBenefit := -1, 0.0, 0.0
			var bestDest destination
			for _, v := range rb.vmsOn(h) {
				vm := &rb.vms[v]
				rb.st.hosts[h].Used = rb.st.hosts[h].Used.Sub(vm.Request)
				after := rb.overload(h)
				rb.st.hosts[h].Used = rb.st.hosts[h].Used.Add(vm.Request)
				benefit := rb.rc.HotspotCostPerHour * rb.hours * (before - after)
				if benefit <= 0 {
					continue
				}
				d, ok := rb.bestDestination(v, true)
				if !ok {
					continue
				}
				if net := benefit - d.cost; net > bestNet {
					bestV, bestNet, bestBenefit, bestDest = v, net, benefit, d
				}
			}
			if bestV < 0 {
				break
			}
			rb.apply(bestV, bestDest, ReasonHotspot, bestBenefit)
		}
	}
	return nil
}

func (rb *rebalancer) consolidate(ctx context.Context) error {
	var cands []int
	for h := range rb.st.hosts {
		host := &rb.st.hosts[h]
		if host.empty() || !rb.allMovable(h) {
			continue
		}
		cands = append(cands, h)
	}
	mean := func(h int) float64 {
		m, _ := utilization(rb.st.hosts[h].Used, rb.st.hosts[h].Capacity)
		return m
	}
	slices.SortStableFunc(cands, func(x, y int) int { return cmp.Compare(mean(x), mean(y)) })
	for _, h := range cands {
		if err := ctx.Err(); err != nil {
			return err
		}
		vms := rb.vmsOn(h)
		if len(vms) == 0 || !rb.allMovable(h) || len(rb.plan.Moves)+len(vms) > rb.rc.MaxMoves {
			continue
		}
		slices.SortStableFunc(vms, func(x, y int) int { return cmp.Compare(rb.size(&rb.vms[y]), rb.size(&rb.vms[x])) })
		benefit := rb.hostCost(h)
		rb.closed = h
		type tentative struct {
			v int
			d destination
		}
		var done []tentative
		cost := 0.0
		ok := true
		for _, v := range vms {
			d, found := rb.bestDestination(v, false)
			if !found || cost+d.cost >= benefit {
				ok = false
				break
			}
			cost += d.cost
			rb.st.unassign(&rb.vms[v], h)
			rb.st.assign(&rb.vms[v], d.host)
			rb.hostOf[v] = d.host
			done = append(done, tentative{v, d})
		}
		rb.closed = -1
		// Undo the tentative moves; the kept ones are re-applied by apply,
		// which records them.
		for k := len(done) - 1; k >= 0; k-- {
			t := done[k]
			rb.st.unassign(&rb.vms[t.v], t.d.host)
			rb.st.assign(&rb.vms[t.v], h)
			rb.hostOf[t.v] = h
		}
		if !ok || !rb.st.hosts[h].Used.Sub(sumRequests(rb.vms, vms)).IsZero() {
			continue
		}
		for _, t := range done {
			share := benefit / float64(len(done))
			if cost > 0 {
				share = benefit * t.d.cost / cost
			}
			rb.apply(t.v, t.d, ReasonConsolidate, share)
		}
		rb.plan.HostsFreed = append(rb.plan.HostsFreed, rb.st.hosts[h].ID)
	}
	return nil
}

func sumRequests(vms []VM, idx []int) Resources {
	var r Resources
	for _, v := range idx {
		r = r.Add(vms[v].Request)
	}
	return r
}

// allMovable reports whether every VM on host h is in the request and has
// not moved yet, so that the host can be emptied.
func (rb *rebalancer) allMovable(h int) bool {
	for _, id := range rb.st.hosts[h].VMs {
		if !rb.movable[id] {
			return false
		}
	}
	for v, at := range rb.hostOf {
		if at == h && rb.moved[v] {
			return false
		}
	}
	return true
}
