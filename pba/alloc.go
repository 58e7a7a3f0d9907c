package pba

import (
	"fmt"
	"math"
	"sort"

	"github.com/dwcp/dwcp/metrics"
)

// Request is one migration's claim on the link.
type Request struct {
	ID string
	// Weight is the migration's priority: shares are proportional to it
	// (must be > 0).
	Weight float64
	// Demand is the most it can use, in bytes/s; 0 means no limit.
	Demand float64
}

// Grant is the rate given to one request, in bytes/s.
type Grant struct {
	ID   string
	Rate float64
}

// Allocation is the outcome of Allocate. Grants are in request order.
type Allocation struct {
	Grants    []Grant
	Capacity  float64 // bytes/s that were divided
	Allocated float64 // sum of the grants
	// Utilization is 100 * Allocated / Capacity (0 with no capacity): below
	// 100 only when every migration got its whole demand.
	Utilization float64
}

// Allocate divides capacity (bytes/s, typically a forecast of the link)
// among the requests by weighted max-min fairness: a request never gets
// more than its demand, and capacity one request cannot use is shared among
// the others in proportion to their weights (progressive filling).
func Allocate(capacity float64, reqs []Request) (Allocation, error) {
	if !(capacity >= 0) || math.IsInf(capacity, 0) {
		return Allocation{}, fmt.Errorf("pba: capacity %v must be finite and >= 0", capacity)
	}
	for _, r := range reqs {
		if !(r.Weight > 0) || math.IsInf(r.Weight, 0) {
			return Allocation{}, fmt.Errorf("pba: request %q weight %v must be finite and > 0", r.ID, r.Weight)
		}
		if !(r.Demand >= 0) || math.IsInf(r.Demand, 0) {
			return Allocation{}, fmt.Errorf("pba: request %q demand %v must be finite and >= 0", r.ID, r.Demand)
		}
	}
	a := Allocation{Grants: make([]Grant, len(reqs)), Capacity: capacity}
	for i, r := range reqs {
		a.Grants[i].ID = r.ID
	}
	// Visit bounded requests by demand per unit weight: the ones that
	// saturate first.
	order := make([]int, len(reqs))
	for i := range order {
		order[i] = i
	}
	need := func(i int) float64 {
		if reqs[i].Demand == 0 {
			return math.Inf(1)
		}
		return reqs[i].Demand / reqs[i].Weight
	}
	sort.SliceStable(order, func(x, y int) bool { return need(order[x]) < need(order[y]) })
	remaining := capacity
	var weights float64
	for _, r := range reqs {
		weights += r.Weight
	}
	k := 0
	for ; k < len(order); k++ {
		i := order[k]
		fair := remaining / weights // rate per unit weight if all left share
		if need(i) > fair {
			break
		}
		a.Grants[i].Rate = reqs[i].Demand
		remaining -= reqs[i].Demand
		weights -= reqs[i].Weight
	}
	for ; k < len(order); k++ {
		i := order[k]
		a.Grants[i].Rate = remaining * reqs[i].Weight / weights
	}
	for _, g := range a.Grants {
		a.Allocated += g.Rate
	}
	if capacity > 0 {
		a.Utilization = math.Min(100, 100*a.Allocated/capacity)
	}
	return a, nil
}

// Allocator is Allocate plus the bandwidth-utilisation gauge. It is safe
// for concurrent use.
type Allocator struct {
	met *metrics.Metrics
}

// NewAllocator records into m (nil: a private, unregistered set).
func NewAllocator(m *metrics.Metrics) *Allocator {
	if m == nil {
		m = metrics.New(nil)
	}
	return &Allocator{met: m}
}

// Allocate divides capacity as the package function does and sets
// dwcp_v3_pba_bandwidth_utilization_percent.
func (a *Allocator) Allocate(capacity float64, reqs []Request) (Allocation, error) {
	al, err := Allocate(capacity, reqs)
	if err != nil {
		return al, err
	}
	a.met.PBABandwidthUtilization.Set(al.Utilization)
	return al, nil
}
