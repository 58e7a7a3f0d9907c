package dwcp

import (
	"bytes"
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"
)

func TestSyntheticDirtyContract(t *testing.T) {
	vm, err := NewSyntheticVM(SyntheticConfig{Size: 1 << 20, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer vm.Close()
	if got := vm.CollectDirty(nil); len(got) != 0 {
		t.Fatalf("fresh guest reports %d dirty pages", len(got))
	}
	page := bytes.Repeat([]byte{7}, vm.PageSize())
	for _, i := range []int{200, 3, 64, 3} {
		if err := vm.WritePage(i, page); err != nil {
			t.Fatal(err)
		}
	}
	if got := vm.CollectDirty(nil); !equalInts(got, []int{3, 64, 200}) {
		t.Fatalf("dirty set %v, want [3 64 200]", got)
	}
	if got := vm.CollectDirty(nil); len(got) != 0 {
		t.Fatalf("collect did not reset: %v", got)
	}
	buf := make([]byte, vm.PageSize())
	if err := vm.ReadPage(64, buf); err != nil || !bytes.Equal(buf, page) {
		t.Fatal("read does not return the written page", err)
	}
	if vm.ReadPage(vm.PageCount(), buf) == nil || vm.WritePage(-1, page) == nil || vm.ReadPage(0, buf[:10]) == nil {
		t.Fatal("out-of-range access accepted")
	}
}

func TestSyntheticWorkloadRatePauseThrottle(t *testing.T) {
	for _, p := range []DirtyPattern{PatternHotSet, PatternUniform, PatternSequential} {
		t.Run(p.String(), func(t *testing.T) {
			vm, err := NewSyntheticVM(SyntheticConfig{Size: 8 << 20, Seed: 2, DirtyRate: 4 << 20, Pattern: p, Workers: 2})
			if err != nil {
				t.Fatal(err)
			}
			defer vm.Close()
			time.Sleep(200 * time.Millisecond) // let the workload run
			if vm.Writes() == 0 || len(vm.CollectDirty(nil)) == 0 {
				t.Fatal("workload wrote nothing")
			}
			vm.Pause(context.Background())
			vm.CollectDirty(nil)
			w := vm.Writes()
			time.Sleep(50 * time.Millisecond)
			if vm.Writes() != w || len(vm.CollectDirty(nil)) != 0 {
				t.Fatal("paused guest kept writing")
			}
			vm.SetThrottle(150)
			if vm.Throttle() != 99 {
				t.Fatalf("throttle %d, want clamped to 99", vm.Throttle())
			}
		})
	}
}

func TestSyntheticContentIsSeeded(t *testing.T) {
	a, _ := NewSyntheticVM(SyntheticConfig{Size: 1 << 20, Seed: 9})
	b, _ := NewSyntheticVM(SyntheticConfig{Size: 1 << 20, Seed: 9})
	c, _ := NewSyntheticVM(SyntheticConfig{Size: 1 << 20, Seed: 10})
	defer a.Close()
	defer b.Close()
	defer c.Close()
	if !bytes.Equal(a.mem, b.mem) || bytes.Equal(a.mem, c.mem) {
		t.Fatal("content does not follow the seed")
	}
	zero := 0
	for i := range a.PageCount() {
		if isZeroPage(a.page(i)) {
			zero++
		}
	}
	if share := float64(zero) / float64(a.PageCount()); share < 0.15 || share > 0.35 {
		t.Fatalf("zero share %.2f, want about 0.25", share)
	}
}

func isZeroPage(p []byte) bool {
	for _, b := range p {
		if b != 0 {
			return false
		}
	}
	return true
}

func TestSyntheticConfigValidate(t *testing.T) {
	for _, c := range []SyntheticConfig{
		{Size: 0},
		{Size: 4097},
		{Size: 1 << 20, PageSize: 1000},
		{Size: 1 << 20, DirtyRate: -1},
		{Size: 1 << 20, HotSetFraction: 2},
		{Size: 1 << 20, Pattern: 9},
	} {
		if err := c.Validate(); err == nil {
			t.Errorf("%+v accepted", c)
		}
	}
}

func TestFileMemory(t *testing.T) {
	dir := t.TempDir()
	dst, err := CreateFileMemory(filepath.Join(dir, "dst.img"), 4096, 16)
	if err != nil {
		t.Fatal(err)
	}
	page := bytes.Repeat([]byte{3}, 4096)
	if err := dst.WritePage(5, page); err != nil {
		t.Fatal("hypervisor write to a paused image:", err)
	}
	if _, err := dst.WriteAt([]byte{1}, 0); !errors.Is(err, ErrPaused) {
		t.Fatalf("guest write to a paused image: %v", err)
	}
	dst.Resume(context.Background())
	dst.CollectDirty(nil)
	if _, err := dst.WriteAt(make([]byte, 5000), 4000); err != nil {
		t.Fatal(err)
	}
	if got := dst.CollectDirty(nil); !equalInts(got, []int{0, 1, 2}) {
		t.Fatalf("dirty %v, want [0 1 2]", got)
	}
	if _, err := dst.WriteAt([]byte{1}, 16*4096); err == nil {
		t.Fatal("write past the end accepted")
	}
	dst.Close()
	src, err := OpenFileMemory(filepath.Join(dir, "dst.img"), 4096)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4096)
	if err := src.ReadPage(5, buf); err != nil || !bytes.Equal(buf, page) {
		t.Fatal("reopened image lost page 5", err)
	}
	src.Close()
	src.Close()
	if _, err := OpenFileMemory(filepath.Join(dir, "missing"), 4096); err == nil {
		t.Fatal("opened a missing image")
	}
}

// TestMigrateFileMemory migrates a file-backed image that a "guest" writes
// into during the migration.
func TestMigrateFileMemory(t *testing.T) {
	dir := t.TempDir()
	img := filepath.Join(dir, "src.img")
	seed, _ := NewSyntheticVM(SyntheticConfig{Size: 2 << 20, Seed: 4})
	mk, err := CreateFileMemory(img, 4096, seed.PageCount())
	if err != nil {
		t.Fatal(err)
	}
	for i := range seed.PageCount() {
		mk.WritePage(i, seed.page(i))
	}
	mk.Sync()
	mk.Close()
	seed.Close()
	src, err := OpenFileMemory(img, 4096)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	var dstMem *FileMemory
	h := newHarness(t, func(c *Config) {
		c.Incoming = func(ctx context.Context, spec IncomingSpec) (IncomingMemory, error) {
			m, err := CreateFileMemory(filepath.Join(dir, "dst.img"), spec.PageSize, spec.PageCount)
			dstMem = m
			return m, err
		}
	})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	guestDone := make(chan struct{})
	go func() { // a guest writing while it can
		defer close(guestDone)
		for i := 0; ctx.Err() == nil; i++ {
			if _, err := src.WriteAt([]byte{byte(i)}, int64(i*977)%(2<<20)); errors.Is(err, ErrPaused) {
				return
			}
		}
	}()
	res, _, err, derr := h.migratePipe(ctx, MigrationRequest{VMID: "file-vm", Memory: src}, nil)
	cancel()
	<-guestDone
	if err != nil || derr != nil || !res.Verified {
		t.Fatal(err, derr)
	}
	a, b := make([]byte, 4096), make([]byte, 4096)
	for i := range src.PageCount() {
		src.ReadPage(i, a)
		dstMem.ReadPage(i, b)
		if !bytes.Equal(a, b) {
			t.Fatalf("page %d differs", i)
		}
	}
	dstMem.Close()
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestSyntheticRefusesMoreThanRAM(t *testing.T) {
	ram := physicalMemory()
	if ram == 0 {
		t.Skip("RAM size unknown here")
	}
	size := (ram + 1<<30) &^ (4096 - 1)
	if _, err := NewIncomingSyntheticVM(IncomingSpec{PageSize: 4096, PageCount: int(size / 4096)}, SyntheticConfig{}); err == nil {
		t.Fatalf("a %d-byte guest on a %d-byte machine was accepted", size, ram)
	}
}
