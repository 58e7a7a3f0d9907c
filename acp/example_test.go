package acp_test

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/dwcp/dwcp/acp"
)

// Hand a VM over from host a to host b through a 3-replica Raft cluster
// on loopback: the old owner's epoch is fenced off.
func Example() {
	dir, err := os.MkdirTemp("", "acp-example")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(dir)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	members := []acp.Member{
		{ID: "a", TrustDomain: "dc1", RTT: 300 * time.Microsecond},
		{ID: "b", TrustDomain: "dc1", RTT: 300 * time.Microsecond},
		{ID: "c", TrustDomain: "dc1", RTT: 400 * time.Microsecond},
	}
	algo, _ := acp.Select(members, acp.DefaultSelectorConfig())
	fmt.Println("algorithm:", algo)

	cfg := acp.DefaultConfig(members, dir)
	c, err := acp.New(ctx, cfg, nil) // nil metrics: collectors registered nowhere
	if err != nil {
		panic(err)
	}
	defer c.Close()

	reg := acp.NewOwnershipClient(c)
	if err := reg.PlanMigration(ctx, "vm-42", "host-a", "host-b"); err != nil {
		panic(err)
	}
	epoch, err := reg.Handover(ctx, "vm-42", "host-a", "host-b")
	if err != nil {
		panic(err)
	}
	fmt.Println("new epoch:", epoch)
	fmt.Println("old owner may resume:", reg.ConfirmResume(ctx, "vm-42", "host-a", 1) == nil)
	fmt.Println("new owner may resume:", reg.ConfirmResume(ctx, "vm-42", "host-b", epoch) == nil)
	// Output:
	// algorithm: raft
	// new epoch: 2
	// old owner may resume: false
	// new owner may resume: true
}
