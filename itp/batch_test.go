package itp

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"
)

func vmOf(id string, cpu, memGiB int64) VM {
	return VM{ID: id, Request: Resources{MilliCPU: cpu * 1000, MemoryBytes: memGiB * gib}}
}

func TestPlaceBatchEvacuation(t *testing.T) {
	p := mustPlacer(t, DefaultConfig())
	src := host("src", 16, 64)
	src.Cordoned = true
	a, b := vmOf("a", 4, 16), vmOf("b", 4, 16)
	a.CurrentHost, b.CurrentHost = "src", "src"
	src.VMs = []string{"a", "b", "pinned"}
	src.Used = Resources{MilliCPU: 10000, MemoryBytes: 40 * gib}
	hosts := []Host{src, host("d1", 16, 64), host("d2", 16, 64)}
	res, err := p.PlaceBatch(context.Background(), []VM{a, b}, hosts, nil)
	if err != nil {
		t.Fatal(err)
	}
	hostOf := map[string]int{}
	for _, as := range res.Assignments {
		hostOf[as.VMID] = as.HostIndex
		if as.HostID == "src" {
			t.Fatalf("%s stayed on its cordoned host", as.VMID)
		}
	}
	if hostOf["a"] != hostOf["b"] {
		t.Fatalf("bin-packing split the pair: %v", res.Assignments)
	}
	if got := res.Hosts[0]; got.Used != (Resources{MilliCPU: 2000, MemoryBytes: 8 * gib}) || len(got.VMs) != 1 {
		t.Fatalf("source after evacuation: %+v", got)
	}
	checkHard(t, DefaultConfig(), []VM{a, b}, hosts, res.Hosts, hostOf, nil)
	if hosts[0].Used.MilliCPU != 10000 || len(hosts[0].VMs) != 3 {
		t.Fatal("PlaceBatch modified its input")
	}
}

func TestPlaceBatchPartial(t *testing.T) {
	p := mustPlacer(t, DefaultConfig())
	low, high := vmOf("low", 8, 8), vmOf("high", 8, 8)
	high.Priority = 5
	huge := vmOf("huge", 64, 8)
	res, err := p.PlaceBatch(context.Background(), []VM{low, high, huge}, []Host{host("only", 8, 64)}, nil)
	var be *BatchError
	if !errors.As(err, &be) || !errors.Is(err, ErrNoFit) || len(be.Unplaced) != 2 {
		t.Fatalf("want 2 unplaced, got %v", err)
	}
	if len(res.Assignments) != 1 || res.Assignments[0].VMID != "high" {
		t.Fatalf("the high-priority VM should win the only slot: %+v", res.Assignments)
	}
	if !strings.Contains(err.Error(), "2 vms could not be placed") {
		t.Fatalf("message %q", err)
	}
	if _, err := p.PlaceBatch(context.Background(), []VM{low, low}, nil, nil); err == nil || !strings.Contains(err.Error(), "twice") {
		t.Fatalf("duplicate IDs: %v", err)
	}
}

// TestPlaceBatchExactPass: first-fit decreasing style packing of 4,4,3,3,3,3
// (vCPU) into hosts of 10 opens three hosts (4+4, 3+3+3, 3) and no single
// move empties one; the exact pass finds 4+3+3 twice.
func TestPlaceBatchExactPass(t *testing.T) {
	vms := []VM{vmOf("a", 4, 1), vmOf("b", 4, 1), vmOf("c", 3, 1), vmOf("d", 3, 1), vmOf("e", 3, 1), vmOf("f", 3, 1)}
	var hosts []Host
	for _, id := range []string{"h1", "h2", "h3", "h4"} {
		hosts = append(hosts, host(id, 10, 64))
	}
	for _, tc := range []struct {
		exact int
		used  int
		state string
	}{{0, 3, "skipped"}, {14, 2, "optimal"}} {
		cfg := DefaultConfig()
		cfg.ExactSearchMaxVMs = tc.exact
		res, err := mustPlacer(t, cfg).PlaceBatch(context.Background(), vms, hosts, nil)
		if err != nil {
			t.Fatal(err)
		}
		if res.Efficiency.HostsUsed != tc.used || res.ExactSearch != tc.state {
			t.Fatalf("exact=%d: %d hosts, search %s; want %d, %s", tc.exact, res.Efficiency.HostsUsed, res.ExactSearch, tc.used, tc.state)
		}
	}
}

// TestPlaceBatchLocalSearch: priority order places v1 before the VM it
// prefers to share a zone with; v0 then opens a host in its preferred zone,
// and the local search moves v1 next to it, freeing a host and satisfying
// both soft rules.
func TestPlaceBatchLocalSearch(t *testing.T) {
	cfg := DefaultConfig()
	cfg.ExactSearchMaxVMs = 0
	p := mustPlacer(t, cfg)
	h1, h2 := host("h1", 16, 32), host("h2", 16, 32)
	h1.Zone, h2.Zone = "a", "b"
	v1 := vmOf("v1", 4, 6)
	v1.Priority = 1
	v1.Rules = []Rule{{Kind: Affinity, VMs: []string{"v0"}, Scope: ScopeZone}}
	v0 := vmOf("v0", 4, 13)
	v0.Rules = []Rule{{Kind: Affinity, Zones: []string{"b"}, Weight: 2}}
	res, err := p.PlaceBatch(context.Background(), []VM{v1, v0}, []Host{h1, h2}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.HostsFreedByLocalSearch != 1 || res.Efficiency.HostsUsed != 1 || res.SoftViolations != 0 {
		t.Fatalf("freed %d, used %d, soft violations %d; want 1, 1, 0", res.HostsFreedByLocalSearch, res.Efficiency.HostsUsed, res.SoftViolations)
	}
	for _, a := range res.Assignments {
		if a.HostID != "h2" {
			t.Fatalf("%s on %s, want h2", a.VMID, a.HostID)
		}
	}
}

// TestPlaceBatchExactSearchBounded: 14 VMs over 200 hosts of distinct
// shapes give the branch and bound little symmetry to exploit; its timeout
// keeps the call short and the heuristic's placement stays valid.
func TestPlaceBatchExactSearchBounded(t *testing.T) {
	cfg := DefaultConfig()
	cfg.ExactSearchTimeout = 20 * time.Millisecond
	p := mustPlacer(t, cfg)
	for seed := range uint64(5) {
		rng := rand.New(rand.NewPCG(seed, 99))
		var hosts []Host
		for i := range 200 {
			hosts = append(hosts, Host{ID: fmt.Sprint(i), Zone: fmt.Sprint(i % 7),
				Capacity: Resources{MilliCPU: int64(8+rng.IntN(10)) * 1000, MemoryBytes: int64(8+rng.IntN(40)) * gib}})
		}
		var vms []VM
		for i := range 14 {
			vms = append(vms, vmOf(fmt.Sprint("v", i), int64(3+rng.IntN(6)), int64(2+rng.IntN(20))))
		}
		lockThread()
		var timer threadCPUTimer
		timer.begin()
		res, err := p.PlaceBatch(context.Background(), vms, hosts, nil)
		cpu := timer.elapsed()
		unlockThread()
		if err != nil || len(res.Assignments) != len(vms) {
			t.Fatalf("seed %d: %v", seed, err)
		}
		if res.ExactSearch != "optimal" && res.ExactSearch != "budget" {
			t.Fatalf("seed %d: exact search %q", seed, res.ExactSearch)
		}
		if limit := 250 * time.Millisecond * raceSlowdown; cpu > limit {
			t.Fatalf("seed %d: %v CPU, limit %v", seed, cpu, limit)
		}
		hostOf := map[string]int{}
		for _, a := range res.Assignments {
			hostOf[a.VMID] = a.HostIndex
		}
		checkHard(t, cfg, vms, hosts, res.Hosts, hostOf, nil)
	}
}
