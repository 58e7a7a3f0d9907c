package hde

import (
	"encoding/binary"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
)

// PageClass is the kind of content the corpus generator put in a page.
type PageClass uint8

// Page classes of the synthetic corpus.
const (
	// ClassZero: a page of zeros (never touched, or freed and cleared).
	ClassZero PageClass = iota
	// ClassDuplicate: a copy of one of a few shared pages (shared libraries,
	// page cache of the same file, identical guest kernels).
	ClassDuplicate
	// ClassText: kernel log and string-table text: ASCII lines with numbers
	// and hex addresses, NUL-separated symbol names.
	ClassText
	// ClassCode: x86-64-like machine code: prologues, moves, calls with
	// near relative targets, NOP and INT3 padding.
	ClassCode
	// ClassHeap: arrays of structs: 8-byte pointers into one mapping,
	// small integers, flags, zero padding, freed (zeroed) records.
	ClassHeap
	// ClassRandom: incompressible bytes (encrypted or compressed data).
	ClassRandom
	numClasses
)

func (c PageClass) String() string {
	switch c {
	case ClassZero:
		return "zero"
	case ClassDuplicate:
		return "duplicate"
	case ClassText:
		return "text"
	case ClassCode:
		return "code"
	case ClassHeap:
		return "heap"
	case ClassRandom:
		return "random"
	}
	return "PageClass(" + strconv.Itoa(int(c)) + ")"
}

// CorpusMix is the share of each class among the corpus's pages; shares are
// normalised by their sum.
type CorpusMix struct {
	Zero, Duplicate, Text, Code, Heap, Random float64
}

// DefaultCorpusMix is 30% zero (27% were zero in a published POWER8 guest
// sample), 10% duplicate, 15% text, 15% code, 20% heap, 10% incompressible.
func DefaultCorpusMix() CorpusMix {
	return CorpusMix{Zero: 0.30, Duplicate: 0.10, Text: 0.15, Code: 0.15, Heap: 0.20, Random: 0.10}
}

func (m CorpusMix) shares() [numClasses]float64 {
	return [numClasses]float64{m.Zero, m.Duplicate, m.Text, m.Code, m.Heap, m.Random}
}

// CorpusConfig configures a synthetic VM memory corpus.
type CorpusConfig struct {
	// Seed makes the corpus reproducible: equal configs give equal bytes.
	Seed uint64
	// Pages is the memory size in pages. Default 8192 (32 MiB of 4 KiB pages).
	Pages int
	// PageSize in bytes, a multiple of 64 from 512. Default 4096.
	PageSize int
	// Mix of page classes. Default DefaultCorpusMix.
	Mix CorpusMix
	// RunPages is the mean length of a run of same-class pages (memory is
	// laid out in regions, not page by page). Default 16.
	RunPages int
	// DuplicateSources is how many distinct contents duplicate pages copy.
	// Default 32.
	DuplicateSources int
	// DirtyFraction is the share of all pages written between two rounds.
	// Default 0.05.
	DirtyFraction float64
	// HotFraction is the share of dirty pages drawn from a fixed working set
	// (so the same pages are dirtied round after round); the rest are drawn
	// uniformly. Default 0.8.
	HotFraction float64
	// SmallEditFraction is the share of dirty non-zero pages that change by
	// 1 to 8 words (counters, pointers, flags, a few characters). Default 0.85.
	SmallEditFraction float64
	// FreeFraction is the share of dirty non-zero pages freed to zeros.
	// Default 0.05. The rest are rewritten with fresh content of their class;
	// dirty zero pages become newly allocated, sparsely filled heap pages.
	FreeFraction float64
}

// DefaultCorpusConfig returns the configuration described on each field.
func DefaultCorpusConfig(seed uint64) CorpusConfig {
	return CorpusConfig{
		Seed: seed, Pages: 8192, PageSize: 4096, Mix: DefaultCorpusMix(), RunPages: 16,
		DuplicateSources: 32, DirtyFraction: 0.05, HotFraction: 0.8, SmallEditFraction: 0.85, FreeFraction: 0.05,
	}
}

// Validate reports the first invalid field.
func (c CorpusConfig) Validate() error {
	switch {
	case c.Pages < 1:
		return fmt.Errorf("hde: corpus Pages %d must be at least 1", c.Pages)
	case c.PageSize < 512 || c.PageSize%64 != 0:
		return fmt.Errorf("hde: corpus PageSize %d must be a multiple of 64 from 512", c.PageSize)
	case c.RunPages < 1:
		return fmt.Errorf("hde: corpus RunPages %d must be at least 1", c.RunPages)
	case c.DuplicateSources < 1:
		return fmt.Errorf("hde: corpus DuplicateSources %d must be at least 1", c.DuplicateSources)
	}
	var sum float64
	for _, s := range c.Mix.shares() {
		if s < 0 || math.IsNaN(s) {
			return fmt.Errorf("hde: corpus Mix %+v has a negative share", c.Mix)
		}
		sum += s
	}
	if !(sum > 0) {
		return fmt.Errorf("hde: corpus Mix %+v sums to %g", c.Mix, sum)
	}
	for name, f := range map[string]float64{"DirtyFraction": c.DirtyFraction, "HotFraction": c.HotFraction, "SmallEditFraction": c.SmallEditFraction, "FreeFraction": c.FreeFraction} {
		if !(f >= 0 && f <= 1) {
			return fmt.Errorf("hde: corpus %s %g must be in [0, 1]", name, f)
		}
	}
	if c.SmallEditFraction+c.FreeFraction > 1 {
		return fmt.Errorf("hde: corpus SmallEditFraction %g + FreeFraction %g exceed 1", c.SmallEditFraction, c.FreeFraction)
	}
	return nil
}

// Corpus is a reproducible synthetic VM memory image that can be advanced
// round by round, like a guest running during pre-copy. Not safe for
// concurrent use.
type Corpus struct {
	cfg     CorpusConfig
	rng     *rand.Rand
	mem     []byte
	class   []PageClass
	sources [][]byte
	hot     []int
	round   int
	heapTop uint64 // high bits of this guest's heap pointers
}

// NewCorpus generates round 0 of a corpus.
func NewCorpus(cfg CorpusConfig) (*Corpus, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	c := &Corpus{
		cfg:     cfg,
		rng:     rand.New(rand.NewPCG(cfg.Seed, cfg.Seed^0x9e3779b97f4a7c15)),
		mem:     make([]byte, cfg.Pages*cfg.PageSize),
		class:   make([]PageClass, cfg.Pages),
		heapTop: 0x00007f0000000000,
	}
	c.heapTop |= uint64(c.rng.IntN(1<<12)) << 28
	for i := 0; i < cfg.DuplicateSources; i++ {
		p := make([]byte, cfg.PageSize)
		if i%2 == 0 {
			c.fillCode(p)
		} else {
			c.fillText(p)
		}
		c.sources = append(c.sources, p)
	}
	shares := cfg.Mix.shares()
	var total float64
	for _, s := range shares {
		total += s
	}
	for i := 0; i < cfg.Pages; {
		r := c.rng.Float64() * total
		cls := PageClass(0)
		for cls < numClasses-1 && r >= shares[cls] {
			r -= shares[cls]
			cls++
		}
		run := 1 + int(c.rng.ExpFloat64()*float64(cfg.RunPages-1)+0.5)
		for j := 0; j < run && i < cfg.Pages; j++ {
			c.class[i] = cls
			c.fill(c.Page(i), cls)
			i++
		}
	}
	nHot := int(float64(cfg.Pages) * cfg.DirtyFraction * 2)
	if nHot > cfg.Pages {
		nHot = cfg.Pages
	}
	c.hot = c.rng.Perm(cfg.Pages)[:nHot]
	return c, nil
}

// Memory returns the whole image (aliased: it changes with NextRound).
func (c *Corpus) Memory() []byte { return c.mem }

// PageCount returns the number of pages.
func (c *Corpus) PageCount() int { return c.cfg.Pages }

// PageSize returns the page size.
func (c *Corpus) PageSize() int { return c.cfg.PageSize }

// Round returns how many times NextRound has run.
func (c *Corpus) Round() int { return c.round }

// Page returns page i of the image (aliased).
func (c *Corpus) Page(i int) []byte {
	return c.mem[i*c.cfg.PageSize : (i+1)*c.cfg.PageSize : (i+1)*c.cfg.PageSize]
}

// Class returns the class page i was last generated as.
func (c *Corpus) Class(i int) PageClass { return c.class[i] }

// Pages returns every page, in order, as Pages aliasing the image.
func (c *Corpus) Pages() []Page {
	out := make([]Page, c.cfg.Pages)
	for i := range out {
		out[i] = Page{Index: uint64(i), Data: c.Page(i)}
	}
	return out
}

// PagesOf returns the given pages as Pages aliasing the image.
func (c *Corpus) PagesOf(indices []uint64) []Page {
	out := make([]Page, len(indices))
	for i, x := range indices {
		out[i] = Page{Index: x, Data: c.Page(int(x))}
	}
	return out
}

// NextRound runs the guest for one round: it writes DirtyFraction of the
// pages as CorpusConfig describes and returns their indices, ascending.
func (c *Corpus) NextRound() []uint64 {
	c.round++
	n := int(float64(c.cfg.Pages)*c.cfg.DirtyFraction + 0.5)
	picked := make(map[int]bool, n)
	for len(picked) < n {
		var i int
		if len(c.hot) > 0 && c.rng.Float64() < c.cfg.HotFraction {
			i = c.hot[c.rng.IntN(len(c.hot))]
		} else {
			i = c.rng.IntN(c.cfg.Pages)
		}
		picked[i] = true
	}
	dirty := make([]uint64, 0, n)
	for i := range picked {
		dirty = append(dirty, uint64(i))
	}
	slices.Sort(dirty)
	for _, x := range dirty {
		c.dirty(int(x))
	}
	return dirty
}

func (c *Corpus) dirty(i int) {
	p := c.Page(i)
	if c.class[i] == ClassZero {
		// A fresh allocation: a few heap records at the start of the page.
		c.class[i] = ClassHeap
		n := 64 + c.rng.IntN(len(p)/8)
		c.fillHeap(p[:n&^7])
		return
	}
	r := c.rng.Float64()
	switch {
	case r < c.cfg.FreeFraction:
		clear(p)
		c.class[i] = ClassZero
	case r < c.cfg.FreeFraction+c.cfg.SmallEditFraction:
		c.smallEdit(p, c.class[i])
	default:
		c.fill(p, c.class[i])
	}
}

// smallEdit changes 1 to 8 words: counters go up, pointers move, text gets
// a few new digits, random data gets a few new words.
func (c *Corpus) smallEdit(p []byte, cls PageClass) {
	words := 1 + c.rng.IntN(8)
	for w := 0; w < words; w++ {
		off := c.rng.IntN(len(p)/8) * 8
		switch cls {
		case ClassText:
			for k := 0; k < 4; k++ {
				p[off+k] = '0' + byte(c.rng.IntN(10))
			}
		case ClassHeap, ClassDuplicate:
			v := binary.LittleEndian.Uint64(p[off:])
			if v>>40 == c.heapTop>>40 {
				v = c.pointer()
			} else {
				v += 1 + uint64(c.rng.IntN(16))
			}
			binary.LittleEndian.PutUint64(p[off:], v)
		default:
			binary.LittleEndian.PutUint64(p[off:], c.rng.Uint64())
		}
	}
}

func (c *Corpus) fill(p []byte, cls PageClass) {
	switch cls {
	case ClassZero:
		clear(p)
	case ClassDuplicate:
		copy(p, c.sources[c.rng.IntN(len(c.sources))])
	case ClassText:
		c.fillText(p)
	case ClassCode:
		c.fillCode(p)
	case ClassHeap:
		c.fillHeap(p)
	default:
		for i := 0; i+8 <= len(p); i += 8 {
			binary.LittleEndian.PutUint64(p[i:], c.rng.Uint64())
		}
	}
}

var corpusWords = []string{
	"usb", "device", "new", "high-speed", "using", "xhci_hcd", "eth0", "link", "up", "down",
	"EXT4-fs", "mounted", "filesystem", "with", "ordered", "data", "mode", "kernel", "memory",
	"cgroup", "nvme", "queue", "irq", "cpu", "sched", "timer", "clocksource", "tsc", "switched",
	"to", "audit", "type", "pid", "uid", "comm", "systemd", "started", "session", "user",
	"PCI", "bridge", "window", "mem", "pref", "ACPI", "table", "virtio", "net", "blk", "console",
	"error", "warning", "failed", "retry", "page", "alloc", "free", "buffer", "cache", "inode",
}

var corpusSymbols = []string{
	"do_sys_open", "vfs_read", "__schedule", "tcp_sendmsg", "kmem_cache_alloc", "copy_page",
	"handle_mm_fault", "ext4_file_write_iter", "netif_receive_skb", "virtqueue_add_sgs",
	"memcpy", "memset", "strlen", "malloc", "free", "pthread_mutex_lock", "epoll_wait",
}

// fillText writes log lines, or (one page in four) a NUL-separated symbol
// table, padding the tail with zeros as string sections are.
func (c *Corpus) fillText(p []byte) {
	b := p[:0]
	if c.rng.IntN(4) == 0 {
		for len(b) < len(p)-64 {
			b = append(b, corpusSymbols[c.rng.IntN(len(corpusSymbols))]...)
			if c.rng.IntN(3) == 0 {
				b = append(b, '.')
				b = strconv.AppendUint(b, uint64(c.rng.IntN(100)), 10)
			}
			b = append(b, 0)
		}
	} else {
		for len(b) < len(p)-160 {
			b = append(b, '[')
			b = strconv.AppendUint(b, uint64(c.rng.IntN(90000)), 10)
			b = append(b, '.')
			b = strconv.AppendUint(b, uint64(100000+c.rng.IntN(900000)), 10)
			b = append(b, "] "...)
			for w := 2 + c.rng.IntN(8); w > 0; w-- {
				b = append(b, corpusWords[c.rng.IntN(len(corpusWords))]...)
				b = append(b, ' ')
			}
			if c.rng.IntN(2) == 0 {
				b = append(b, "0x"...)
				b = strconv.AppendUint(b, 0xffff800000000000|uint64(c.rng.IntN(1<<24))<<4, 16)
			}
			b = append(b, '\n')
		}
	}
	clear(p[len(b):])
}

// fillCode writes x86-64-like instruction sequences with small operands.
func (c *Corpus) fillCode(p []byte) {
	b := p[:0]
	rel := func() []byte { // near call/jump targets: small signed 32-bit offsets
		v := int32(c.rng.IntN(1<<16) - 1<<15)
		return binary.LittleEndian.AppendUint32(nil, uint32(v))
	}
	for len(b) < len(p)-16 {
		switch c.rng.IntN(10) {
		case 0:
			b = append(b, 0x55, 0x48, 0x89, 0xe5, 0x41, 0x57, 0x41, 0x56, 0x53, 0x48, 0x83, 0xec, byte(c.rng.IntN(8)*8))
		case 1, 2:
			b = append(b, 0x48, 0x8b, 0x45+byte(c.rng.IntN(4))*8, byte(0x100-8*(1+c.rng.IntN(8))))
		case 3:
			b = append(append(b, 0xe8), rel()...)
		case 4:
			b = append(append(b, 0x48, 0x8d, 0x05), rel()...)
		case 5:
			b = append(b, 0x48, 0x83, 0xf8, byte(c.rng.IntN(16)), 0x74, byte(c.rng.IntN(64)))
		case 6:
			b = append(append(b, 0x0f, 0x85), rel()...)
		case 7:
			b = append(b, 0xb8, byte(c.rng.IntN(256)), byte(c.rng.IntN(4)), 0, 0)
		case 8:
			b = append(b, 0x5b, 0x41, 0x5e, 0x41, 0x5f, 0x5d, 0xc3)
			for pad := c.rng.IntN(8); pad > 0; pad-- {
				b = append(b, 0xcc)
			}
		default:
			b = append(b, 0x66, 0x0f, 0x1f, 0x44, 0x00, 0x00)
		}
	}
	for len(b) < len(p) {
		b = append(b, 0x90)
	}
}

func (c *Corpus) pointer() uint64 {
	return c.heapTop | uint64(c.rng.IntN(1<<24))<<4
}

// fillHeap writes an array of records of one layout: pointer, pointer,
// counter, length, flags, padding; one record in eight is freed (zeros).
func (c *Corpus) fillHeap(p []byte) {
	rec := 16 << c.rng.IntN(3) // 16, 32 or 64 bytes
	for off := 0; off+rec <= len(p); off += rec {
		r := p[off : off+rec]
		clear(r)
		if c.rng.IntN(8) == 0 {
			continue
		}
		binary.LittleEndian.PutUint64(r[0:], c.pointer())
		if rec >= 32 {
			binary.LittleEndian.PutUint64(r[8:], c.pointer())
			binary.LittleEndian.PutUint32(r[16:], uint32(c.rng.IntN(1000)))
			binary.LittleEndian.PutUint32(r[20:], uint32(c.rng.IntN(4096)))
			r[24] = byte(c.rng.IntN(4))
		} else {
			binary.LittleEndian.PutUint32(r[8:], uint32(c.rng.IntN(1000)))
			r[12] = byte(c.rng.IntN(4))
		}
		if rec == 64 && c.rng.IntN(2) == 0 {
			binary.LittleEndian.PutUint64(r[32:], math.Float64bits(float64(c.rng.IntN(1e6))/100))
		}
	}
	clear(p[len(p)/rec*rec:])
}
