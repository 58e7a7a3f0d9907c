package itp

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"
)

// byteSource reads an instance out of fuzz input; past the end it yields 0.
type byteSource struct {
	b []byte
	i int
}

func (s *byteSource) next(n int) int {
	if s.i >= len(s.b) {
		return 0
	}
	v := int(s.b[s.i])
	s.i++
	return v % n
}

func instanceFromBytes(data []byte) ([]Host, []VM) {
	s := &byteSource{b: data}
	zones := []string{"a", "b", "c"}
	hosts := make([]Host, 1+s.next(8))
	for i := range hosts {
		hosts[i] = Host{
			ID:          fmt.Sprintf("h%d", i),
			Site:        fmt.Sprintf("s%d", s.next(2)),
			Zone:        zones[s.next(3)],
			Capacity:    Resources{MilliCPU: int64(1+s.next(16)) * 1000, MemoryBytes: int64(1+s.next(32)) * gib},
			Cordoned:    s.next(9) == 0,
			Reliability: float64(s.next(101)) / 100,
			Labels:      map[string]string{"ssd": fmt.Sprint(s.next(2))},
			CostPerHour: float64(s.next(5)),
		}
		if s.next(3) == 0 {
			hosts[i].VMs = []string{fmt.Sprintf("old%d", i)}
			hosts[i].Used = Resources{MilliCPU: 1000, MemoryBytes: gib}
		}
	}
	nVMs := 1 + s.next(10)
	for i := range hosts {
		if len(hosts[i].VMs) > 0 && s.next(2) == 0 {
			hosts[i].RunningRules = []RunningRule{{VMID: hosts[i].VMs[0], Rule: Rule{
				Kind: RuleKind(1 + s.next(2)), Hard: s.next(2) == 0, Scope: Scope(s.next(2)),
				VMs: []string{fmt.Sprintf("v%d", s.next(nVMs)), fmt.Sprintf("v%d", s.next(nVMs))},
			}}}
		}
	}
	vms := make([]VM, nVMs)
	for i := range vms {
		vm := VM{
			ID:                   fmt.Sprintf("v%d", i),
			Request:              Resources{MilliCPU: int64(s.next(9)) * 1000, MemoryBytes: int64(s.next(17)) * gib},
			DirtyRateBytesPerSec: float64(s.next(256)) * 1e6,
			Priority:             s.next(3),
			MinReliability:       float64(s.next(4)) / 4,
		}
		if s.next(4) == 0 {
			vm.AllowedZones = []string{zones[s.next(3)]}
		}
		if s.next(4) == 0 {
			vm.SourceSite = fmt.Sprintf("s%d", s.next(3))
			vm.MaxDowntime = time.Duration(s.next(1000)) * time.Millisecond
		}
		for range s.next(4) {
			r := Rule{Kind: RuleKind(1 + s.next(2)), Hard: s.next(2) == 0, Weight: float64(s.next(3))}
			switch s.next(3) {
			case 0:
				r.VMs = []string{fmt.Sprintf("v%d", s.next(len(vms))), fmt.Sprintf("old%d", s.next(len(hosts)))}
				r.Scope = Scope(s.next(2))
			case 1:
				r.LabelKey, r.LabelValue = "ssd", fmt.Sprint(s.next(2))
			default:
				r.Zones = []string{zones[s.next(3)]}
			}
			vm.Rules = append(vm.Rules, r)
		}
		vms[i] = vm
	}
	return hosts, vms
}

// FuzzPlacement builds instances from arbitrary bytes and checks that Place
// and PlaceBatch never panic, never violate a hard constraint, and account
// for every host in a NoFitError.
func FuzzPlacement(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte{3, 0, 1, 15, 31, 5, 100, 1, 2, 1, 4, 2, 8, 16, 0, 0, 1, 2, 3})
	f.Add([]byte("placement with a few rules and some hosts, all of it arbitrary"))
	f.Add([]byte{7, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 9, 0, 0, 0, 0, 0, 3, 0, 1, 0, 0, 1, 1})
	cfg := DefaultConfig()
	cfg.ExactSearchNodes = 5000
	p, err := NewPlacer(cfg, nil)
	if err != nil {
		f.Fatal(err)
	}
	links := Links{{"s0", "s1"}: {BandwidthBytesPerSec: 100e6, RTT: time.Millisecond}}
	f.Fuzz(func(t *testing.T, data []byte) {
		hosts, vms := instanceFromBytes(data)
		for _, vm := range vms {
			d, err := p.Place(context.Background(), vm, hosts, links)
			var nf *NoFitError
			switch {
			case errors.As(err, &nf):
				sum := 0
				for _, x := range nf.Exclusions {
					sum += x.Hosts
				}
				if sum != len(hosts) {
					t.Fatalf("exclusions %v cover %d of %d hosts", nf.Exclusions, sum, len(hosts))
				}
			case err != nil:
				t.Fatal(err)
			default:
				after := cloneHosts(hosts)
				after[d.HostIndex].Used = after[d.HostIndex].Used.Add(vm.Request)
				after[d.HostIndex].VMs = append(after[d.HostIndex].VMs, vm.ID)
				checkHard(t, cfg, []VM{vm}, hosts, after, map[string]int{vm.ID: d.HostIndex}, links)
			}
		}
		res, err := p.PlaceBatch(context.Background(), vms, hosts, links)
		var be *BatchError
		if err != nil && !errors.As(err, &be) {
			t.Fatal(err)
		}
		hostOf := map[string]int{}
		for _, a := range res.Assignments {
			hostOf[a.VMID] = a.HostIndex
		}
		checkHard(t, cfg, vms, hosts, res.Hosts, hostOf, links)
		if res.Efficiency.Percent <= 0 || res.Efficiency.Percent > 100 {
			t.Fatalf("efficiency %v outside (0, 100]", res.Efficiency.Percent)
		}
	})
}
