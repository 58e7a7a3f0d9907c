package dwcp

import (
	"context"
	"errors"
)

// OwnershipRegistry records which node owns (may run) each VM, with a
// fencing epoch that rises on every handover; acp implements it over
// consensus. The engine (source side) checks ownership and plans the
// migration before the first page, aborts the plan on failure, and hands
// over after the destination has verified every page. The destination
// confirms through the registry that it owns the VM at the new epoch before
// it resumes the guest, so a stale owner is fenced off.
type OwnershipRegistry interface {
	// Owner returns the VM's owner and epoch ("" and 0 if unknown).
	Owner(ctx context.Context, vmID string) (node string, epoch uint64, err error)
	// Plan records a migration from -> to; from must own the VM (an
	// unknown VM is registered to from).
	Plan(ctx context.Context, vmID, from, to string) error
	// Handover makes to the owner and returns the new, higher epoch.
	Handover(ctx context.Context, vmID, from, to string) (uint64, error)
	// Abort ends a planned migration; the owner keeps the VM.
	Abort(ctx context.Context, vmID string) error
	// ConfirmResume succeeds only if host owns vmID at epoch, checked in
	// the registry's total order.
	ConfirmResume(ctx context.Context, vmID, host string, epoch uint64) error
}

// ClusterState is the replicated view of where VMs run and how loaded hosts
// are; ass implements it with CRDTs. The engine records a VM's new location
// after a successful migration.
type ClusterState interface {
	RecordMigration(ctx context.Context, vm VMInfo, from, to string) error
}

// VMInfo describes a VM to the cluster components.
type VMInfo struct {
	ID          string
	MemoryBytes int64
	// DirtyRate is the guest's recent dirtying rate in bytes per second,
	// when known (0 otherwise).
	DirtyRate float64
}

// Placer chooses a destination for a VM when the caller does not; itp
// implements it. It returns the chosen node and the address its
// destination engine listens on.
type Placer interface {
	Place(ctx context.Context, vm VMInfo, source string) (node, addr string, err error)
}

// ErrNotOwner is returned when the source node does not own the VM it is
// asked to migrate.
var ErrNotOwner = errors.New("dwcp: this node does not own the VM")
