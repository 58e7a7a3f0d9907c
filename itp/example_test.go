package itp_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/dwcp/dwcp/itp"
)

const gib = int64(1) << 30

func Example() {
	p, err := itp.NewPlacer(itp.DefaultConfig(), nil) // nil: private metrics
	if err != nil {
		panic(err)
	}
	hosts := []itp.Host{
		{ID: "fra-1", Site: "fra", Zone: "fra-a", Capacity: itp.Resources{MilliCPU: 64000, MemoryBytes: 256 * gib},
			Used: itp.Resources{MilliCPU: 8000, MemoryBytes: 32 * gib}, VMs: []string{"web-1"}},
		{ID: "fra-2", Site: "fra", Zone: "fra-b", Capacity: itp.Resources{MilliCPU: 64000, MemoryBytes: 256 * gib},
			Used: itp.Resources{MilliCPU: 48000, MemoryBytes: 192 * gib}},
		{ID: "ams-1", Site: "ams", Zone: "ams-a", Capacity: itp.Resources{MilliCPU: 64000, MemoryBytes: 256 * gib},
			Used: itp.Resources{MilliCPU: 8000, MemoryBytes: 32 * gib}, VMs: []string{"web-2"}, Cordoned: true}, // draining
	}
	// Forecasts between sites, as pba would supply them.
	links := itp.Links{{From: "ams", To: "fra"}: {BandwidthBytesPerSec: 250e6, RTT: 8 * time.Millisecond}}
	vm := itp.VM{
		ID:                   "web-2",
		Request:              itp.Resources{MilliCPU: 8000, MemoryBytes: 32 * gib},
		DirtyRateBytesPerSec: 50e6,
		CurrentHost:          "ams-1",
		Rules: []itp.Rule{
			// Never on the same host as its sibling.
			{Kind: itp.AntiAffinity, Hard: true, VMs: []string{"web-1"}},
		},
	}
	d, err := p.Place(context.Background(), vm, hosts, links)
	if err != nil {
		panic(err)
	}
	fmt.Printf("%s -> %s, %d rounds, downtime %v\n", d.VMID, d.HostID, d.Prediction.Rounds, d.Prediction.Downtime.Round(time.Millisecond))

	// Too big for every host: the error says why, per filter.
	_, err = p.Place(context.Background(), itp.VM{ID: "huge", Request: itp.Resources{MilliCPU: 128000}}, hosts, links)
	fmt.Println(errors.Is(err, itp.ErrNoFit), err)

	// Many VMs at once, then the efficiency of the result.
	batch := []itp.VM{
		{ID: "a", Request: itp.Resources{MilliCPU: 32000, MemoryBytes: 128 * gib}},
		{ID: "b", Request: itp.Resources{MilliCPU: 16000, MemoryBytes: 64 * gib}},
		{ID: "c", Request: itp.Resources{MilliCPU: 16000, MemoryBytes: 64 * gib}},
	}
	empty := []itp.Host{{ID: "new-1", Capacity: itp.Resources{MilliCPU: 64000, MemoryBytes: 256 * gib}}}
	res, err := p.PlaceBatch(context.Background(), batch, empty, nil)
	if err != nil {
		panic(err)
	}
	fmt.Printf("batch: %d VMs on %d host(s), efficiency %.0f%%\n", len(res.Assignments), res.Efficiency.HostsUsed, res.Efficiency.Percent)
	// Output:
	// web-2 -> fra-2, 4 rounds, downtime 228ms
	// true itp: no host fits vm "huge" (3 hosts: cordoned excluded 1, resource-fit excluded 2)
	// batch: 3 VMs on 1 host(s), efficiency 100%
}
