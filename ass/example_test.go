package ass_test

import (
	"context"
	"fmt"
	"time"

	"github.com/dwcp/dwcp/ass"
)

// Two sites share cluster state. Site A registers a host and a VM; site B
// sees them once the delta arrives. Production replicas use TCP (set
// ListenAddr and Peers instead of Transport) and a DataDir.
func Example() {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	network := ass.NewMemNetwork(1)
	go network.Run(ctx, time.Millisecond)

	changed := make(chan struct{}, 64)
	open := func(id string, onChange func([]string)) *ass.Replica {
		cfg := ass.DefaultConfig(id, "")
		cfg.Transport = network.Endpoint(id)
		cfg.Peers = []string{"site-a", "site-b"}
		cfg.OnRemoteChange = onChange
		r, err := ass.NewReplica(cfg, nil)
		if err != nil {
			panic(err)
		}
		if err := r.Start(ctx); err != nil {
			panic(err)
		}
		return r
	}
	a := open("site-a", nil)
	defer a.Close()
	b := open("site-b", func([]string) {
		select {
		case changed <- struct{}{}:
		default:
		}
	})
	defer b.Close()

	siteA := ass.NewClusterState(a)
	siteA.SetHost(ctx, ass.Host{ID: "h1", Zone: "eu-1", Health: ass.HealthHealthy,
		Capacity: ass.Resources{CPUMillicores: 32000, MemoryBytes: 128 << 30}})
	siteA.SetVM(ctx, ass.VM{ID: "vm-42", Owner: "alice", Host: "h1", State: ass.VMRunning,
		Spec: ass.VMSpec{CPUMillicores: 4000, MemoryBytes: 16 << 30}})

	siteB := ass.NewClusterState(b)
	for {
		vm, ok := siteB.VM("vm-42")
		if h, hok := siteB.Host(vm.Host); ok && hok {
			fmt.Printf("%s (owner %s) is %s on %s in %s; %d GiB free there\n",
				vm.ID, vm.Owner, vm.State, h.ID, h.Zone, h.Free().MemoryBytes>>30)
			break
		}
		<-changed
	}
	// Output: vm-42 (owner alice) is running on h1 in eu-1; 128 GiB free there
}
