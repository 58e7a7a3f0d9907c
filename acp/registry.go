package acp

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"sort"
)

// MigrationState is where a VM is in its migration life cycle, as recorded
// by the replicated ownership registry.
type MigrationState uint8

// The migration states. A VM that has never been migrated is Idle; Handover
// moves it to Committed and Abort to Aborted. Both are terminal for one
// migration: the next PlanMigration starts a new one.
const (
	StateIdle MigrationState = iota
	StatePlanned
	StatePrecopy
	StateSwitchover
	StateCommitted
	StateAborted
	stateCount
)

var stateNames = [...]string{"idle", "planned", "precopy", "switchover", "committed", "aborted"}

func (s MigrationState) String() string {
	if s < stateCount {
		return stateNames[s]
	}
	return fmt.Sprintf("MigrationState(%d)", uint8(s))
}

// inFlight reports whether a migration is between plan and its end.
func (s MigrationState) inFlight() bool {
	return s == StatePlanned || s == StatePrecopy || s == StateSwitchover
}

// VMRecord is one VM's entry in the registry.
type VMRecord struct {
	VMID  string
	Owner string
	// Epoch is the fencing token: it rises by one on every handover. Only
	// the owner holding the current epoch may resume the VM.
	Epoch uint64
	State MigrationState
	// Target is the destination of the in-flight migration ("" otherwise).
	Target string
	// PrevOwner is the owner before the last handover, which makes a retried
	// Handover idempotent.
	PrevOwner string
}

// Registry errors. They are committed results, not consensus failures: the
// command was ordered and applied and the state machine refused it.
var (
	ErrUnknownVM       = errors.New("acp: unknown vm")
	ErrNotOwner        = errors.New("acp: host is not the vm's owner")
	ErrStaleEpoch      = errors.New("acp: stale fencing epoch")
	ErrMigrationActive = errors.New("acp: another migration is in flight")
	ErrNoMigration     = errors.New("acp: no migration in flight")
	ErrBadTransition   = errors.New("acp: invalid migration state transition")
	ErrBadCommand      = errors.New("acp: invalid command")
)

// registryErrors maps result codes to errors; index 0 is success.
var registryErrors = []error{nil, ErrUnknownVM, ErrNotOwner, ErrStaleEpoch,
	ErrMigrationActive, ErrNoMigration, ErrBadTransition, ErrBadCommand}

func errorCode(err error) uint8 {
	for i, e := range registryErrors {
		if e != nil && errors.Is(err, e) {
			return uint8(i)
		}
	}
	return uint8(len(registryErrors) - 1)
}

// Registry is the replicated state machine: the VM ownership registry. It is
// pure and deterministic (no clock, no randomness, no I/O) so that every
// replica applying the same command sequence reaches the same state. It is
// not safe for concurrent use; the consensus layers serialise Apply.
type Registry struct {
	vms map[string]*VMRecord
	// applied counts applied commands; it is part of the state digest.
	applied uint64
}

// NewRegistry returns an empty registry.
func NewRegistry() *Registry { return &Registry{vms: make(map[string]*VMRecord)} }

// Get returns a copy of a VM's record.
func (r *Registry) Get(vmID string) (VMRecord, bool) {
	v, ok := r.vms[vmID]
	if !ok {
		return VMRecord{}, false
	}
	return *v, true
}

// Len returns the number of VMs known.
func (r *Registry) Len() int { return len(r.vms) }

// CanResume reports whether host may run vmID holding fencing epoch epoch:
// it must be the owner and the epoch must be the current one.
func (r *Registry) CanResume(vmID, host string, epoch uint64) bool {
	v, ok := r.vms[vmID]
	return ok && v.Owner == host && v.Epoch == epoch
}

// Apply applies one encoded command and returns the encoded result. A
// command that does not decode yields an ErrBadCommand result rather than a
// panic, because a Byzantine client could submit it.
func (r *Registry) Apply(cmd []byte) []byte {
	c, err := DecodeCommand(cmd)
	if err != nil {
		r.applied++
		return EncodeResult(Result{Err: ErrBadCommand})
	}
	return EncodeResult(r.ApplyCommand(c))
}

// ApplyCommand applies one decoded command.
func (r *Registry) ApplyCommand(c Command) Result {
	r.applied++
	if c.VMID == "" {
		return Result{Err: ErrBadCommand}
	}
	v := r.vms[c.VMID]
	switch c.Op {
	case OpRegister:
		if c.From == "" {
			return Result{Err: ErrBadCommand}
		}
		if v != nil {
			if v.Owner != c.From {
				return resultOf(v, ErrNotOwner)
			}
			return resultOf(v, nil)
		}
		v = &VMRecord{VMID: c.VMID, Owner: c.From, Epoch: 1, State: StateIdle}
		r.vms[c.VMID] = v
		return resultOf(v, nil)

	case OpPlan:
		if c.From == "" || c.To == "" || c.From == c.To {
			return Result{Err: ErrBadCommand}
		}
		if v == nil {
			// First sight of a VM: its current host claims it at epoch 1.
			v = &VMRecord{VMID: c.VMID, Owner: c.From, Epoch: 1, State: StateIdle}
			r.vms[c.VMID] = v
		}
		if v.Owner != c.From {
			return resultOf(v, ErrNotOwner)
		}
		if v.State.inFlight() {
			if v.Target == c.To {
				return resultOf(v, nil) // retried plan
			}
			return resultOf(v, ErrMigrationActive)
		}
		v.State, v.Target = StatePlanned, c.To
		return resultOf(v, nil)

	case OpAdvance:
		if v == nil {
			return Result{Err: ErrUnknownVM}
		}
		if !v.State.inFlight() {
			return resultOf(v, ErrNoMigration)
		}
		want := MigrationState(c.Epoch)
		switch {
		case want == v.State:
			return resultOf(v, nil) // retried advance
		case want == v.State+1 && want <= StateSwitchover:
			v.State = want
			return resultOf(v, nil)
		default:
			return resultOf(v, ErrBadTransition)
		}

	case OpHandover:
		if c.From == "" || c.To == "" || c.From == c.To {
			return Result{Err: ErrBadCommand}
		}
		if v == nil {
			return Result{Err: ErrUnknownVM}
		}
		if v.Owner == c.To && v.PrevOwner == c.From && v.State == StateCommitted {
			return resultOf(v, nil) // retried handover: same epoch again
		}
		if v.Owner != c.From {
			return resultOf(v, ErrNotOwner)
		}
		if v.State.inFlight() && v.Target != c.To {
			return resultOf(v, ErrMigrationActive)
		}
		v.PrevOwner, v.Owner = v.Owner, c.To
		v.Epoch++
		v.State, v.Target = StateCommitted, ""
		return resultOf(v, nil)

	case OpAbort:
		if v == nil {
			return Result{Err: ErrUnknownVM}
		}
		if v.State == StateAborted {
			return resultOf(v, nil)
		}
		if !v.State.inFlight() {
			return resultOf(v, ErrNoMigration)
		}
		v.State, v.Target = StateAborted, ""
		return resultOf(v, nil)

	case OpResume:
		if v == nil {
			return Result{Err: ErrUnknownVM}
		}
		if v.Owner != c.From {
			return resultOf(v, ErrNotOwner)
		}
		if v.Epoch != c.Epoch {
			return resultOf(v, ErrStaleEpoch)
		}
		return resultOf(v, nil)
	}
	return Result{Err: ErrBadCommand}
}

func resultOf(v *VMRecord, err error) Result {
	return Result{Err: err, Owner: v.Owner, Epoch: v.Epoch, State: v.State}
}

// Snapshot encodes the whole registry deterministically (VMs sorted by id),
// so equal states give equal bytes and equal digests.
func (r *Registry) Snapshot() []byte {
	ids := make([]string, 0, len(r.vms))
	for id := range r.vms {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	b := make([]byte, 0, 16+len(ids)*48)
	b = append(b, snapshotVersion)
	b = binary.BigEndian.AppendUint64(b, r.applied)
	b = binary.BigEndian.AppendUint32(b, uint32(len(ids)))
	for _, id := range ids {
		v := r.vms[id]
		b = appendString(b, v.VMID)
		b = appendString(b, v.Owner)
		b = binary.BigEndian.AppendUint64(b, v.Epoch)
		b = append(b, byte(v.State))
		b = appendString(b, v.Target)
		b = appendString(b, v.PrevOwner)
	}
	return b
}

// Digest is the SHA-256 of Snapshot.
func (r *Registry) Digest() [32]byte { return sha256.Sum256(r.Snapshot()) }

const snapshotVersion = 1

// Restore replaces the registry's state with a snapshot.
func (r *Registry) Restore(b []byte) error {
	d := decoder{b: b}
	if ver := d.u8(); ver != snapshotVersion {
		if d.err != nil {
			return fmt.Errorf("acp: registry snapshot: %w", d.err)
		}
		return fmt.Errorf("acp: registry snapshot version %d, want %d", ver, snapshotVersion)
	}
	applied := d.u64()
	n := d.u32()
	// Each record takes at least 4*2+8+1+2*2 bytes; bound n before allocating.
	if d.err == nil && uint64(n)*21 > uint64(len(d.b)) {
		return fmt.Errorf("acp: registry snapshot claims %d records in %d bytes", n, len(d.b))
	}
	vms := make(map[string]*VMRecord, n)
	for i := uint32(0); i < n && d.err == nil; i++ {
		v := &VMRecord{VMID: d.str(), Owner: d.str(), Epoch: d.u64()}
		v.State = MigrationState(d.u8())
		v.Target, v.PrevOwner = d.str(), d.str()
		if d.err == nil && v.State >= stateCount {
			return fmt.Errorf("acp: registry snapshot: vm %q has state %d", v.VMID, v.State)
		}
		vms[v.VMID] = v
	}
	if d.err != nil {
		return fmt.Errorf("acp: registry snapshot: %w", d.err)
	}
	if len(d.b) != 0 {
		return fmt.Errorf("acp: registry snapshot: %d trailing bytes", len(d.b))
	}
	r.vms, r.applied = vms, applied
	return nil
}
