package ass

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

func openDurable(t *testing.T, dir string, net *MemNetwork) *Replica {
	t.Helper()
	cfg := DefaultConfig("solo", "")
	cfg.Transport = net.Endpoint("solo")
	cfg.DataDir = dir
	r, err := NewReplica(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func writeKeys(t *testing.T, r *Replica, from, to int) {
	t.Helper()
	for i := from; i < to; i++ {
		if err := r.SetRegister(context.Background(), fmt.Sprintf("k%04d", i), []byte(fmt.Sprint("value", i))); err != nil {
			t.Fatal(err)
		}
	}
}

func stateOf(r *Replica) []byte {
	var b []byte
	r.View(func(s *ORMap) { b = Marshal(s) })
	return b
}

func TestDurableRestartWithSnapshot(t *testing.T) {
	dir, net := t.TempDir(), NewMemNetwork(1)
	r := openDurable(t, dir, net)
	writeKeys(t, r, 0, 100)
	if err := r.Snapshot(context.Background()); err != nil {
		t.Fatal(err)
	}
	writeKeys(t, r, 100, 200)
	if err := r.Remove(context.Background(), "k0005"); err != nil {
		t.Fatal(err)
	}
	want := stateOf(r)
	r.Close()
	r.Close() // twice is fine
	logs, _ := logGenerations(dir)
	if len(logs) != 1 || logs[0] != 1 {
		t.Fatalf("logs after snapshot: %v, want only generation 1", logs)
	}
	r2 := openDurable(t, dir, net)
	defer r2.Close()
	if !bytes.Equal(stateOf(r2), want) {
		t.Fatal("recovered state differs")
	}
	if _, ok := r2.Register("k0005"); ok {
		t.Fatal("removed key came back")
	}
	// New writes after recovery must not reuse dots of recovered ones.
	writeKeys(t, r2, 0, 1)
	v, _ := r2.Register("k0000")
	if string(v) != "value0" {
		t.Fatalf("k0000 = %q", v)
	}
}

func TestTornLogTail(t *testing.T) {
	dir, net := t.TempDir(), NewMemNetwork(1)
	r := openDurable(t, dir, net)
	writeKeys(t, r, 0, 50)
	want := stateOf(r)
	r.Close()
	path := filepath.Join(dir, logName(0))
	for _, tail := range [][]byte{
		{0, 0, 1, 0, 1, 2, 3, 4, 5, 6}, // a record cut short by a crash
		{0, 0},                         // a header cut short
		make([]byte, 4096),             // zeroed blocks after a crash
	} {
		f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		f.Write(tail)
		f.Close()
		r2 := openDurable(t, dir, net)
		if !bytes.Equal(stateOf(r2), want) {
			t.Fatal("state after torn tail differs")
		}
		r2.Close()
	}
}

func TestCorruptLogMiddleIsAnError(t *testing.T) {
	dir, net := t.TempDir(), NewMemNetwork(1)
	r := openDurable(t, dir, net)
	writeKeys(t, r, 0, 20)
	r.Close()
	path := filepath.Join(dir, logName(0))
	b, _ := os.ReadFile(path)
	b[recordHeader+2] ^= 0xff // inside the first record
	os.WriteFile(path, b, 0o644)
	cfg := DefaultConfig("solo", "")
	cfg.Transport = net.Endpoint("solo")
	cfg.DataDir = dir
	if _, err := NewReplica(cfg, nil); err == nil {
		t.Fatal("a corrupt record followed by data was accepted")
	}
}

func TestCrashBetweenRotateAndSnapshot(t *testing.T) {
	dir := t.TempDir()
	s, _, err := openStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	a, b := sampleState(), NewORMap()
	b.Update("z", "later", TypeGCounter, func(v CRDT) CRDT { return v.(*GCounter).Inc("z", 1) })
	s.append(Marshal(a))
	if _, err := s.rotate(); err != nil {
		t.Fatal(err)
	}
	s.append(Marshal(b))
	s.syncAll()
	s.close() // crash: the snapshot for generation 1 was never written
	_, got, err := openStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	want := a.Clone()
	want.Merge(b)
	if !Equal(got, want) {
		t.Fatal("state recovered from two logs differs")
	}
}

func TestAutomaticSnapshot(t *testing.T) {
	c := newSimCluster(t, 1, 2, true)
	for _, r := range c.reps {
		r.cfg.SnapshotBytes = 4096
	}
	ctx := context.Background()
	for i := 0; i < 200; i++ {
		if err := c.reps[i%2].SetRegister(ctx, fmt.Sprintf("k%03d", i), []byte("some value")); err != nil {
			t.Fatal(err)
		}
		if i%20 == 0 {
			c.round()
		}
	}
	for i := 0; i < 10; i++ {
		c.round()
	}
	if !c.converged() || !c.identical() {
		t.Fatal("not converged")
	}
	for i, dir := range c.dirs {
		gens, _ := logGenerations(dir)
		if _, err := os.Stat(filepath.Join(dir, snapshotName)); err != nil || len(gens) == 0 || gens[0] == 0 {
			t.Fatalf("replica %d: no automatic snapshot (logs %v, %v)", i, gens, err)
		}
	}
	want := stateOf(c.reps[0])
	c.reps[0].Close()
	r := openDurable(t, c.dirs[0], NewMemNetwork(2))
	defer r.Close()
	if !bytes.Equal(stateOf(r), want) {
		t.Fatal("state recovered from snapshot and logs differs")
	}
}
