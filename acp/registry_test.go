package acp

import (
	"bytes"
	"errors"
	"testing"
)

func TestRegistryTransitions(t *testing.T) {
	type step struct {
		cmd     Command
		wantErr error
		owner   string
		epoch   uint64
		state   MigrationState
	}
	plan := func(from, to string) Command { return Command{Op: OpPlan, VMID: "vm", From: from, To: to} }
	hand := func(from, to string) Command { return Command{Op: OpHandover, VMID: "vm", From: from, To: to} }
	adv := func(s MigrationState) Command { return Command{Op: OpAdvance, VMID: "vm", Epoch: uint64(s)} }
	abort := Command{Op: OpAbort, VMID: "vm"}
	resume := func(host string, e uint64) Command { return Command{Op: OpResume, VMID: "vm", From: host, Epoch: e} }
	tests := []struct {
		name  string
		steps []step
	}{
		{"full migration", []step{
			{plan("a", "b"), nil, "a", 1, StatePlanned},
			{adv(StatePrecopy), nil, "a", 1, StatePrecopy},
			{adv(StateSwitchover), nil, "a", 1, StateSwitchover},
			{hand("a", "b"), nil, "b", 2, StateCommitted},
			{resume("b", 2), nil, "b", 2, StateCommitted},
			{resume("a", 1), ErrNotOwner, "b", 2, StateCommitted},
			{resume("b", 1), ErrStaleEpoch, "b", 2, StateCommitted},
		}},
		{"retries are idempotent", []step{
			{plan("a", "b"), nil, "a", 1, StatePlanned},
			{plan("a", "b"), nil, "a", 1, StatePlanned},
			{hand("a", "b"), nil, "b", 2, StateCommitted},
			{hand("a", "b"), nil, "b", 2, StateCommitted},
		}},
		{"abort keeps owner and epoch", []step{
			{plan("a", "b"), nil, "a", 1, StatePlanned},
			{abort, nil, "a", 1, StateAborted},
			{abort, nil, "a", 1, StateAborted},
			{resume("a", 1), nil, "a", 1, StateAborted},
			{plan("a", "c"), nil, "a", 1, StatePlanned},
		}},
		{"only the owner plans or hands over", []step{
			{plan("a", "b"), nil, "a", 1, StatePlanned},
			{plan("c", "b"), ErrNotOwner, "a", 1, StatePlanned},
			{hand("c", "b"), ErrNotOwner, "a", 1, StatePlanned},
			{plan("a", "c"), ErrMigrationActive, "a", 1, StatePlanned},
			{hand("a", "c"), ErrMigrationActive, "a", 1, StatePlanned},
		}},
		{"states only move forward", []step{
			{plan("a", "b"), nil, "a", 1, StatePlanned},
			{adv(StateSwitchover), ErrBadTransition, "a", 1, StatePlanned},
			{adv(StatePrecopy), nil, "a", 1, StatePrecopy},
			{adv(StateCommitted), ErrBadTransition, "a", 1, StatePrecopy},
			{hand("a", "b"), nil, "b", 2, StateCommitted},
			{adv(StatePrecopy), ErrNoMigration, "b", 2, StateCommitted},
			{abort, ErrNoMigration, "b", 2, StateCommitted},
		}},
		{"epoch rises on every handover", []step{
			{hand("a", "b"), ErrUnknownVM, "", 0, StateIdle},
			{Command{Op: OpRegister, VMID: "vm", From: "a"}, nil, "a", 1, StateIdle},
			{Command{Op: OpRegister, VMID: "vm", From: "z"}, ErrNotOwner, "a", 1, StateIdle},
			{hand("a", "b"), nil, "b", 2, StateCommitted},
			{hand("b", "a"), nil, "a", 3, StateCommitted},
			{hand("a", "b"), nil, "b", 4, StateCommitted},
			{resume("b", 3), ErrStaleEpoch, "b", 4, StateCommitted},
		}},
		{"bad commands", []step{
			{plan("a", "a"), ErrBadCommand, "", 0, StateIdle},
			{Command{Op: OpPlan, VMID: "", From: "a", To: "b"}, ErrBadCommand, "", 0, StateIdle},
			{abort, ErrUnknownVM, "", 0, StateIdle},
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := NewRegistry()
			for i, s := range tc.steps {
				got := r.ApplyCommand(s.cmd)
				if !errors.Is(got.Err, s.wantErr) || (got.Err == nil) != (s.wantErr == nil) {
					t.Fatalf("step %d %s: err %v, want %v", i, s.cmd.Op, got.Err, s.wantErr)
				}
				if got.Owner != s.owner || got.Epoch != s.epoch || got.State != s.state {
					t.Fatalf("step %d %s: got %s/%d/%s, want %s/%d/%s", i, s.cmd.Op, got.Owner, got.Epoch, got.State, s.owner, s.epoch, s.state)
				}
			}
		})
	}
}

func TestRegistrySnapshotRoundTrip(t *testing.T) {
	r := NewRegistry()
	for _, c := range []Command{
		{Op: OpPlan, VMID: "vm-1", From: "a", To: "b"},
		{Op: OpHandover, VMID: "vm-1", From: "a", To: "b"},
		{Op: OpRegister, VMID: "vm-2", From: "c"},
		{Op: OpPlan, VMID: "vm-3", From: "c", To: "d"},
	} {
		b, err := EncodeCommand(c)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := DecodeResult(r.Apply(b)); err != nil {
			t.Fatal(err)
		}
	}
	snap := r.Snapshot()
	r2 := NewRegistry()
	if err := r2.Restore(snap); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(snap, r2.Snapshot()) || r.Digest() != r2.Digest() {
		t.Fatal("snapshot does not round-trip")
	}
	if v, _ := r2.Get("vm-1"); v.Owner != "b" || v.Epoch != 2 || v.PrevOwner != "a" {
		t.Fatalf("restored %+v", v)
	}
	for _, bad := range [][]byte{nil, {9}, snap[:len(snap)-1], append(append([]byte(nil), snap...), 0)} {
		if err := NewRegistry().Restore(bad); err == nil {
			t.Errorf("Restore(%d bytes) accepted corrupt input", len(bad))
		}
	}
}

func TestCommandCodec(t *testing.T) {
	c := Command{Op: OpResume, VMID: "vm-7", From: "host-a", To: "", Epoch: 42}
	b, err := EncodeCommand(c)
	if err != nil {
		t.Fatal(err)
	}
	got, err := DecodeCommand(b)
	if err != nil || got != c {
		t.Fatalf("round trip: %+v %v", got, err)
	}
	corrupt := append([]byte(nil), b...)
	corrupt[10] ^= 1
	tests := []struct {
		name string
		in   []byte
	}{
		{"empty", nil},
		{"truncated", b[:len(b)-1]},
		{"bit flip", corrupt},
		{"bad version", append([]byte{'A', 'C', 9}, b[3:]...)},
		{"result as command", EncodeResult(Result{Owner: "x"})},
	}
	for _, tc := range tests {
		if _, err := DecodeCommand(tc.in); err == nil {
			t.Errorf("%s: decoded", tc.name)
		}
	}
	if _, err := EncodeCommand(Command{Op: OpPlan, VMID: string(make([]byte, 2000))}); err == nil {
		t.Error("encoded an oversized vm id")
	}
	// A corrupt command is a committed refusal, never a panic.
	if res, err := DecodeResult(NewRegistry().Apply(corrupt)); err != nil || !errors.Is(res.Err, ErrBadCommand) {
		t.Fatalf("corrupt command: %+v %v", res, err)
	}
}

func FuzzDecodeCommand(f *testing.F) {
	for _, c := range []Command{
		{Op: OpPlan, VMID: "vm", From: "a", To: "b"},
		{Op: OpResume, VMID: "vm", From: "a", Epoch: 7},
		{Op: OpAdvance, VMID: "v", Epoch: uint64(StatePrecopy)},
	} {
		b, _ := EncodeCommand(c)
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := DecodeCommand(b)
		if err != nil {
			return
		}
		re, err := EncodeCommand(c)
		if err != nil || !bytes.Equal(re, b) {
			t.Fatalf("accepted input does not re-encode identically: %v", err)
		}
		NewRegistry().ApplyCommand(c)
	})
}

func FuzzDecodeResult(f *testing.F) {
	f.Add(EncodeResult(Result{Owner: "host", Epoch: 3, State: StateCommitted}))
	f.Add(EncodeResult(Result{Err: ErrStaleEpoch, Owner: "h", Epoch: 9}))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := DecodeResult(b)
		if err != nil {
			return
		}
		if !bytes.Equal(EncodeResult(r), b) {
			t.Fatal("accepted result does not re-encode identically")
		}
	})
}

func FuzzRegistryRestore(f *testing.F) {
	r := NewRegistry()
	r.ApplyCommand(Command{Op: OpPlan, VMID: "vm", From: "a", To: "b"})
	r.ApplyCommand(Command{Op: OpRegister, VMID: "vm2", From: "c"})
	f.Add(r.Snapshot())
	f.Add(NewRegistry().Snapshot())
	f.Fuzz(func(t *testing.T, b []byte) {
		r := NewRegistry()
		if err := r.Restore(b); err != nil {
			return
		}
		if !bytes.Equal(r.Snapshot(), b) {
			// Accepted snapshots are canonical only if sorted; re-restoring
			// the re-encoding must give the same state.
			r2 := NewRegistry()
			if err := r2.Restore(r.Snapshot()); err != nil || r2.Digest() != r.Digest() {
				t.Fatalf("restore is not stable: %v", err)
			}
		}
	})
}
