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
	mem := v.Spec.MemoryBytes
	if mem == 0 {
		mem = vm.MemoryBytes
	}
	if h, ok := a.State.Host(from); ok {
		u := h.Usage
		u.MemoryBytes = max(0, u.MemoryBytes-mem)
		u.CPUMillicores = max(0, u.CPUMillicores-v.Spec.CPUMillicores)
		if err := a.State.SetHostUsage(ctx, from, u); err != nil {
			return err
		}
	}
	if h, ok := a.State.Host(to); ok {
		u := h.Usage
		u.MemoryBytes += mem
		u.CPUMillicores += v.Spec.CPUMillicores
		if err := a.State.SetHostUsage(ctx, to, u); err != nil {
			return err
		}
	}
	return nil
}
