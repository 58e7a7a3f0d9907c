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
	// heterogeneous host types; 0 when it was not solved.
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
// maxTypes bounds the LP size (0 skips the LP).
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
		if len(types) <= maxTypes {
			types[hostType{h.Capacity.MilliCPU, h.Capacity.MemoryBytes}]++
		}
	}
	if rep.HostsUsed == 0 {
		rep.Percent = 100
		return rep
	}
	rep.SimpleBound = max(ceilRatio(demCPU, maxCPU), ceilRatio(demMem, maxMem), 1)
	rep.LowerBound = rep.SimpleBound
	if maxTypes > 0 && len(types) <= maxTypes && len(types) > 1 {
		capsCPU := make([]float64, 0, len(types))
		capsMem := make([]float64, 0, len(types))
		counts := make([]float64, 0, len(types))
		for t, n := range types {
			capsCPU = append(capsCPU, float64(t.cpu))
			capsMem = append(capsMem, float64(t.mem))
			counts = append(counts, float64(n))
		}
		if opt, _, ok := coverLP([][]float64{capsCPU, capsMem}, []float64{demCPU, demMem}, counts); ok {
			rep.LPBound = opt
			rep.LowerBound = max(rep.LowerBound, int(math.Ceil(opt-1e-6)))
		}
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
	opt, x, err := lp.Simplex(c, a, b, 1e-10, nil)
	if err != nil {
		return 0, nil, false
	}
	return opt, x[:nt], true
}
