package itp

import (
	"math"

	"gonum.org/v1/gonum/mat"
	"gonum.org/v1/gonum/optimize/convex/lp"
)

// EfficiencyReport compares the hosts a placement uses with a lower bound on
// the hosts any placement of the same load needs.
type EfficiencyReport struct {
	// HostsUsed counts hosts running at least one VM or with any load.
	HostsUsed int
	// SimpleBound is max over CPU and memory of
	// ceil(total demand / largest per-host capacity): the classic bound,
	// exact in form for identical hosts.
	SimpleBound int
	// LPBound is the optimum of the LP relaxation (fractional hosts) over
	// heterogeneous host types: solved exactly up to maxTypes types, and
	// beyond that bounded from below through its dual (dualCoverBound).
	// 0 with a single host type, where it equals the simple bound.
	LPBound float64
	// LowerBound is the larger of SimpleBound and ceil(LPBound).
	LowerBound int
	// Percent is 100 * LowerBound / HostsUsed (100 when nothing is used).
	Percent float64
}

// Efficiency measures hosts as they are: 100 * lower bound / hosts used.
//
// The lower bound takes total CPU and memory demand (the sum of Used over
// all hosts). For identical hosts it is max over resources of
// ceil(demand / per-host capacity). Hosts of different sizes make "per-host
// capacity" ambiguous, so the bound also solves the LP relaxation
//
//	minimise sum_t y_t  subject to  sum_t cap_{t,r} y_t >= demand_r,  0 <= y_t <= count_t
//
// over host types t (distinct capacities) with gonum's simplex, and rounds
// its optimum up. The LP lets the cheapest mix of big and small hosts cover
// every resource at once, so it is never looser than the simple bound and
// is tighter when the resources' largest capacities sit on different
// hosts. Both ignore item granularity and anti-affinity, so the bound may
// be unreachable: Percent is a guaranteed-pessimistic score, never an
// over-estimate. Network is left out because hosts may not account it.
// maxTypes bounds the size of the LP given to gonum's dense simplex (about
// 4 ms at 32 types, 150 ms at 128); with more types the LP's value is
// bounded from below through its dual instead, which is still a valid
// lower bound.
func Efficiency(hosts []Host, maxTypes int) EfficiencyReport {
	var rep EfficiencyReport
	var demCPU, demMem float64
	var maxCPU, maxMem int64
	type hostType struct{ cpu, mem int64 }
	types := map[hostType]int{}
	for i := range hosts {
		h := &hosts[i]
		if !h.empty() {
			rep.HostsUsed++
		}
		demCPU += float64(max(0, h.Used.MilliCPU))
		demMem += float64(max(0, h.Used.MemoryBytes))
		maxCPU = max(maxCPU, h.Capacity.MilliCPU)
		maxMem = max(maxMem, h.Capacity.MemoryBytes)
		types[hostType{h.Capacity.MilliCPU, h.Capacity.MemoryBytes}]++
	}
	if rep.HostsUsed == 0 {
		rep.Percent = 100
		return rep
	}
	rep.SimpleBound = max(ceilRatio(demCPU, maxCPU), ceilRatio(demMem, maxMem), 1)
	rep.LowerBound = rep.SimpleBound
	if len(types) > 1 {
		capsCPU := make([]float64, 0, len(types))
		capsMem := make([]float64, 0, len(types))
		counts := make([]float64, 0, len(types))
		for t, n := range types {
			capsCPU = append(capsCPU, float64(t.cpu))
			capsMem = append(capsMem, float64(t.mem))
			counts = append(counts, float64(n))
		}
		caps, dem := [][]float64{capsCPU, capsMem}, []float64{demCPU, demMem}
		if len(types) <= maxTypes {
			if opt, _, ok := coverLP(caps, dem, counts); ok {
				rep.LPBound = opt
			}
		} else {
			rep.LPBound = dualCoverBound(caps, dem, counts)
		}
		rep.LowerBound = max(rep.LowerBound, int(math.Ceil(rep.LPBound-1e-6)))
	}
	rep.Percent = 100 * float64(rep.LowerBound) / float64(rep.HostsUsed)
	return rep
}

func ceilRatio(demand float64, capacity int64) int {
	if demand <= 0 {
		return 0
	}
	if capacity <= 0 {
		return math.MaxInt32
	}
	return int(math.Ceil(demand/float64(capacity) - 1e-9))
}

// coverLP solves min sum y s.t. caps[r]·y >= demand[r], 0 <= y <= counts,
// in the equality form gonum's Simplex takes: columns are y (T), one
// surplus per resource row (R) and one slack per upper bound (T). Resource
// rows are divided by their demand so that bytes and millicores share one
// numeric scale. It returns the optimum and the hosts of each type.
func coverLP(caps [][]float64, demand []float64, counts []float64) (float64, []float64, bool) {
	nt := len(counts)
	var rows [][]float64
	var b []float64
	for r := range caps {
		if demand[r] <= 0 {
			continue
		}
		row := make([]float64, 0, 2*nt+len(caps))
		for t := range nt {
			row = append(row, caps[r][t]/demand[r])
		}
		rows = append(rows, row)
		b = append(b, 1)
	}
	nr := len(rows)
	if nr == 0 {
		return 0, make([]float64, nt), true
	}
	ncol := 2*nt + nr
	a := mat.NewDense(nr+nt, ncol, nil)
	for r, row := range rows {
		for t, v := range row {
			a.Set(r, t, v)
		}
		a.Set(r, nt+r, -1)
	}
	for t := range nt {
		a.Set(nr+t, t, 1)
		a.Set(nr+t, nt+nr+t, 1)
		b = append(b, counts[t])
	}
	c := make([]float64, ncol)
	for t := range nt {
		c[t] = 1
	}
	for r, row := range rows {
		covered := 0.0
		for t, v := range row {
			covered += v * counts[t]
		}
		if covered < b[r] {
			return 0, nil, false // demand exceeds capacity: no bound from the LP
		}
	}
	opt, x, err := lp.Simplex(c, a, b, 1e-10, nil)
	if err != nil {
		return 0, nil, false
	}
	return opt, x[:nt], true
}

// Efficiency measures hosts with the Placer's Config.LPMaxHostTypes.
func (p *Placer) Efficiency(hosts []Host) EfficiencyReport {
	return Efficiency(hosts, p.cfg.LPMaxHostTypes)
}

// dualCoverBound bounds the covering LP from below for any number of host
// types. Its dual, after eliminating the upper-bound multipliers, is
//
//	max over u, v >= 0 of  u + v - sum_t n_t * max(0, a_t u + b_t v - 1)
//
// with a_t, b_t type t's capacity over the total CPU and memory demand:
// concave and piecewise linear in two variables. By weak duality every
// (u, v) gives a lower bound on the LP optimum, so the nested
// golden-section search below can only err on the safe side. The optimum
// lies in [0, max 1/a_t] x [0, max 1/b_t]: beyond, every term grows with
// u (or v) at least as fast as the objective once capacity covers demand.
func dualCoverBound(caps [][]float64, demand []float64, counts []float64) float64 {
	nt := len(counts)
	a := make([]float64, nt)
	b := make([]float64, nt)
	var umax, vmax, capA, capB float64
	for t := range nt {
		if demand[0] > 0 {
			a[t] = caps[0][t] / demand[0]
			capA += a[t] * counts[t]
			if a[t] > 0 {
				umax = max(umax, 1/a[t])
			}
		}
		if demand[1] > 0 {
			b[t] = caps[1][t] / demand[1]
			capB += b[t] * counts[t]
			if b[t] > 0 {
				vmax = max(vmax, 1/b[t])
			}
		}
	}
	if (demand[0] > 0 && capA < 1) || (demand[1] > 0 && capB < 1) {
		return 0 // demand exceeds capacity: no bound from here
	}
	f := func(u, v float64) float64 {
		s := u + v
		for t := range nt {
			if x := a[t]*u + b[t]*v - 1; x > 0 {
				s -= counts[t] * x
			}
		}
		return s
	}
	inner := func(u float64) float64 {
		return goldenMax(func(v float64) float64 { return f(u, v) }, 0, vmax)
	}
	return max(0, goldenMax(inner, 0, umax))
}

// goldenMax returns the largest value it evaluates of a concave g on
// [lo, hi] by golden-section search.
func goldenMax(g func(float64) float64, lo, hi float64) float64 {
	const invPhi = 0.6180339887498949
	best := math.Max(g(lo), g(hi))
	x1, x2 := hi-invPhi*(hi-lo), lo+invPhi*(hi-lo)
	g1, g2 := g(x1), g(x2)
	for range 40 {
		best = math.Max(best, math.Max(g1, g2))
		if g1 < g2 {
			lo, x1, g1 = x1, x2, g2
			x2 = lo + invPhi*(hi-lo)
			g2 = g(x2)
		} else {
			hi, x2, g2 = x2, x1, g1
			x1 = hi - invPhi*(hi-lo)
			g1 = g(x1)
		}
	}
	return math.Max(best, math.Max(g1, g2))
}
