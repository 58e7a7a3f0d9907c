package itp

import (
	"fmt"
	"math"
	"time"
)

// Resources is a vector of the resources a host offers and a VM requests.
// Integers keep capacity arithmetic exact: a VM fits or it does not, with no
// rounding at the boundary.
type Resources struct {
	// MilliCPU is thousandths of a virtual CPU (a 4-vCPU VM requests 4000).
	MilliCPU int64
	// MemoryBytes is guest memory.
	MemoryBytes int64
	// NetworkBitsPerSec is network bandwidth. A host whose network capacity
	// is 0 does not account network: any request fits it.
	NetworkBitsPerSec int64
}

// Add returns r + o.
func (r Resources) Add(o Resources) Resources {
	return Resources{r.MilliCPU + o.MilliCPU, r.MemoryBytes + o.MemoryBytes, r.NetworkBitsPerSec + o.NetworkBitsPerSec}
}

// Sub returns r - o.
func (r Resources) Sub(o Resources) Resources {
	return Resources{r.MilliCPU - o.MilliCPU, r.MemoryBytes - o.MemoryBytes, r.NetworkBitsPerSec - o.NetworkBitsPerSec}
}

// IsZero reports whether every component is zero.
func (r Resources) IsZero() bool { return r == Resources{} }

// fitsIn reports whether used+req stays within capacity in every accounted
// resource.
func fitsIn(used, req, capacity Resources) bool {
	if used.MilliCPU+req.MilliCPU > capacity.MilliCPU || used.MemoryBytes+req.MemoryBytes > capacity.MemoryBytes {
		return false
	}
	return capacity.NetworkBitsPerSec == 0 || used.NetworkBitsPerSec+req.NetworkBitsPerSec <= capacity.NetworkBitsPerSec
}

// utilization returns the mean and the maximum fraction of capacity that
// used occupies over the accounted resources (CPU, memory, and network where
// the host accounts it).
func utilization(used, capacity Resources) (mean, peak float64) {
	c := frac(used.MilliCPU, capacity.MilliCPU)
	m := frac(used.MemoryBytes, capacity.MemoryBytes)
	sum, n, mx := c+m, 2.0, math.Max(c, m)
	if capacity.NetworkBitsPerSec > 0 {
		nw := frac(used.NetworkBitsPerSec, capacity.NetworkBitsPerSec)
		sum += nw
		n++
		mx = math.Max(mx, nw)
	}
	return sum / n, mx
}

func frac(a, b int64) float64 {
	if b <= 0 {
		if a <= 0 {
			return 0
		}
		return 1
	}
	return float64(a) / float64(b)
}

// Host is one machine that can run VMs, as the caller sees it now.
type Host struct {
	// ID names the host uniquely within one call.
	ID string
	// Site keys the Links map: migrations between hosts of one site use
	// Config.LocalLink unless Links says otherwise.
	Site string
	// Zone and Region place the host in the failure-domain hierarchy.
	Zone, Region string
	// Labels are matched by label rules (for example "gpu": "a100").
	Labels map[string]string
	// Capacity is what the host can give to VMs.
	Capacity Resources
	// Used is what is already allocated on the host (its current load). Fit
	// is checked against Capacity - Used.
	Used Resources
	// VMs lists the IDs of the VMs running on the host; affinity rules
	// look here.
	VMs []string
	// CostPerHour is the price of keeping the host on, in the caller's
	// currency; the rebalancer weighs it against migration cost.
	CostPerHour float64
	// Reliability is the host's availability in (0, 1]; 0 means unknown.
	Reliability float64
	// Cordoned hosts take no new VMs (maintenance, draining).
	Cordoned bool
	// RunningRules are the VM rules of VMs running here that name other
	// VMs. Placing a VM respects them as if they were its own: a hard
	// anti-affinity of a running VM keeps the VMs it names away from it,
	// and its hard affinity, met by no other target yet, pulls them to it.
	// Only rules with VMs targets matter here.
	RunningRules []RunningRule
}

// RunningRule is a rule of a VM that runs on a host.
type RunningRule struct {
	VMID string
	Rule Rule
}

// empty reports whether the host holds nothing at all.
func (h *Host) empty() bool { return len(h.VMs) == 0 && h.Used.IsZero() }

// RuleKind says whether a rule attracts or repels.
type RuleKind uint8

const (
	// Affinity wants the VM near its target.
	Affinity RuleKind = iota + 1
	// AntiAffinity wants the VM away from its target.
	AntiAffinity
)

func (k RuleKind) String() string {
	switch k {
	case Affinity:
		return "affinity"
	case AntiAffinity:
		return "anti-affinity"
	}
	return fmt.Sprintf("RuleKind(%d)", uint8(k))
}

// Scope is the topology level at which a VM rule is evaluated.
type Scope uint8

const (
	// ScopeHost evaluates VM rules per host.
	ScopeHost Scope = iota
	// ScopeZone evaluates VM rules per zone.
	ScopeZone
)

// Rule is one affinity or anti-affinity constraint of a VM. Exactly one
// target is set: VMs (other VMs, at Scope), LabelKey (a host label; an
// empty LabelValue matches any value of the key) or Zones.
//
// A VM affinity rule none of whose VMs is placed anywhere in the host set is
// satisfied everywhere: the first VM of a group can go anywhere, as in
// Kubernetes inter-pod affinity. The VM's own ID in VMs is ignored.
type Rule struct {
	Kind RuleKind
	// Hard rules exclude hosts; soft rules lower the score of hosts that
	// violate them and count in itp_constraint_violations_total when the
	// chosen host violates them.
	Hard bool
	// Weight of a soft rule relative to the VM's other soft rules; 0 means 1.
	Weight float64

	VMs   []string
	Scope Scope

	LabelKey, LabelValue string

	Zones []string
}

func (r *Rule) validate() error {
	targets := 0
	if len(r.VMs) > 0 {
		targets++
	}
	if r.LabelKey != "" {
		targets++
	}
	if len(r.Zones) > 0 {
		targets++
	}
	switch {
	case r.Kind != Affinity && r.Kind != AntiAffinity:
		return fmt.Errorf("kind %v is neither Affinity nor AntiAffinity", r.Kind)
	case targets != 1:
		return fmt.Errorf("has %d targets (VMs, LabelKey, Zones); exactly one is needed", targets)
	case r.Scope != ScopeHost && r.Scope != ScopeZone:
		return fmt.Errorf("scope %d is neither ScopeHost nor ScopeZone", r.Scope)
	case r.Weight < 0 || math.IsNaN(r.Weight) || math.IsInf(r.Weight, 0):
		return fmt.Errorf("weight %v is not a finite non-negative number", r.Weight)
	}
	return nil
}

func (r *Rule) weight() float64 {
	if r.Weight == 0 {
		return 1
	}
	return r.Weight
}

// VM is a virtual machine to place or to migrate.
type VM struct {
	ID string
	// Request is what the VM needs on its host.
	Request Resources
	// SizeBytes is the state a live migration copies in its first round;
	// 0 means Request.MemoryBytes.
	SizeBytes int64
	// DirtyRateBytesPerSec is how fast the guest rewrites memory while it
	// is being copied.
	DirtyRateBytesPerSec float64
	// Priority orders batch placement (higher first) and makes moving the
	// VM costlier for the rebalancer.
	Priority int
	// CurrentHost is the host the VM runs on, "" for a new VM. Place never
	// chooses it; migrations are predicted from its site.
	CurrentHost string
	// SourceSite is the site the VM migrates from when CurrentHost is not
	// among the hosts given to Place; "" with no CurrentHost means a fresh
	// start that copies nothing.
	SourceSite string
	// AllowedZones is a hard constraint; empty allows every zone.
	AllowedZones []string
	// MinReliability is a hard floor on Host.Reliability; 0 disables it.
	MinReliability float64
	// MaxDowntime is a hard ceiling on predicted migration downtime;
	// 0 uses Config.MaxDowntime (and 0 there disables the check).
	MaxDowntime time.Duration
	// Rules are the VM's affinity and anti-affinity constraints.
	Rules []Rule
}

func (v *VM) size() int64 {
	if v.SizeBytes > 0 {
		return v.SizeBytes
	}
	return v.Request.MemoryBytes
}

// Validate reports the first malformed field of the VM.
func (v *VM) Validate() error {
	switch {
	case v.ID == "":
		return fmt.Errorf("itp: vm has an empty ID")
	case v.Request.MilliCPU < 0 || v.Request.MemoryBytes < 0 || v.Request.NetworkBitsPerSec < 0:
		return fmt.Errorf("itp: vm %q requests negative resources %+v", v.ID, v.Request)
	case v.SizeBytes < 0:
		return fmt.Errorf("itp: vm %q SizeBytes %d is negative", v.ID, v.SizeBytes)
	case v.DirtyRateBytesPerSec < 0 || math.IsNaN(v.DirtyRateBytesPerSec) || math.IsInf(v.DirtyRateBytesPerSec, 0):
		return fmt.Errorf("itp: vm %q DirtyRateBytesPerSec %v is not a finite non-negative number", v.ID, v.DirtyRateBytesPerSec)
	case v.MinReliability < 0 || v.MinReliability > 1 || math.IsNaN(v.MinReliability):
		return fmt.Errorf("itp: vm %q MinReliability %v is outside [0, 1]", v.ID, v.MinReliability)
	case v.MaxDowntime < 0:
		return fmt.Errorf("itp: vm %q MaxDowntime %v is negative", v.ID, v.MaxDowntime)
	}
	for i := range v.Rules {
		if err := v.Rules[i].validate(); err != nil {
			return fmt.Errorf("itp: vm %q rule %d: %w", v.ID, i, err)
		}
	}
	return nil
}

// SitePair keys Links: the forecast for migrations from From to To.
type SitePair struct{ From, To string }

// Link is the caller's forecast for one site pair (typically from pba).
type Link struct {
	// BandwidthBytesPerSec is the bandwidth a migration can expect.
	BandwidthBytesPerSec float64
	// RTT is the round-trip time; each pre-copy round pays one.
	RTT time.Duration
}

// Links holds the forecasts between sites. A pair missing in one
// direction is looked up in the other; a site's link to itself defaults to
// Config.LocalLink. A host reachable by no link cannot receive a migration.
type Links map[SitePair]Link

func (l Links) lookup(from, to string, local Link) (Link, bool) {
	if k, ok := l[SitePair{from, to}]; ok {
		return k, true
	}
	if from == to {
		return local, true
	}
	k, ok := l[SitePair{to, from}]
	return k, ok
}

// validateHosts checks the parts of hosts that could otherwise be misread:
// the running VMs' rules.
func validateHosts(hosts []Host) error {
	for i := range hosts {
		for k := range hosts[i].RunningRules {
			rr := &hosts[i].RunningRules[k]
			if rr.VMID == "" {
				return fmt.Errorf("itp: host %q RunningRules[%d] has an empty VMID", hosts[i].ID, k)
			}
			if err := rr.Rule.validate(); err != nil {
				return fmt.Errorf("itp: host %q RunningRules[%d] (vm %q): %w", hosts[i].ID, k, rr.VMID, err)
			}
		}
	}
	return nil
}
