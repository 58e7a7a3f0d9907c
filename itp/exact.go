package itp

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"
)

// maxExactCandidates bounds the hosts the branch and bound branches on.
const maxExactCandidates = 256

// exactSearch is the state of one branch-and-bound run.
type exactSearch struct {
	b        *batch
	ctx      context.Context
	cands    []int // hosts to branch on
	class    []int // per host, symmetry class of an initially empty host (-1 otherwise)
	rem      [][2]float64
	maxEmpty [2]float64

	used     int
	openFree [2]float64

	bestUsed   int
	bestViol   float64
	bestHostOf []int

	nodes, budget int
	deadline      time.Time
	aborted       bool
	levels        [][]int
}

// branchAndBound searches host assignments of the whole (small) batch for
// one that uses fewer hosts, or as many with less soft-rule weight
// violated, than the heuristic's. Each VM is tried on every feasible host,
// except that of several still-empty hosts that are indistinguishable
// (same capacity, zone, region, site, labels, cost, reliability) only the
// first is tried. A branch is cut when the hosts in use plus
// max over CPU and memory of ceil((remaining demand - free space in the
// hosts in use) / largest empty host) cannot beat the best.
func (b *batch) branchAndBound(ctx context.Context) string {
	s := &exactSearch{b: b, ctx: ctx, budget: b.p.cfg.ExactSearchNodes, class: make([]int, len(b.st.hosts)),
		deadline: time.Now().Add(b.p.cfg.ExactSearchTimeout)}
	classes := map[string]int{}
	perClass := map[int]int{}
	for h := range b.st.hosts {
		s.class[h] = -1
		if !b.wasEmpty[h] {
			s.cands = append(s.cands, h)
			continue
		}
		key := classKey(&b.st.hosts[h])
		c, ok := classes[key]
		if !ok {
			c = len(classes)
			classes[key] = c
		}
		s.class[h] = c
		// A batch of n VMs opens at most n hosts of one class.
		if perClass[c] < len(b.vms) {
			perClass[c]++
			s.cands = append(s.cands, h)
			s.maxEmpty[0] = max(s.maxEmpty[0], float64(b.st.hosts[h].Capacity.MilliCPU))
			s.maxEmpty[1] = max(s.maxEmpty[1], float64(b.st.hosts[h].Capacity.MemoryBytes))
		}
	}
	if len(s.cands) > maxExactCandidates {
		return "skipped"
	}
	// The heuristic's solution is the incumbent.
	s.bestHostOf = slices.Clone(b.hostOf)
	s.bestUsed = b.hostsUsed()
	s.bestViol = b.totalViolated()
	for _, v := range b.order {
		b.st.unassign(&b.vms[v], b.hostOf[v])
		b.hostOf[v] = -1
	}
	s.used = b.hostsUsed()
	for _, h := range s.cands {
		if !b.st.hosts[h].empty() {
			free := b.st.hosts[h].Capacity.Sub(b.st.hosts[h].Used)
			s.openFree[0] += float64(free.MilliCPU)
			s.openFree[1] += float64(free.MemoryBytes)
		}
	}
	n := len(b.order)
	s.rem = make([][2]float64, n+1)
	for k := n - 1; k >= 0; k-- {
		r := b.vms[b.order[k]].Request
		s.rem[k] = [2]float64{s.rem[k+1][0] + float64(r.MilliCPU), s.rem[k+1][1] + float64(r.MemoryBytes)}
	}
	s.levels = make([][]int, n)
	s.dfs(0)
	for _, v := range b.order {
		b.hostOf[v] = s.bestHostOf[v]
		b.st.assign(&b.vms[v], b.hostOf[v])
	}
	if s.aborted {
		return "budget"
	}
	return "optimal"
}

func classKey(h *Host) string {
	var sb strings.Builder
	fmt.Fprintf(&sb, "%d/%d/%d|%q|%q|%q|%g|%g|%t|", h.Capacity.MilliCPU, h.Capacity.MemoryBytes, h.Capacity.NetworkBitsPerSec,
		h.Zone, h.Region, h.Site, h.CostPerHour, h.Reliability, h.Cordoned)
	for _, k := range slices.Sorted(maps.Keys(h.Labels)) {
		fmt.Fprintf(&sb, "%q=%q,", k, h.Labels[k])
	}
	return sb.String()
}

func (b *batch) hostsUsed() int {
	n := 0
	for h := range b.st.hosts {
		if !b.st.hosts[h].empty() {
			n++
		}
	}
	return n
}

// totalViolated sums the soft-rule weight every placed VM violates.
func (b *batch) totalViolated() float64 {
	t := 0.0
	for v, h := range b.hostOf {
		if h < 0 {
			continue
		}
		b.st.prepare(&b.cy, &b.vms[v])
		_, w, _ := b.cy.SoftViolations(h)
		t += w
	}
	return t
}

func (s *exactSearch) bound(k int) int {
	extra := 0
	for r := range 2 {
		if need := s.rem[k][r] - s.openFree[r]; need > 0 {
			if s.maxEmpty[r] <= 0 {
				return 1 << 30
			}
			extra = max(extra, int((need+s.maxEmpty[r]-1)/s.maxEmpty[r]))
		}
	}
	return s.used + extra
}

func (s *exactSearch) dfs(k int) {
	b := s.b
	s.nodes++
	if s.nodes > s.budget || s.aborted {
		s.aborted = true
		return
	}
	if s.nodes&255 == 0 && (s.ctx.Err() != nil || time.Now().After(s.deadline)) {
		s.aborted = true
		return
	}
	if lb := s.bound(k); lb > s.bestUsed || (lb == s.bestUsed && s.bestViol == 0) {
		return
	}
	if k == len(b.order) {
		if viol := b.totalViolated(); s.used < s.bestUsed || viol < s.bestViol {
			s.bestUsed, s.bestViol = s.used, viol
			copy(s.bestHostOf, b.hostOf)
		}
		return
	}
	v := b.order[k]
	vm := &b.vms[v]
	// Collect the feasible hosts before recursing: deeper levels reuse
	// the cycle.
	b.st.prepare(&b.cy, vm)
	type option struct {
		host int
		open bool
		key  float64
	}
	var opts []option
	var triedClass []int
	for _, h := range s.cands {
		host := &b.st.hosts[h]
		open := !host.empty()
		if !open {
			if slices.Contains(triedClass, s.class[h]) {
				continue
			}
		}
		if b.cy.firstFailure(h) >= 0 {
			continue
		}
		o := option{host: h, open: open}
		if open {
			o.key, _ = utilization(host.Used.Add(vm.Request), host.Capacity)
		} else {
			triedClass = append(triedClass, s.class[h])
			o.key = ratio(float64(host.Capacity.MilliCPU), b.maxCPU) + ratio(float64(host.Capacity.MemoryBytes), b.maxMem)
		}
		opts = append(opts, o)
	}
	slices.SortStableFunc(opts, func(x, y option) int {
		if x.open != y.open {
			if x.open {
				return -1
			}
			return 1
		}
		return cmp.Compare(y.key, x.key)
	})
	order := s.levels[k][:0]
	for _, o := range opts {
		order = append(order, o.host)
	}
	s.levels[k] = order
	for _, h := range order {
		host := &b.st.hosts[h]
		opened := host.empty()
		if opened {
			s.used++
			s.openFree[0] += float64(host.Capacity.MilliCPU)
			s.openFree[1] += float64(host.Capacity.MemoryBytes)
		}
		b.st.assign(vm, h)
		b.hostOf[v] = h
		s.openFree[0] -= float64(vm.Request.MilliCPU)
		s.openFree[1] -= float64(vm.Request.MemoryBytes)
		s.dfs(k + 1)
		s.openFree[0] += float64(vm.Request.MilliCPU)
		s.openFree[1] += float64(vm.Request.MemoryBytes)
		b.st.unassign(vm, h)
		b.hostOf[v] = -1
		if opened {
			s.used--
			s.openFree[0] -= float64(host.Capacity.MilliCPU)
			s.openFree[1] -= float64(host.Capacity.MemoryBytes)
		}
		if s.aborted {
			return
		}
	}
}
