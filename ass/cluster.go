package ass

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
)

// ErrNotFound is returned when a host or VM that an update needs is absent.
var ErrNotFound = errors.New("ass: not found")

// Resources is an amount of the three resources placement cares about.
type Resources struct {
	CPUMillicores int64 `json:"cpu_millicores"`
	MemoryBytes   int64 `json:"memory_bytes"`
	NetworkBps    int64 `json:"network_bps"` // bits per second
}

// Sub returns r - o.
func (r Resources) Sub(o Resources) Resources {
	return Resources{r.CPUMillicores - o.CPUMillicores, r.MemoryBytes - o.MemoryBytes, r.NetworkBps - o.NetworkBps}
}

// Fits reports whether every amount of o is at most that of r.
func (r Resources) Fits(o Resources) bool {
	return o.CPUMillicores <= r.CPUMillicores && o.MemoryBytes <= r.MemoryBytes && o.NetworkBps <= r.NetworkBps
}

// Health is a host's health as last reported.
type Health string

// Host health values.
const (
	HealthUnknown  Health = "unknown"
	HealthHealthy  Health = "healthy"
	HealthDegraded Health = "degraded"
	HealthDown     Health = "down"
)

// Host is one machine that can run VMs.
type Host struct {
	ID       string
	Zone     string
	Labels   map[string]string
	Capacity Resources
	Usage    Resources
	Health   Health
}

// Free returns capacity minus usage.
func (h Host) Free() Resources { return h.Capacity.Sub(h.Usage) }

// VMState is the lifecycle state of a VM.
type VMState string

// VM states.
const (
	VMPending   VMState = "pending"
	VMRunning   VMState = "running"
	VMMigrating VMState = "migrating"
	VMStopped   VMState = "stopped"
	VMFailed    VMState = "failed"
)

// VMSpec is what a VM asks for.
type VMSpec struct {
	CPUMillicores int64 `json:"cpu_millicores"`
	MemoryBytes   int64 `json:"memory_bytes"`
	NetworkBps    int64 `json:"network_bps"`
	DiskBytes     int64 `json:"disk_bytes"`
}

// Resources returns the spec's demand in placement terms.
func (s VMSpec) Resources() Resources {
	return Resources{CPUMillicores: s.CPUMillicores, MemoryBytes: s.MemoryBytes, NetworkBps: s.NetworkBps}
}

// VM is one virtual machine and where it runs.
type VM struct {
	ID     string
	Owner  string
	Host   string // ID of the host it runs on; empty when not placed
	Spec   VMSpec
	State  VMState
	Labels map[string]string
}

const (
	hostPrefix = "host/"
	vmPrefix   = "vm/"
)

// ClusterState is a typed view of hosts and VMs over a Replica. Each host and
// VM is one OR-Map key whose fields are LWW registers, so concurrent updates
// of different fields (usage from the host agent, health from a monitor,
// placement from the engine) all survive, and concurrent updates of one field
// resolve to the latest by hybrid logical clock. Safe for concurrent use.
type ClusterState struct{ r *Replica }

// NewClusterState returns the typed view of r.
func NewClusterState(r *Replica) *ClusterState { return &ClusterState{r: r} }

// Replica returns the underlying replica.
func (c *ClusterState) Replica() *Replica { return c.r }

// updateRecord applies fill to the record (a nested OR-Map) at key in one
// replica update; fill mutates rec and joins the field deltas into delta.
func (c *ClusterState) updateRecord(ctx context.Context, key string, mustExist bool, fill func(w Writer, rec, delta *ORMap) error) error {
	if mustExist {
		if _, ok := c.r.Get(key); !ok {
			return fmt.Errorf("%w: %s", ErrNotFound, key)
		}
	}
	var ferr error
	err := c.r.Update(ctx, key, TypeORMap, func(w Writer, v CRDT) CRDT {
		delta := NewORMap()
		ferr = fill(w, v.(*ORMap), delta)
		return delta
	})
	if err != nil {
		return err
	}
	return ferr
}

// setJSON writes LWW fields holding JSON encodings. Called inside updateRecord.
func setJSON(w Writer, rec, delta *ORMap, fields map[string]any) error {
	names := make([]string, 0, len(fields))
	for f := range fields {
		names = append(names, f)
	}
	sort.Strings(names)
	for _, f := range names {
		b, err := json.Marshal(fields[f])
		if err != nil {
			return fmt.Errorf("ass: encode field %s: %w", f, err)
		}
		fd, err := rec.Update(w.Node, f, TypeLWWRegister, func(fv CRDT) CRDT {
			return fv.(*LWWRegister).Set(w.Now(), b)
		})
		if err != nil {
			return err
		}
		delta.Merge(fd)
	}
	return nil
}

// Host usage is three PN-counters, so that usage changes made concurrently
// at different sites (two migrations landing on one host) add up instead of
// one overwriting the other.
var usageFields = [3]string{"usage_cpu", "usage_mem", "usage_net"}

func usageOf(rec *ORMap) Resources {
	var v [3]int64
	for i, f := range usageFields {
		if c, ok := rec.Get(f); ok {
			if pn, ok := c.(*PNCounter); ok {
				v[i] = pn.Value()
			}
		}
	}
	return Resources{CPUMillicores: v[0], MemoryBytes: v[1], NetworkBps: v[2]}
}

// addUsage adds d to the usage counters. Called inside updateRecord.
func addUsage(w Writer, rec, delta *ORMap, d Resources) error {
	for i, n := range [3]int64{d.CPUMillicores, d.MemoryBytes, d.NetworkBps} {
		if n == 0 {
			continue
		}
		fd, err := rec.Update(w.Node, usageFields[i], TypePNCounter, func(v CRDT) CRDT { return v.(*PNCounter).Add(w.Node, n) })
		if err != nil {
			return err
		}
		delta.Merge(fd)
	}
	return nil
}

func (c *ClusterState) setFields(ctx context.Context, key string, fields map[string]any, mustExist bool) error {
	return c.updateRecord(ctx, key, mustExist, func(w Writer, rec, delta *ORMap) error {
		return setJSON(w, rec, delta, fields)
	})
}

// readField decodes one LWW field of a record; a missing field leaves dst unchanged.
func readField(rec *ORMap, field string, dst any) {
	v, ok := rec.Get(field)
	if !ok {
		return
	}
	if reg, ok := v.(*LWWRegister); ok && reg.Value() != nil {
		// A field a peer wrote with a different encoding stays at its zero value.
		_ = json.Unmarshal(reg.Value(), dst)
	}
}

// SetHost writes every field of h. Usage is set by adding the difference
// from the usage this replica sees, so a concurrent AddHostUsage elsewhere
// still counts.
func (c *ClusterState) SetHost(ctx context.Context, h Host) error {
	if h.ID == "" {
		return errors.New("ass: SetHost: empty host ID")
	}
	if h.Health == "" {
		h.Health = HealthUnknown
	}
	return c.updateRecord(ctx, hostPrefix+h.ID, false, func(w Writer, rec, delta *ORMap) error {
		if err := setJSON(w, rec, delta, map[string]any{
			"zone": h.Zone, "labels": h.Labels, "capacity": h.Capacity, "health": h.Health,
		}); err != nil {
			return err
		}
		return addUsage(w, rec, delta, h.Usage.Sub(usageOf(rec)))
	})
}

// SetHostUsage sets the usage of an existing host (as its agent measures
// it), by adding the difference from the usage this replica sees.
func (c *ClusterState) SetHostUsage(ctx context.Context, id string, usage Resources) error {
	return c.updateRecord(ctx, hostPrefix+id, true, func(w Writer, rec, delta *ORMap) error {
		return addUsage(w, rec, delta, usage.Sub(usageOf(rec)))
	})
}

// AddHostUsage adds d (which may be negative) to the usage of an existing
// host. Unlike a read followed by SetHostUsage, concurrent calls at
// different sites all count: use it to account for VMs placed or moved.
func (c *ClusterState) AddHostUsage(ctx context.Context, id string, d Resources) error {
	return c.updateRecord(ctx, hostPrefix+id, true, func(w Writer, rec, delta *ORMap) error {
		return addUsage(w, rec, delta, d)
	})
}

// SetHostHealth writes the health of an existing host.
func (c *ClusterState) SetHostHealth(ctx context.Context, id string, h Health) error {
	return c.setFields(ctx, hostPrefix+id, map[string]any{"health": h}, true)
}

// RemoveHost deletes a host.
func (c *ClusterState) RemoveHost(ctx context.Context, id string) error {
	return c.r.Remove(ctx, hostPrefix+id)
}

func hostFrom(id string, rec *ORMap) Host {
	h := Host{ID: id, Health: HealthUnknown}
	readField(rec, "zone", &h.Zone)
	readField(rec, "labels", &h.Labels)
	readField(rec, "capacity", &h.Capacity)
	h.Usage = usageOf(rec)
	readField(rec, "health", &h.Health)
	return h
}

// Host returns one host.
func (c *ClusterState) Host(id string) (Host, bool) {
	var h Host
	var ok bool
	c.r.View(func(s *ORMap) {
		v, found := s.Get(hostPrefix + id)
		if rec, isMap := v.(*ORMap); found && isMap {
			h, ok = hostFrom(id, rec), true
		}
	})
	return h, ok
}

// Hosts returns every host, sorted by ID.
func (c *ClusterState) Hosts() []Host {
	var out []Host
	c.r.View(func(s *ORMap) {
		for _, k := range s.Keys(hostPrefix) {
			v, _ := s.Get(k)
			if rec, ok := v.(*ORMap); ok {
				out = append(out, hostFrom(strings.TrimPrefix(k, hostPrefix), rec))
			}
		}
	})
	return out
}

// SetVM writes every field of vm.
func (c *ClusterState) SetVM(ctx context.Context, vm VM) error {
	if vm.ID == "" {
		return errors.New("ass: SetVM: empty VM ID")
	}
	if vm.State == "" {
		vm.State = VMPending
	}
	return c.setFields(ctx, vmPrefix+vm.ID, map[string]any{
		"owner": vm.Owner, "host": vm.Host, "spec": vm.Spec, "state": vm.State, "labels": vm.Labels,
	}, false)
}

// SetVMState writes the state of an existing VM.
func (c *ClusterState) SetVMState(ctx context.Context, id string, s VMState) error {
	return c.setFields(ctx, vmPrefix+id, map[string]any{"state": s}, true)
}

// SetVMPlacement writes the host and state of an existing VM together, as a
// migration's switchover does.
func (c *ClusterState) SetVMPlacement(ctx context.Context, id, host string, s VMState) error {
	return c.setFields(ctx, vmPrefix+id, map[string]any{"host": host, "state": s}, true)
}

// RemoveVM deletes a VM.
func (c *ClusterState) RemoveVM(ctx context.Context, id string) error {
	return c.r.Remove(ctx, vmPrefix+id)
}

func vmFrom(id string, rec *ORMap) VM {
	vm := VM{ID: id}
	readField(rec, "owner", &vm.Owner)
	readField(rec, "host", &vm.Host)
	readField(rec, "spec", &vm.Spec)
	readField(rec, "state", &vm.State)
	readField(rec, "labels", &vm.Labels)
	return vm
}

// VM returns one VM.
func (c *ClusterState) VM(id string) (VM, bool) {
	var vm VM
	var ok bool
	c.r.View(func(s *ORMap) {
		v, found := s.Get(vmPrefix + id)
		if rec, isMap := v.(*ORMap); found && isMap {
			vm, ok = vmFrom(id, rec), true
		}
	})
	return vm, ok
}

// VMs returns every VM, sorted by ID.
func (c *ClusterState) VMs() []VM {
	var out []VM
	c.r.View(func(s *ORMap) {
		for _, k := range s.Keys(vmPrefix) {
			v, _ := s.Get(k)
			if rec, ok := v.(*ORMap); ok {
				out = append(out, vmFrom(strings.TrimPrefix(k, vmPrefix), rec))
			}
		}
	})
	return out
}

// VMsOnHost returns the VMs placed on host, sorted by ID.
func (c *ClusterState) VMsOnHost(host string) []VM {
	var out []VM
	for _, vm := range c.VMs() {
		if vm.Host == host {
			out = append(out, vm)
		}
	}
	return out
}
