package itp

import (
	"math"
	"slices"
)

// clusterState is the per-call view of the hosts: indexes that turn the
// per-host filter and score steps into array reads. Place builds it
// read-only over the caller's slice in one pass; PlaceBatch and
// PlanRebalance build it over a private copy that assign/unassign mutate.
type clusterState struct {
	cfg   *Config
	hosts []Host
	links Links

	zoneOf    []int32
	zoneIndex map[string]int32
	zoneNames []string
	zoneUsed  []Resources
	zoneCap   []Resources

	siteOf    []int32
	siteIndex map[string]int32
	siteNames []string

	maxCost float64

	// loc maps VM IDs to host indices. Read-only states index only the IDs
	// the VM's rules name; mutable states index every VM.
	loc  map[string]int
	want map[string]struct{}
	// refBy maps a VM ID to the rules of other VMs that name it (batch and
	// rebalance states only).
	refBy    map[string][]ruleRef
	hostByID map[string]int
	mutable  bool

	scratch cycleScratch
}

type ruleRef struct {
	owner string // ID of the VM whose rule it is
	rule  *Rule
}

// indexRules records, for every VM named by a rule of vms, which rules
// name it (after those of Host.RunningRules, indexed by reset).
func (s *clusterState) indexRules(vms []VM) {
	for v := range vms {
		for r := range vms[v].Rules {
			rule := &vms[v].Rules[r]
			for _, id := range rule.VMs {
				if id != vms[v].ID {
					s.refBy[id] = append(s.refBy[id], ruleRef{vms[v].ID, rule})
				}
			}
		}
	}
}

type cycleScratch struct {
	inverse []inverseRule
	rules   []preparedRule
	sites   []sitePrediction
	counts  []int
	hostIdx []int
	zoneIdx []int32
}

func newClusterState(cfg *Config) *clusterState {
	return &clusterState{
		cfg:       cfg,
		zoneIndex: map[string]int32{},
		siteIndex: map[string]int32{},
		loc:       map[string]int{},
		want:      map[string]struct{}{},
		refBy:     map[string][]ruleRef{},
		hostByID:  map[string]int{},
	}
}

// reset indexes hosts. With mutable set it copies them so the state can
// change; otherwise it only reads them, and indexes the locations of the
// VMs named in wanted (rules of the VM about to be placed).
func (s *clusterState) reset(hosts []Host, links Links, mutable bool, wanted *VM) {
	s.links = links
	s.mutable = mutable
	clear(s.zoneIndex)
	clear(s.siteIndex)
	clear(s.loc)
	clear(s.hostByID)
	s.zoneUsed = s.zoneUsed[:0]
	s.zoneCap = s.zoneCap[:0]
	s.siteNames = s.siteNames[:0]
	s.zoneNames = s.zoneNames[:0]
	s.zoneOf = slices.Grow(s.zoneOf[:0], len(hosts))[:len(hosts)]
	s.siteOf = slices.Grow(s.siteOf[:0], len(hosts))[:len(hosts)]
	s.maxCost = 0
	if mutable {
		s.hosts = make([]Host, len(hosts))
		copy(s.hosts, hosts)
		for i := range s.hosts {
			s.hosts[i].VMs = append([]string(nil), hosts[i].VMs...)
		}
	} else {
		s.hosts = hosts
	}
	clear(s.want)
	clear(s.refBy)
	if wanted != nil && !mutable {
		for r := range wanted.Rules {
			for _, id := range wanted.Rules[r].VMs {
				if id != wanted.ID {
					s.want[id] = struct{}{}
				}
			}
		}
	}
	// Rules of running VMs: a batch indexes all of them; a single
	// decision only those naming its VM, whose owners and other targets
	// it must then locate.
	for i := range s.hosts {
		for k := range s.hosts[i].RunningRules {
			rr := &s.hosts[i].RunningRules[k]
			for _, id := range rr.Rule.VMs {
				if id == rr.VMID || (!mutable && (wanted == nil || id != wanted.ID)) {
					continue
				}
				s.refBy[id] = append(s.refBy[id], ruleRef{rr.VMID, &rr.Rule})
				if !mutable {
					s.loc[rr.VMID] = i
					for _, other := range rr.Rule.VMs {
						s.want[other] = struct{}{}
					}
				}
			}
			if mutable {
				s.loc[rr.VMID] = i
			}
		}
	}
	wantIDs := len(s.want) > 0
	for i := range s.hosts {
		h := &s.hosts[i]
		z, ok := s.lookupZone(h.Zone)
		if !ok {
			z = int32(len(s.zoneUsed))
			s.zoneIndex[h.Zone] = z
			s.zoneNames = append(s.zoneNames, h.Zone)
			s.zoneUsed = append(s.zoneUsed, Resources{})
			s.zoneCap = append(s.zoneCap, Resources{})
		}
		s.zoneOf[i] = z
		s.zoneUsed[z] = s.zoneUsed[z].Add(h.Used)
		s.zoneCap[z] = s.zoneCap[z].Add(h.Capacity)
		st, ok := s.lookupSite(h.Site)
		if !ok {
			st = int32(len(s.siteNames))
			s.siteIndex[h.Site] = st
			s.siteNames = append(s.siteNames, h.Site)
		}
		s.siteOf[i] = st
		s.maxCost = math.Max(s.maxCost, h.CostPerHour)
		if mutable {
			s.hostByID[h.ID] = i
			for _, id := range h.VMs {
				s.loc[id] = i
			}
		} else if wantIDs {
			for _, id := range h.VMs {
				if _, ok := s.want[id]; ok {
					if _, dup := s.loc[id]; !dup {
						s.loc[id] = i
					}
				}
			}
		}
	}
}

// smallIndex is the count up to which a linear scan of names beats hashing.
const smallIndex = 8

func (s *clusterState) lookupZone(name string) (int32, bool) {
	if len(s.zoneNames) <= smallIndex {
		for i, n := range s.zoneNames {
			if n == name {
				return int32(i), true
			}
		}
		return 0, false
	}
	z, ok := s.zoneIndex[name]
	return z, ok
}

func (s *clusterState) lookupSite(name string) (int32, bool) {
	if len(s.siteNames) <= smallIndex {
		for i, n := range s.siteNames {
			if n == name {
				return int32(i), true
			}
		}
		return 0, false
	}
	st, ok := s.siteIndex[name]
	return st, ok
}

// hostIndex finds a host by ID.
func (s *clusterState) hostIndex(id string) int {
	if id == "" {
		return -1
	}
	if s.mutable {
		if i, ok := s.hostByID[id]; ok {
			return i
		}
		return -1
	}
	for i := range s.hosts {
		if s.hosts[i].ID == id {
			return i
		}
	}
	return -1
}

// assign puts vm on host i; only mutable states change.
func (s *clusterState) assign(vm *VM, i int) {
	h := &s.hosts[i]
	h.Used = h.Used.Add(vm.Request)
	h.VMs = append(h.VMs, vm.ID)
	z := s.zoneOf[i]
	s.zoneUsed[z] = s.zoneUsed[z].Add(vm.Request)
	s.loc[vm.ID] = i
}

// unassign takes vm off host i, undoing assign.
func (s *clusterState) unassign(vm *VM, i int) {
	h := &s.hosts[i]
	h.Used = h.Used.Sub(vm.Request)
	if k := slices.Index(h.VMs, vm.ID); k >= 0 {
		last := len(h.VMs) - 1
		h.VMs[k] = h.VMs[last]
		h.VMs = h.VMs[:last]
	}
	z := s.zoneOf[i]
	s.zoneUsed[z] = s.zoneUsed[z].Sub(vm.Request)
	if s.loc[vm.ID] == i {
		delete(s.loc, vm.ID)
	}
}

func (s *clusterState) zoneUtilization(z int32) float64 {
	mean, _ := utilization(s.zoneUsed[z], Resources{MilliCPU: s.zoneCap[z].MilliCPU, MemoryBytes: s.zoneCap[z].MemoryBytes})
	return mean
}
