package itp

import (
	"math"
	"slices"
	"time"
)

// Names of the built-in filters, as they appear in NoFitError. They run in
// this order, and a host is charged to the first one that rejects it.
const (
	FilterCordoned       = "cordoned"
	FilterCurrentHost    = "current-host"
	FilterResourceFit    = "resource-fit"
	FilterAllowedZones   = "allowed-zones"
	FilterMinReliability = "min-reliability"
	FilterLabelRules     = "label-rules"
	FilterZoneRules      = "zone-rules"
	FilterVMAffinity     = "vm-affinity"
	FilterVMAntiAffinity = "vm-anti-affinity"
	FilterLink           = "link"
	FilterMaxDowntime    = "max-downtime"
)

var coreFilterNames = [...]string{
	FilterCordoned, FilterCurrentHost, FilterResourceFit, FilterAllowedZones,
	FilterMinReliability, FilterLabelRules, FilterZoneRules, FilterVMAffinity,
	FilterVMAntiAffinity, FilterLink, FilterMaxDowntime,
}

const (
	fCordoned = iota
	fCurrentHost
	fResourceFit
	fAllowedZones
	fMinReliability
	fLabelRules
	fZoneRules
	fVMAffinity
	fVMAntiAffinity
	fLink
	fMaxDowntime
	numCoreFilters
)

// Filter is a pluggable hard constraint: a host it rejects is never chosen.
// Implementations must be safe for concurrent use and must not keep c.
type Filter interface {
	Name() string
	// Filter reports whether host may receive c.VM().
	Filter(c *Cycle, host int) bool
}

// Scorer is a pluggable soft preference. Implementations must be safe for
// concurrent use and must not keep c.
type Scorer interface {
	Name() string
	// Score rates a host that passed every filter, from 0 (worst) to 100.
	Score(c *Cycle, host int) float64
}

// WeightedScorer is a Scorer with its weight in the final weighted mean.
type WeightedScorer struct {
	Scorer Scorer
	Weight float64
}

type preparedRule struct {
	rule   *Rule
	weight float64
	placed bool    // a target VM runs somewhere in the host set
	hosts  []int   // hosts running a target VM
	zones  []int32 // zones running a target VM
}

// inverseRule is another placed VM's rule that names the VM being placed:
// its anti-affinity keeps this VM away from it, and its affinity, not yet
// met by any other target, pulls this VM to it. Other VMs' rules come from
// Host.RunningRules and, in PlaceBatch and PlanRebalance, from the VMs of
// the call.
type inverseRule struct {
	require bool
	hard    bool
	weight  float64
	scope   Scope
	host    int
	zone    int32
}

func (c *Cycle) inverseHolds(r *inverseRule, i int) bool {
	var at bool
	if r.scope == ScopeZone {
		at = c.st.zoneOf[i] == r.zone
	} else {
		at = i == r.host
	}
	return at == r.require
}

type sitePrediction struct {
	ok   bool
	pred Prediction
}

// Cycle is the scheduling context of one VM against one host set: what
// filters and scorers read. It is valid only during the call that hands it
// to a plugin.
type Cycle struct {
	st          *clusterState
	vm          *VM
	current     int
	hasSource   bool
	maxDowntime time.Duration
	rules       []preparedRule
	inverse     []inverseRule
	hardRules   bool
	softTotal   float64
	sites       []sitePrediction
	minTotal    time.Duration
}

// VM is the VM being placed.
func (c *Cycle) VM() *VM { return c.vm }

// NumHosts is the number of hosts in the set.
func (c *Cycle) NumHosts() int { return len(c.st.hosts) }

// Host returns host i as the cycle sees it (with the batch's earlier
// placements applied). Callers must not modify it.
func (c *Cycle) Host(i int) *Host { return &c.st.hosts[i] }

// Migrates reports whether the VM has a source to migrate from.
func (c *Cycle) Migrates() bool { return c.hasSource }

// Prediction returns the predicted migration to host i; ok is false when
// the VM does not migrate or no link reaches the host.
func (c *Cycle) Prediction(i int) (p Prediction, ok bool) {
	if !c.hasSource {
		return Prediction{}, false
	}
	sp := c.sites[c.st.siteOf[i]]
	return sp.pred, sp.ok
}

// MinMigrationTime is the shortest predicted migration over reachable sites.
func (c *Cycle) MinMigrationTime() time.Duration { return c.minTotal }

// ZoneUtilization is the mean CPU and memory utilisation (0..1) of host i's
// zone.
func (c *Cycle) ZoneUtilization(i int) float64 { return c.st.zoneUtilization(c.st.zoneOf[i]) }

// MaxCostPerHour is the highest Host.CostPerHour in the set.
func (c *Cycle) MaxCostPerHour() float64 { return c.st.maxCost }

// SoftViolations returns how many of the VM's soft rules host i would
// violate, their total weight, and the total weight of all soft rules.
//
// In a batch or a rebalance, soft rules of other placed VMs that name this
// VM count too (in violated and total, not in count).
func (c *Cycle) SoftViolations(i int) (count int, violated, total float64) {
	for k := range c.rules {
		r := &c.rules[k]
		if r.rule.Hard || c.ruleHolds(r, i) {
			continue
		}
		count++
		violated += r.weight
	}
	for k := range c.inverse {
		r := &c.inverse[k]
		if !r.hard && !c.inverseHolds(r, i) {
			violated += r.weight
		}
	}
	return count, violated, c.softTotal
}

// prepare builds the cycle of vm over s, reusing s's scratch space.
func (s *clusterState) prepare(c *Cycle, vm *VM) {
	*c = Cycle{st: s, vm: vm, current: s.hostIndex(vm.CurrentHost), maxDowntime: vm.MaxDowntime}
	if c.maxDowntime == 0 {
		c.maxDowntime = s.cfg.MaxDowntime
	}
	sc := &s.scratch
	sc.rules = sc.rules[:0]
	sc.hostIdx = sc.hostIdx[:0]
	sc.zoneIdx = sc.zoneIdx[:0]
	for k := range vm.Rules {
		r := &vm.Rules[k]
		pr := preparedRule{rule: r, weight: r.weight()}
		if len(r.VMs) > 0 {
			h0, z0 := len(sc.hostIdx), len(sc.zoneIdx)
			for _, id := range r.VMs {
				if id == vm.ID {
					continue
				}
				if i, ok := s.loc[id]; ok {
					pr.placed = true
					sc.hostIdx = append(sc.hostIdx, i)
					sc.zoneIdx = append(sc.zoneIdx, s.zoneOf[i])
				}
			}
			// Sub-slices of the shared scratch: capacity-limited so later
			// appends never overwrite them.
			pr.hosts = sc.hostIdx[h0:len(sc.hostIdx):len(sc.hostIdx)]
			pr.zones = sc.zoneIdx[z0:len(sc.zoneIdx):len(sc.zoneIdx)]
		}
		if r.Hard {
			c.hardRules = true
		} else {
			c.softTotal += pr.weight
		}
		sc.rules = append(sc.rules, pr)
	}
	c.rules = sc.rules
	sc.inverse = sc.inverse[:0]
	for _, ref := range s.refBy[vm.ID] {
		if inv, ok := s.invert(ref, vm); ok {
			sc.inverse = append(sc.inverse, inv)
			if inv.hard {
				c.hardRules = true
			} else {
				c.softTotal += inv.weight
			}
		}
	}
	c.inverse = sc.inverse

	srcSite := vm.SourceSite
	if c.current >= 0 {
		srcSite = s.hosts[c.current].Site
	}
	c.hasSource = c.current >= 0 || vm.SourceSite != ""
	sc.sites = sc.sites[:0]
	c.minTotal = 0
	if c.hasSource {
		c.minTotal = time.Duration(math.MaxInt64)
		for _, dst := range s.siteNames {
			link, ok := s.links.lookup(srcSite, dst, s.cfg.LocalLink)
			ok = ok && link.BandwidthBytesPerSec > 0
			sp := sitePrediction{ok: ok}
			if ok {
				sp.pred = PredictMigration(vm.size(), vm.DirtyRateBytesPerSec, link, s.cfg.Precopy)
				c.minTotal = min(c.minTotal, sp.pred.Total)
			}
			sc.sites = append(sc.sites, sp)
		}
	}
	c.sites = sc.sites
}

// invert turns another VM's rule that names vm into a constraint on vm;
// ok is false when it constrains nothing now (its owner is unplaced, or an
// affinity is already met by another target).
func (s *clusterState) invert(ref ruleRef, vm *VM) (inverseRule, bool) {
	owner, ok := s.loc[ref.owner]
	if !ok || ref.owner == vm.ID {
		return inverseRule{}, false
	}
	r := ref.rule
	inv := inverseRule{require: r.Kind == Affinity, hard: r.Hard, weight: r.weight(), scope: r.Scope, host: owner, zone: s.zoneOf[owner]}
	if inv.require {
		for _, id := range r.VMs {
			if id == vm.ID || id == ref.owner {
				continue
			}
			if at, ok := s.loc[id]; ok && (at == owner || (r.Scope == ScopeZone && s.zoneOf[at] == inv.zone)) {
				return inverseRule{}, false
			}
		}
	}
	return inv, true
}

// ruleHolds evaluates one rule on host i.
func (c *Cycle) ruleHolds(r *preparedRule, i int) bool {
	h := &c.st.hosts[i]
	var match bool
	switch {
	case len(r.rule.VMs) > 0:
		if !r.placed {
			return true
		}
		if r.rule.Scope == ScopeZone {
			match = slices.Contains(r.zones, c.st.zoneOf[i])
		} else {
			match = slices.Contains(r.hosts, i)
		}
	case r.rule.LabelKey != "":
		v, ok := h.Labels[r.rule.LabelKey]
		match = ok && (r.rule.LabelValue == "" || v == r.rule.LabelValue)
	default:
		match = slices.Contains(r.rule.Zones, h.Zone)
	}
	return match == (r.rule.Kind == Affinity)
}

func ruleFilter(r *Rule) int {
	switch {
	case len(r.VMs) > 0 && r.Kind == Affinity:
		return fVMAffinity
	case len(r.VMs) > 0:
		return fVMAntiAffinity
	case r.LabelKey != "":
		return fLabelRules
	}
	return fZoneRules
}

// firstFailure returns the index of the first filter that rejects host i
// (core filters first, then cfg.ExtraFilters), or -1 when it passes all.
func (c *Cycle) firstFailure(i int) int {
	h := &c.st.hosts[i]
	vm := c.vm
	switch {
	case h.Cordoned:
		return fCordoned
	case i == c.current:
		return fCurrentHost
	case !fitsIn(h.Used, vm.Request, h.Capacity):
		return fResourceFit
	case len(vm.AllowedZones) > 0 && !slices.Contains(vm.AllowedZones, h.Zone):
		return fAllowedZones
	case vm.MinReliability > 0 && h.Reliability < vm.MinReliability:
		return fMinReliability
	}
	if c.hardRules {
		for k := range c.rules {
			r := &c.rules[k]
			if r.rule.Hard && !c.ruleHolds(r, i) {
				return ruleFilter(r.rule)
			}
		}
		for k := range c.inverse {
			r := &c.inverse[k]
			if r.hard && !c.inverseHolds(r, i) {
				if r.require {
					return fVMAffinity
				}
				return fVMAntiAffinity
			}
		}
	}
	if c.hasSource {
		sp := &c.sites[c.st.siteOf[i]]
		if !sp.ok {
			return fLink
		}
		if c.maxDowntime > 0 && sp.pred.Downtime > c.maxDowntime {
			return fMaxDowntime
		}
	}
	for k, f := range c.st.cfg.ExtraFilters {
		if !f.Filter(c, i) {
			return numCoreFilters + k
		}
	}
	return -1
}

// score is the weighted mean of the configured scorers on host i.
func (c *Cycle) score(i int) float64 {
	var sum, wsum float64
	for _, ws := range c.st.cfg.Scorers {
		if ws.Weight == 0 {
			continue
		}
		v := ws.Scorer.Score(c, i)
		if !(v >= 0) { // also catches NaN from a faulty plugin
			v = 0
		} else if v > 100 {
			v = 100
		}
		sum += ws.Weight * v
		wsum += ws.Weight
	}
	return sum / wsum
}

func (c *Cycle) filterName(k int) string {
	if k < numCoreFilters {
		return coreFilterNames[k]
	}
	return c.st.cfg.ExtraFilters[k-numCoreFilters].Name()
}
