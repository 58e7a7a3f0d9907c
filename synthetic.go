package dwcp

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"
	"math/rand/v2"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// DirtyPattern is how a synthetic guest chooses the pages it writes.
type DirtyPattern int

const (
	// PatternHotSet sends 90% of writes to a hot set of HotSetFraction of
	// the pages and the rest anywhere: the common shape of real guests
	// (Clark et al.'s writable working set).
	PatternHotSet DirtyPattern = iota
	// PatternUniform writes anywhere with equal probability: the worst case
	// for pre-copy at a given rate.
	PatternUniform
	// PatternSequential sweeps memory in order, like a streaming copy.
	PatternSequential
)

func (p DirtyPattern) String() string {
	switch p {
	case PatternHotSet:
		return "hotset"
	case PatternUniform:
		return "uniform"
	case PatternSequential:
		return "sequential"
	}
	return fmt.Sprintf("DirtyPattern(%d)", int(p))
}

// ParseDirtyPattern accepts "hotset", "uniform" and "sequential".
func ParseDirtyPattern(s string) (DirtyPattern, error) {
	switch s {
	case "hotset", "hot-set", "hot":
		return PatternHotSet, nil
	case "uniform":
		return PatternUniform, nil
	case "sequential", "seq":
		return PatternSequential, nil
	}
	return 0, fmt.Errorf("dwcp: unknown dirty pattern %q (want hotset, uniform or sequential)", s)
}

// ContentMix is the share of each kind of page a synthetic guest starts
// with. The shares are weights; they need not sum to one. The defaults follow
// what measurements of real guests report: about a quarter zero pages
// (27% in the POWER8 sample of anchors.md), a tenth duplicates of a small pool
// (shared libraries, page cache), text and structured data that compress
// 2-4x, and a random (already compressed or encrypted) remainder.
type ContentMix struct {
	Zero       float64
	Duplicate  float64
	Text       float64
	Structured float64
	Random     float64
}

// DefaultContentMix returns the mix described on ContentMix.
func DefaultContentMix() ContentMix {
	return ContentMix{Zero: 0.25, Duplicate: 0.10, Text: 0.20, Structured: 0.30, Random: 0.15}
}

// SyntheticConfig configures a SyntheticVM.
type SyntheticConfig struct {
	// Size is the guest memory in bytes, a multiple of PageSize.
	Size int64
	// PageSize defaults to 4096.
	PageSize int
	// Seed makes the content and the write sequence reproducible.
	Seed uint64
	// Mix is the initial content; the zero value means DefaultContentMix.
	Mix ContentMix
	// DirtyRate is how many bytes of pages the guest dirties per second
	// (page granularity, as QEMU and KubeVirt count it). 0 is an idle guest.
	DirtyRate float64
	// Pattern chooses which pages are written.
	Pattern DirtyPattern
	// HotSetFraction is the share of pages in the hot set (PatternHotSet);
	// defaults to 0.05.
	HotSetFraction float64
	// WriteBytes is how much of a page one write changes (a small store of
	// WriteBytes at a random offset, so delta encoding has something to
	// find); defaults to 64, at most PageSize.
	WriteBytes int
	// Workers is the number of dirtying goroutines (vCPUs); defaults to 1.
	Workers int
}

// Validate reports the first bad value.
func (c SyntheticConfig) Validate() error {
	ps := c.PageSize
	if ps == 0 {
		ps = 4096
	}
	if err := validPageSize(ps); err != nil {
		return err
	}
	if c.Size <= 0 || c.Size%int64(ps) != 0 {
		return fmt.Errorf("dwcp: synthetic VM size %d is not a positive multiple of the page size %d", c.Size, ps)
	}
	if c.Size/int64(ps) > maxPageCount {
		return fmt.Errorf("dwcp: synthetic VM size %d has more than %d pages", c.Size, int64(maxPageCount))
	}
	if int64(int(c.Size)) != c.Size {
		return fmt.Errorf("dwcp: synthetic VM size %d does not fit this platform's int", c.Size)
	}
	if c.DirtyRate < 0 {
		return fmt.Errorf("dwcp: synthetic VM dirty rate %v is negative", c.DirtyRate)
	}
	if c.HotSetFraction < 0 || c.HotSetFraction > 1 {
		return fmt.Errorf("dwcp: hot set fraction %v is outside [0, 1]", c.HotSetFraction)
	}
	if c.WriteBytes < 0 || c.WriteBytes > ps {
		return fmt.Errorf("dwcp: write size %d is outside [0, page size %d]", c.WriteBytes, ps)
	}
	if c.Workers < 0 || c.Workers > 1024 {
		return fmt.Errorf("dwcp: synthetic VM workers %d is outside [0, 1024]", c.Workers)
	}
	switch c.Pattern {
	case PatternHotSet, PatternUniform, PatternSequential:
	default:
		return fmt.Errorf("dwcp: unknown dirty pattern %d", int(c.Pattern))
	}
	m := c.Mix
	if m.Zero < 0 || m.Duplicate < 0 || m.Text < 0 || m.Structured < 0 || m.Random < 0 {
		return fmt.Errorf("dwcp: content mix %+v has a negative share", m)
	}
	return nil
}

func (c SyntheticConfig) withDefaults() SyntheticConfig {
	if c.PageSize == 0 {
		c.PageSize = 4096
	}
	if c.Mix == (ContentMix{}) {
		c.Mix = DefaultContentMix()
	}
	if c.HotSetFraction == 0 {
		c.HotSetFraction = 0.05
	}
	if c.WriteBytes == 0 {
		c.WriteBytes = 64
	}
	if c.Workers == 0 {
		c.Workers = 1
	}
	return c
}

// lockStripes bounds the lock table; a page maps to stripe index%lockStripes.
const lockStripes = 1024

// SyntheticVM is an in-process guest: a memory of seeded content and, while
// it runs, a workload that dirties pages at a configured rate and pattern in
// its own goroutines. It implements GuestMemory, Throttler and
// IncomingMemory, so the same type serves as the source and the destination
// of a migration. All methods are safe for concurrent use; Close stops the
// workload and waits for it.
type SyntheticVM struct {
	cfg       SyntheticConfig
	pageSize  int
	pageCount int
	mem       []byte
	dirty     []atomic.Uint64
	stripes   [lockStripes]sync.Mutex

	throttle atomic.Int32
	writes   atomic.Int64

	mu      sync.Mutex // guards running, closed, stop, wg
	running bool
	closed  bool
	stop    chan struct{}
	wg      sync.WaitGroup
	// gate is held by a worker while it writes a batch, and by Pause while
	// it flips running: after Pause returns no write is in flight.
	gate sync.RWMutex
}

// NewSyntheticVM allocates the guest, fills it with the configured content
// mix and starts its workload (if DirtyRate > 0).
func NewSyntheticVM(cfg SyntheticConfig) (*SyntheticVM, error) {
	vm, err := newSyntheticVM(cfg)
	if err != nil {
		return nil, err
	}
	vm.fill()
	if err := vm.Resume(context.Background()); err != nil {
		return nil, err
	}
	return vm, nil
}

// NewIncomingSyntheticVM allocates a zeroed, paused guest of the offered
// shape, for the destination of a migration. Its workload (cfg's dirty rate
// and pattern; Size and PageSize come from spec) starts when the migration
// resumes it.
func NewIncomingSyntheticVM(spec IncomingSpec, workload SyntheticConfig) (*SyntheticVM, error) {
	workload.Size = spec.Bytes()
	workload.PageSize = spec.PageSize
	return newSyntheticVM(workload)
}

func newSyntheticVM(cfg SyntheticConfig) (*SyntheticVM, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	// The size may come from a peer's hello: refuse what this machine cannot
	// hold instead of dying in the allocator.
	if ram := physicalMemory(); ram > 0 && cfg.Size > ram {
		return nil, fmt.Errorf("dwcp: synthetic VM of %d bytes exceeds this machine's %d bytes of RAM", cfg.Size, ram)
	}
	cfg = cfg.withDefaults()
	n := int(cfg.Size / int64(cfg.PageSize))
	return &SyntheticVM{
		cfg:       cfg,
		pageSize:  cfg.PageSize,
		pageCount: n,
		mem:       make([]byte, cfg.Size),
		dirty:     make([]atomic.Uint64, (n+63)/64),
	}, nil
}

// PageSize implements GuestMemory.
func (vm *SyntheticVM) PageSize() int { return vm.pageSize }

// PageCount implements GuestMemory.
func (vm *SyntheticVM) PageCount() int { return vm.pageCount }

// Writes is the number of page writes the workload has made.
func (vm *SyntheticVM) Writes() int64 { return vm.writes.Load() }

// Throttle is the current auto-converge throttle in percent.
func (vm *SyntheticVM) Throttle() int { return int(vm.throttle.Load()) }

// SetThrottle implements Throttler.
func (vm *SyntheticVM) SetThrottle(percent int) {
	vm.throttle.Store(int32(min(max(percent, 0), 99)))
}

func (vm *SyntheticVM) page(i int) []byte {
	off := i * vm.pageSize
	return vm.mem[off : off+vm.pageSize : off+vm.pageSize]
}

// ReadPage implements GuestMemory.
func (vm *SyntheticVM) ReadPage(index int, dst []byte) error {
	if index < 0 || index >= vm.pageCount {
		return fmt.Errorf("dwcp: page %d out of range [0, %d)", index, vm.pageCount)
	}
	if len(dst) != vm.pageSize {
		return fmt.Errorf("dwcp: read buffer of %d bytes for %d-byte pages", len(dst), vm.pageSize)
	}
	s := &vm.stripes[index%lockStripes]
	s.Lock()
	copy(dst, vm.page(index))
	s.Unlock()
	return nil
}

// WritePage implements IncomingMemory. It is the hypervisor's write, not the
// guest's, so it works while the guest is paused; it marks the page dirty.
func (vm *SyntheticVM) WritePage(index int, data []byte) error {
	if index < 0 || index >= vm.pageCount {
		return fmt.Errorf("dwcp: page %d out of range [0, %d)", index, vm.pageCount)
	}
	if len(data) != vm.pageSize {
		return fmt.Errorf("dwcp: write of %d bytes to a %d-byte page", len(data), vm.pageSize)
	}
	s := &vm.stripes[index%lockStripes]
	s.Lock()
	copy(vm.page(index), data)
	s.Unlock()
	vm.markDirty(index)
	return nil
}

func (vm *SyntheticVM) markDirty(i int) {
	w := &vm.dirty[i/64]
	bit := uint64(1) << (i % 64)
	if w.Load()&bit == 0 {
		w.Or(bit)
	}
}

// CollectDirty implements GuestMemory.
func (vm *SyntheticVM) CollectDirty(dst []int) []int {
	for wi := range vm.dirty {
		w := &vm.dirty[wi]
		if w.Load() == 0 {
			continue
		}
		bitsSet := w.Swap(0)
		for bitsSet != 0 {
			b := bits.TrailingZeros64(bitsSet)
			dst = append(dst, wi*64+b)
			bitsSet &^= 1 << b
		}
	}
	return dst
}

// Pause implements GuestMemory: it stops the workload; no write is in
// flight when it returns.
func (vm *SyntheticVM) Pause(ctx context.Context) error {
	vm.mu.Lock()
	defer vm.mu.Unlock()
	if !vm.running {
		return nil
	}
	vm.gate.Lock()
	vm.running = false
	close(vm.stop)
	vm.gate.Unlock()
	vm.wg.Wait()
	return nil
}

// Resume implements GuestMemory and IncomingMemory: it (re)starts the
// workload.
func (vm *SyntheticVM) Resume(ctx context.Context) error {
	vm.mu.Lock()
	defer vm.mu.Unlock()
	if vm.closed {
		return errors.New("dwcp: synthetic VM is closed")
	}
	if vm.running {
		return nil
	}
	vm.running = true
	vm.stop = make(chan struct{})
	if vm.cfg.DirtyRate > 0 {
		for w := range vm.cfg.Workers {
			vm.wg.Add(1)
			go vm.dirtier(w, vm.stop)
		}
	}
	return nil
}

// Running reports whether the guest runs (is not paused or closed).
func (vm *SyntheticVM) Running() bool {
	vm.mu.Lock()
	defer vm.mu.Unlock()
	return vm.running
}

// Discard implements IncomingMemory: it stops the guest and frees its
// memory.
func (vm *SyntheticVM) Discard() error {
	err := vm.Close()
	vm.mu.Lock()
	vm.mem = nil
	vm.mu.Unlock()
	return err
}

// Close stops the workload and waits for it. It is safe to call twice.
func (vm *SyntheticVM) Close() error {
	_ = vm.Pause(context.Background())
	vm.mu.Lock()
	vm.closed = true
	vm.mu.Unlock()
	return nil
}

// dirtyTick is how often a worker catches up with its rate; a finer tick
// only burns CPU, a coarser one makes the writes burstier.
const dirtyTick = 2 * time.Millisecond

func (vm *SyntheticVM) dirtier(worker int, stop <-chan struct{}) {
	defer vm.wg.Done()
	rng := rand.New(rand.NewPCG(vm.cfg.Seed, uint64(worker)+0x9e3779b97f4a7c15))
	pagesPerSec := vm.cfg.DirtyRate / float64(vm.pageSize) / float64(vm.cfg.Workers)
	hot := max(1, int(float64(vm.pageCount)*vm.cfg.HotSetFraction))
	hotBase := int(rng.Uint64N(uint64(vm.pageCount - hot + 1)))
	cursor := worker * (vm.pageCount / vm.cfg.Workers)
	ticker := time.NewTicker(dirtyTick)
	defer ticker.Stop()
	last := time.Now()
	var owed float64
	chunk := make([]byte, vm.cfg.WriteBytes)
	for {
		select {
		case <-stop:
			return
		case now := <-ticker.C:
			elapsed := now.Sub(last).Seconds()
			last = now
			// A worker that was descheduled for long does not burst: at most
			// 50 ms of writes are owed.
			elapsed = min(elapsed, 0.05)
			factor := float64(100-vm.throttle.Load()) / 100
			owed += pagesPerSec * elapsed * factor
			n := int(owed)
			owed -= float64(n)
			if n == 0 {
				continue
			}
			vm.gate.RLock()
			for range n {
				var p int
				switch vm.cfg.Pattern {
				case PatternHotSet:
					if rng.Uint32N(10) < 9 {
						p = hotBase + int(rng.Uint64N(uint64(hot)))
					} else {
						p = int(rng.Uint64N(uint64(vm.pageCount)))
					}
				case PatternUniform:
					p = int(rng.Uint64N(uint64(vm.pageCount)))
				case PatternSequential:
					p = cursor
					cursor = (cursor + 1) % vm.pageCount
				}
				fillRandom(rng, chunk)
				off := int(rng.Uint64N(uint64(vm.pageSize - len(chunk) + 1)))
				s := &vm.stripes[p%lockStripes]
				s.Lock()
				copy(vm.page(p)[off:], chunk)
				s.Unlock()
				vm.markDirty(p)
			}
			vm.gate.RUnlock()
			vm.writes.Add(int64(n))
		}
	}
}

func fillRandom(rng *rand.Rand, b []byte) {
	for len(b) >= 8 {
		binary.LittleEndian.PutUint64(b, rng.Uint64())
		b = b[8:]
	}
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
}

// fill writes the initial content in parallel; page i's content depends only
// on (Seed, i), so it is reproducible whatever the parallelism.
func (vm *SyntheticVM) fill() {
	mix := vm.cfg.Mix
	total := mix.Zero + mix.Duplicate + mix.Text + mix.Structured + mix.Random
	if total == 0 {
		return
	}
	cut := [4]float64{
		mix.Zero / total,
		(mix.Zero + mix.Duplicate) / total,
		(mix.Zero + mix.Duplicate + mix.Text) / total,
		(mix.Zero + mix.Duplicate + mix.Text + mix.Structured) / total,
	}
	const dupPool = 64
	pool := make([][]byte, dupPool)
	for i := range pool {
		pool[i] = make([]byte, vm.pageSize)
		rng := rand.New(rand.NewPCG(vm.cfg.Seed^0xd1b54a32d192ed03, uint64(i)))
		fillText(rng, pool[i])
	}
	workers := runtime.GOMAXPROCS(0)
	var wg sync.WaitGroup
	per := (vm.pageCount + workers - 1) / workers
	for w := range workers {
		lo, hi := w*per, min((w+1)*per, vm.pageCount)
		if lo >= hi {
			break
		}
		wg.Go(func() {
			for i := lo; i < hi; i++ {
				rng := rand.New(rand.NewPCG(vm.cfg.Seed, uint64(i)))
				u := rng.Float64()
				p := vm.page(i)
				switch {
				case u < cut[0]:
				case u < cut[1]:
					copy(p, pool[rng.IntN(dupPool)])
				case u < cut[2]:
					fillText(rng, p)
				case u < cut[3]:
					fillStructured(rng, p, i)
				default:
					fillRandom(rng, p)
				}
			}
		})
	}
	wg.Wait()
}

var words = []string{
	"the", "kernel", "page", "memory", "migration", "process", "thread", "socket",
	"buffer", "cache", "request", "response", "error", "value", "index", "table",
	"session", "user", "config", "server", "client", "record", "struct", "return",
	"function", "static", "const", "import", "package", "system", "status", "data",
}

func fillText(rng *rand.Rand, b []byte) {
	i := 0
	for i < len(b) {
		w := words[rng.IntN(len(words))]
		i += copy(b[i:], w)
		if i < len(b) {
			if rng.IntN(12) == 0 {
				b[i] = '\n'
			} else {
				b[i] = ' '
			}
			i++
		}
	}
}

// fillStructured writes an array of 32-byte records with small, slowly
// varying fields, the shape of heap objects and kernel tables.
func fillStructured(rng *rand.Rand, b []byte, page int) {
	base := uint64(page) << 12
	for off := 0; off+32 <= len(b); off += 32 {
		binary.LittleEndian.PutUint64(b[off:], base+uint64(off))
		binary.LittleEndian.PutUint32(b[off+8:], uint32(rng.IntN(256)))
		binary.LittleEndian.PutUint32(b[off+12:], 0xffff0000)
		binary.LittleEndian.PutUint64(b[off+16:], 0x00007f0000000000+uint64(rng.IntN(1<<16))*64)
		binary.LittleEndian.PutUint64(b[off+24:], 0)
	}
}
