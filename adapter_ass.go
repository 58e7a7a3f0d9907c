package dwcp

import (
	"context"

	"github.com/dwcp/dwcp/ass"
)

// ASSState records migrations in ass's replicated cluster state: the VM's
// host, and the memory it takes moved from the source's usage to the
// destination's (hosts that ass does not know are left alone).
type ASSState struct {
	State *ass.ClusterState
}

// RecordMigration implements ClusterState.
func (a *ASSState) RecordMigration(ctx context.Context, vm VMInfo, from, to string) error {
	v, ok := a.State.VM(vm.ID)
	var err error
	if ok {
		err = a.State.SetVMPlacement(ctx, vm.ID, to, ass.VMRunning)
	} else {
		v = ass.VM{ID: vm.ID, Host: to, State: ass.VMRunning, Spec: ass.VMSpec{MemoryBytes: vm.MemoryBytes}}
		err = a.State.SetVM(ctx, v)
	}
	if err != nil {
		return err
	}
	moved := v.Spec.Resources()
	if moved.MemoryBytes == 0 {
		moved.MemoryBytes = vm.MemoryBytes
	}
	// AddHostUsage, not read-then-SetHostUsage: two migrations landing on
	// one host at two sites at once must both count after the merge.
	zero := ass.Resources{}
	if _, ok := a.State.Host(from); ok {
		if err := a.State.AddHostUsage(ctx, from, zero.Sub(moved)); err != nil {
			return err
		}
	}
	if _, ok := a.State.Host(to); ok {
		if err := a.State.AddHostUsage(ctx, to, moved); err != nil {
			return err
		}
	}
	return nil
}
