package itp

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"
)

func TestTmpBB(t *testing.T) {
	p := mustPlacer(t, DefaultConfig())
	worst := time.Duration(0)
	states := map[string]int{}
	for seed := range uint64(40) {
		rng := rand.New(rand.NewPCG(seed, 99))
		var hosts []Host
		for i := range 200 {
			hosts = append(hosts, Host{ID: fmt.Sprint(i), Zone: fmt.Sprint(i % 7), Capacity: Resources{MilliCPU: int64(8+rng.IntN(10)) * 1000, MemoryBytes: int64(8+rng.IntN(40)) * gib}})
		}
		var vms []VM
		for i := range 14 {
			vms = append(vms, VM{ID: fmt.Sprint(i), Request: Resources{MilliCPU: int64(3+rng.IntN(6)) * 1000, MemoryBytes: int64(2+rng.IntN(20)) * gib}})
		}
		start := time.Now()
		res, _ := p.PlaceBatch(context.Background(), vms, hosts, nil)
		el := time.Since(start)
		states[res.ExactSearch]++
		if el > worst {
			worst = el
		}
	}
	t.Logf("worst %v states %v", worst, states)
}
