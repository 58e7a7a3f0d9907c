package itp

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/dwcp/dwcp/metrics"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// runningCluster puts VMs of the given vCPU sizes (4 GiB per vCPU) on
// 16 vCPU / 64 GiB hosts of one site.
func runningCluster(layout [][]int64) ([]Host, []VM) {
	var hosts []Host
	var vms []VM
	for i, sizes := range layout {
		h := host(fmt.Sprintf("h%d", i), 16, 64)
		h.CostPerHour = 1
		for k, c := range sizes {
			vm := VM{ID: fmt.Sprintf("h%d-v%d", i, k), Request: Resources{MilliCPU: c * 1000, MemoryBytes: c * 4 * gib}, CurrentHost: h.ID, DirtyRateBytesPerSec: 20e6}
			h.Used = h.Used.Add(vm.Request)
			h.VMs = append(h.VMs, vm.ID)
			vms = append(vms, vm)
		}
		hosts = append(hosts, h)
	}
	return hosts, vms
}

func TestRebalance(t *testing.T) {
	for _, tc := range []struct {
		name       string
		layout     [][]int64
		mutate     func(*Config, []Host, []VM)
		links      Links
		moves      int
		reason     string
		freed      int
		hotAfter   int
		wantReason string
	}{
		// 15/16 = 94% on h0, 4/16 on h1: one or two VMs move.
		{name: "hot spot relieved", layout: [][]int64{{4, 4, 4, 2, 1}, {4}}, hotAfter: 0, reason: ReasonHotspot},
		// The only cooler host is across a slow WAN, where a 16 GiB guest
		// dirtying 200 MB/s would pause for minutes: not worth it.
		{name: "hot spot kept when moving costs more", layout: [][]int64{{4, 4, 4, 2, 1}, {4}},
			mutate: func(c *Config, h []Host, v []VM) {
				h[1].Site = "far"
				for i := range v {
					v[i].DirtyRateBytesPerSec = 200e6
				}
			},
			links: Links{{"s", "far"}: {BandwidthBytesPerSec: 10e6, RTT: 80 * time.Millisecond}}, moves: 0, hotAfter: 1},
		// Three hosts at 25%: two can be emptied into the third.
		{name: "consolidate", layout: [][]int64{{2, 2}, {4}, {2, 2}}, freed: 2, reason: ReasonConsolidate},
		{name: "consolidate not worth it", layout: [][]int64{{2, 2}, {4}, {2, 2}},
			mutate: func(c *Config, h []Host, v []VM) {
				for i := range h {
					h[i].CostPerHour = 0.0001
				}
			}, moves: 0},
		{name: "consolidation disabled", layout: [][]int64{{2, 2}, {4}, {2, 2}},
			mutate: func(c *Config, h []Host, v []VM) { c.Rebalance.Consolidate = false }, moves: 0},
		// A host holding a VM the request does not list is never emptied.
		{name: "unknown vm pins its host", layout: [][]int64{{2}, {2}},
			mutate: func(c *Config, h []Host, v []VM) {
				h[0].VMs = append(h[0].VMs, "foreign")
				h[1].VMs = append(h[1].VMs, "foreign2")
			}, moves: 0},
		{name: "max moves", layout: [][]int64{{1, 1, 1}, {1, 1, 1}, {1, 1, 1}},
			mutate: func(c *Config, h []Host, v []VM) { c.Rebalance.MaxMoves = 2 }, moves: 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := DefaultConfig()
			hosts, vms := runningCluster(tc.layout)
			if tc.mutate != nil {
				tc.mutate(&cfg, hosts, vms)
			}
			m := metrics.New(nil)
			p, err := NewPlacer(cfg, m)
			if err != nil {
				t.Fatal(err)
			}
			plan, err := p.PlanRebalance(context.Background(), RebalanceRequest{Hosts: hosts, VMs: vms, Links: tc.links})
			if err != nil {
				t.Fatal(err)
			}
			if tc.moves == 0 && tc.reason == "" && len(plan.Moves) != 0 {
				t.Fatalf("want no moves, got %+v", plan.Moves)
			}
			if tc.reason != "" && len(plan.Moves) == 0 {
				t.Fatal("want moves, got none")
			}
			for _, mv := range plan.Moves {
				if mv.Reason != tc.reason {
					t.Fatalf("move %+v, want reason %s", mv, tc.reason)
				}
				if mv.Prediction.Total <= 0 {
					t.Fatalf("move without a prediction: %+v", mv)
				}
			}
			if len(plan.HostsFreed) != tc.freed {
				t.Fatalf("freed %v, want %d", plan.HostsFreed, tc.freed)
			}
			if tc.reason == ReasonHotspot && plan.HotspotsAfter != tc.hotAfter {
				t.Fatalf("hot spots after %d, want %d", plan.HotspotsAfter, tc.hotAfter)
			}
			if plan.Cost > plan.Benefit {
				t.Fatalf("cost %v > benefit %v", plan.Cost, plan.Benefit)
			}
			if tc.freed > 0 && plan.EfficiencyAfter.Percent <= plan.EfficiencyBefore.Percent {
				t.Fatalf("efficiency %v -> %v", plan.EfficiencyBefore.Percent, plan.EfficiencyAfter.Percent)
			}
			if got := testutil.ToFloat64(m.ITPRebalancingEvents); got != float64(len(plan.Moves)) {
				t.Fatalf("rebalancing events %v, moves %d", got, len(plan.Moves))
			}
			// The input is untouched.
			fresh, _ := runningCluster(tc.layout)
			if hosts[0].Used != fresh[0].Used {
				t.Fatal("PlanRebalance modified its input")
			}
		})
	}
}

func TestRebalanceErrors(t *testing.T) {
	p := mustPlacer(t, DefaultConfig())
	hosts, vms := runningCluster([][]int64{{2}})
	vms[0].CurrentHost = "gone"
	if _, err := p.PlanRebalance(context.Background(), RebalanceRequest{Hosts: hosts, VMs: vms}); err == nil || !strings.Contains(err.Error(), `CurrentHost "gone"`) {
		t.Fatalf("got %v", err)
	}
	_, vms = runningCluster([][]int64{{2}})
	vms = append(vms, vms[0])
	if _, err := p.PlanRebalance(context.Background(), RebalanceRequest{Hosts: hosts, VMs: vms}); err == nil || !strings.Contains(err.Error(), "twice") {
		t.Fatalf("got %v", err)
	}
}
