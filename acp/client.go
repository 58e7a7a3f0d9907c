package acp

import (
	"context"
	"fmt"
)

// OwnershipClient is the typed API of the VM ownership registry over any
// Consensus. Every mutating call is one committed command; Owner and
// CanResume read the local replica.
type OwnershipClient struct {
	c Consensus
}

// NewOwnershipClient wraps c.
func NewOwnershipClient(c Consensus) *OwnershipClient { return &OwnershipClient{c: c} }

// Do commits one command and returns its result. A non-nil Result.Err is a
// refusal by the state machine (the command was ordered but changed
// nothing); the error return is a consensus failure.
func (o *OwnershipClient) Do(ctx context.Context, cmd Command) (Result, error) {
	b, err := EncodeCommand(cmd)
	if err != nil {
		return Result{}, err
	}
	out, err := o.c.Propose(ctx, b)
	if err != nil {
		return Result{}, err
	}
	return DecodeResult(out)
}

func (o *OwnershipClient) do(ctx context.Context, cmd Command) (Result, error) {
	r, err := o.Do(ctx, cmd)
	if err != nil {
		return r, err
	}
	if r.Err != nil {
		return r, fmt.Errorf("%s %s (owner %q, epoch %d, state %s): %w", cmd.Op, cmd.VMID, r.Owner, r.Epoch, r.State, r.Err)
	}
	return r, nil
}

// Register records host as the owner of a VM not yet known (epoch 1).
func (o *OwnershipClient) Register(ctx context.Context, vmID, host string) (uint64, error) {
	r, err := o.do(ctx, Command{Op: OpRegister, VMID: vmID, From: host})
	return r.Epoch, err
}

// PlanMigration starts a migration of vmID from -> to. from must own the VM
// (an unknown VM is registered to from first).
func (o *OwnershipClient) PlanMigration(ctx context.Context, vmID, from, to string) error {
	_, err := o.do(ctx, Command{Op: OpPlan, VMID: vmID, From: from, To: to})
	return err
}

// Advance moves the in-flight migration to StatePrecopy or StateSwitchover.
func (o *OwnershipClient) Advance(ctx context.Context, vmID string, state MigrationState) error {
	_, err := o.do(ctx, Command{Op: OpAdvance, VMID: vmID, Epoch: uint64(state)})
	return err
}

// Handover makes to the owner of vmID and returns the new fencing epoch. It
// is one committed command: after it returns, the old owner can no longer
// resume with its epoch, even if it was partitioned away. Retrying a
// handover that already committed returns the same epoch.
func (o *OwnershipClient) Handover(ctx context.Context, vmID, from, to string) (uint64, error) {
	r, err := o.do(ctx, Command{Op: OpHandover, VMID: vmID, From: from, To: to})
	return r.Epoch, err
}

// Abort ends the in-flight migration of vmID; the owner keeps the VM.
func (o *OwnershipClient) Abort(ctx context.Context, vmID string) error {
	_, err := o.do(ctx, Command{Op: OpAbort, VMID: vmID})
	return err
}

// ConfirmResume checks through consensus (linearizably) that host owns vmID
// at epoch. A host must call it, and succeed, before running the guest.
func (o *OwnershipClient) ConfirmResume(ctx context.Context, vmID, host string, epoch uint64) error {
	_, err := o.do(ctx, Command{Op: OpResume, VMID: vmID, From: host, Epoch: epoch})
	return err
}

// Owner returns vmID's owner and epoch from the local replica ("" and 0 if
// unknown). The answer may lag the latest commit by the replication delay.
func (o *OwnershipClient) Owner(vmID string) (host string, epoch uint64) {
	o.c.View(func(r *Registry) {
		if v, ok := r.Get(vmID); ok {
			host, epoch = v.Owner, v.Epoch
		}
	})
	return host, epoch
}

// Record returns vmID's full record from the local replica.
func (o *OwnershipClient) Record(vmID string) (v VMRecord, ok bool) {
	o.c.View(func(r *Registry) { v, ok = r.Get(vmID) })
	return v, ok
}

// CanResume reports from the local replica whether host may resume vmID
// with epoch. A replica that has not yet applied the latest handover still
// answers for the epoch it knows, so use it as a fast pre-check only; the
// fencing decision is ConfirmResume, which is ordered after every handover.
func (o *OwnershipClient) CanResume(vmID, host string, epoch uint64) bool {
	var ok bool
	o.c.View(func(r *Registry) { ok = r.CanResume(vmID, host, epoch) })
	return ok
}
