package dwcp

import (
	"context"

	"github.com/dwcp/dwcp/acp"
)

// ACPOwnership is the ownership registry over acp's replicated registry.
type ACPOwnership struct {
	Client *acp.OwnershipClient
}

// Owner implements OwnershipRegistry (from the local replica).
func (a *ACPOwnership) Owner(ctx context.Context, vmID string) (string, uint64, error) {
	host, epoch := a.Client.Owner(vmID)
	return host, epoch, nil
}

// Plan implements OwnershipRegistry.
func (a *ACPOwnership) Plan(ctx context.Context, vmID, from, to string) error {
	return a.Client.PlanMigration(ctx, vmID, from, to)
}

// Handover implements OwnershipRegistry.
func (a *ACPOwnership) Handover(ctx context.Context, vmID, from, to string) (uint64, error) {
	return a.Client.Handover(ctx, vmID, from, to)
}

// Abort implements OwnershipRegistry.
func (a *ACPOwnership) Abort(ctx context.Context, vmID string) error {
	return a.Client.Abort(ctx, vmID)
}

// ConfirmResume implements OwnershipRegistry.
func (a *ACPOwnership) ConfirmResume(ctx context.Context, vmID, host string, epoch uint64) error {
	return a.Client.ConfirmResume(ctx, vmID, host, epoch)
}
