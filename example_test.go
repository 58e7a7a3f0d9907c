package dwcp_test

import (
	"context"
	"fmt"

	"github.com/dwcp/dwcp"
)

// Example migrates a 4 MiB synthetic guest between two engines in one
// process, over an in-memory pipe.
func Example() {
	ctx := context.Background()
	guest, _ := dwcp.NewSyntheticVM(dwcp.SyntheticConfig{Size: 4 << 20, Seed: 1, DirtyRate: 1 << 20})
	defer guest.Close()

	var incoming *dwcp.SyntheticVM
	dst, _ := dwcp.New(dwcp.Config{NodeID: "host-b",
		Incoming: func(ctx context.Context, spec dwcp.IncomingSpec) (dwcp.IncomingMemory, error) {
			vm, err := dwcp.NewIncomingSyntheticVM(spec, dwcp.SyntheticConfig{})
			incoming = vm
			return vm, err
		}})
	defer dst.Close()
	src, _ := dwcp.New(dwcp.Config{NodeID: "host-a"})
	defer src.Close()

	a, b := dwcp.NewPipe(16)
	received := make(chan error, 1)
	go func() { _, err := dst.Receive(ctx, b); received <- err }()
	res, err := src.MigrateSession(ctx, a, dwcp.MigrationRequest{VMID: "vm-1", Memory: guest, Version: dwcp.V3})
	if err != nil {
		fmt.Println("failed:", err)
		return
	}
	<-received
	defer incoming.Close()
	fmt.Println("version:", res.Version)
	fmt.Println("verified:", res.Verified)
	fmt.Println("source running:", guest.Running())
	fmt.Println("destination running:", incoming.Running())
	// Output:
	// version: v3
	// verified: true
	// source running: false
	// destination running: true
}

// ExampleRollout shows the version choice: a deterministic share of VM ids
// gets v3, an explicit request wins, and the kill switch forces v1.
func ExampleRollout() {
	r := dwcp.Rollout{Percentage: 25}
	v3 := 0
	for i := range 1000 {
		if r.Choose(fmt.Sprintf("vm-%d", i), dwcp.VersionAuto) == dwcp.V3 {
			v3++
		}
	}
	fmt.Println("v3 share of 1000 VMs at 25%:", v3 > 200 && v3 < 300)
	fmt.Println("explicit v3:", r.Choose("vm-1", dwcp.V3))
	fmt.Println("kill switch:", dwcp.Rollout{Percentage: 100, KillSwitch: true}.Choose("vm-1", dwcp.V3))
	fmt.Println("stage:", r.Stage())
	// Output:
	// v3 share of 1000 VMs at 25%: true
	// explicit v3: v3
	// kill switch: v1
	// stage: 3
}
