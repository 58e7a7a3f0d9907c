package ass

import (
	"context"
	"errors"
	"testing"
)

func TestClusterStateConcurrentFields(t *testing.T) {
	c := newSimCluster(t, 1, 2, false)
	ctx := context.Background()
	a, b := NewClusterState(c.reps[0]), NewClusterState(c.reps[1])
	host := Host{ID: "h1", Zone: "eu-1", Labels: map[string]string{"gpu": "a100"},
		Capacity: Resources{CPUMillicores: 64000, MemoryBytes: 256 << 30, NetworkBps: 100e9}, Health: HealthHealthy}
	if err := a.SetHost(ctx, host); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 5; i++ {
		c.round()
	}
	// Concurrent updates of different fields at two sites: both survive.
	if err := a.SetHostUsage(ctx, "h1", Resources{CPUMillicores: 1000}); err != nil {
		t.Fatal(err)
	}
	if err := b.SetHostHealth(ctx, "h1", HealthDegraded); err != nil {
		t.Fatal(err)
	}
	if err := b.SetVM(ctx, VM{ID: "vm1", Owner: "bob", Host: "h1", Spec: VMSpec{CPUMillicores: 2000, MemoryBytes: 4 << 30}}); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 5; i++ {
		c.round()
	}
	for _, cs := range []*ClusterState{a, b} {
		h, ok := cs.Host("h1")
		if !ok || h.Usage.CPUMillicores != 1000 || h.Health != HealthDegraded || h.Labels["gpu"] != "a100" || h.Zone != "eu-1" {
			t.Fatalf("host after concurrent field updates: %+v", h)
		}
		if got := h.Free(); got.CPUMillicores != 63000 {
			t.Fatalf("free %+v", got)
		}
		vms := cs.VMsOnHost("h1")
		if len(vms) != 1 || vms[0].State != VMPending || vms[0].Owner != "bob" {
			t.Fatalf("vms on h1: %+v", vms)
		}
	}
	// Two migrations land on h1 at two sites concurrently: both count.
	if err := a.AddHostUsage(ctx, "h1", Resources{CPUMillicores: 500, MemoryBytes: 1 << 30}); err != nil {
		t.Fatal(err)
	}
	if err := b.AddHostUsage(ctx, "h1", Resources{CPUMillicores: 250, MemoryBytes: 2 << 30}); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 5; i++ {
		c.round()
	}
	for _, cs := range []*ClusterState{a, b} {
		if h, _ := cs.Host("h1"); h.Usage.CPUMillicores != 1750 || h.Usage.MemoryBytes != 3<<30 {
			t.Fatalf("usage after concurrent adds: %+v", h.Usage)
		}
	}
	if err := b.SetHostUsage(ctx, "h1", Resources{CPUMillicores: 100}); err != nil {
		t.Fatal(err)
	}
	if h, _ := b.Host("h1"); h.Usage != (Resources{CPUMillicores: 100}) {
		t.Fatalf("usage after set: %+v", h.Usage)
	}
	for i := 0; i < 5; i++ {
		c.round() // a must see b's update before removing, or the update wins
	}
	if err := a.SetVMPlacement(ctx, "vm1", "h2", VMRunning); err != nil {
		t.Fatal(err)
	}
	if err := a.RemoveHost(ctx, "h1"); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 5; i++ {
		c.round()
	}
	if _, ok := b.Host("h1"); ok || len(b.Hosts()) != 0 {
		t.Fatal("removed host still visible")
	}
	if vm, _ := b.VM("vm1"); vm.Host != "h2" || vm.State != VMRunning {
		t.Fatalf("vm after placement: %+v", vm)
	}
	if err := b.SetHostUsage(ctx, "nope", Resources{}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("usage of a missing host: %v", err)
	}
	if err := a.SetHost(ctx, Host{}); err == nil {
		t.Fatal("empty host ID accepted")
	}
}

func TestMetricsRecorded(t *testing.T) {
	c := newSimCluster(t, 1, 2, false)
	ctx := context.Background()
	if err := NewClusterState(c.reps[0]).SetVM(ctx, VM{ID: "vm1"}); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 5; i++ {
		c.round()
	}
	m := c.reps[0].m
	if got := testCounter(m.ASSCRDTOperations.WithLabelValues("or_map")); got != 1 {
		t.Fatalf("or_map operations %v, want 1", got)
	}
	if testCounter(m.ASSSyncBytes.WithLabelValues("sent")) == 0 || testCounter(c.reps[1].m.ASSSyncBytes.WithLabelValues("received")) == 0 {
		t.Fatal("sync bytes not counted")
	}
	if testCounter(m.ASSStateSize) == 0 {
		t.Fatal("state size not set")
	}
	// A corrupt frame counts as a state sync error.
	c.reps[1].handleFrame([]byte("garbage"))
	if got := testCounter(c.reps[1].m.Errors.WithLabelValues("ass", "state_sync_error")); got != 1 {
		t.Fatalf("state_sync_error %v, want 1", got)
	}
}
