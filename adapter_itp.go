package dwcp

import (
	"context"

	"github.com/dwcp/dwcp/itp"
)

// ITPPlacer chooses destinations with itp over an inventory the caller
// provides (typically read from ass).
type ITPPlacer struct {
	Placer *itp.Placer
	// Inventory returns the candidate hosts (the source among them or not)
	// and the links between sites, as they are now.
	Inventory func(ctx context.Context) ([]itp.Host, itp.Links, error)
	// Address maps a chosen host to the address its engine listens on.
	Address func(hostID string) (string, error)
	// Request returns what the VM needs on its host; nil asks for its
	// memory only.
	Request func(vm VMInfo) itp.Resources
}

// Place implements Placer.
func (p *ITPPlacer) Place(ctx context.Context, vm VMInfo, source string) (string, string, error) {
	hosts, links, err := p.Inventory(ctx)
	if err != nil {
		return "", "", err
	}
	req := itp.Resources{MemoryBytes: vm.MemoryBytes}
	if p.Request != nil {
		req = p.Request(vm)
	}
	d, err := p.Placer.Place(ctx, itp.VM{
		ID: vm.ID, Request: req, SizeBytes: vm.MemoryBytes,
		DirtyRateBytesPerSec: vm.DirtyRate, CurrentHost: source,
	}, hosts, links)
	if err != nil {
		return "", "", err
	}
	addr, err := p.Address(d.HostID)
	if err != nil {
		return "", "", err
	}
	return d.HostID, addr, nil
}
