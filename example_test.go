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
