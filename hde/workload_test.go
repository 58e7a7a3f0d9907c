package hde

import (
	"bytes"
	"os"
	"sync"
	"testing"

	"github.com/golang/snappy"
	"github.com/klauspost/compress/zstd"
	"github.com/pierrec/lz4/v4"
)

// workload is what the benchmarks and target tests run on: round 1 is the
// whole memory, round 2 the pages dirtied afterwards, with their new content.
type workload struct {
	name     string
	pageSize int
	round1   []Page
	round2   []Page
	mem1     []byte // memory at round 1, contiguous
	dirtyMem []byte // round-2 pages, contiguous
}

const benchBatchPages = 256 // 1 MiB batches of 4 KiB pages

var (
	workloadOnce sync.Once
	theWorkload  *workload
	workloadErr  error
)

// loadWorkload returns the default corpus (seed 1, 8192 pages, 5% dirty), or
// the memory image named by HDE_IMAGE; with HDE_IMAGE2 (a later snapshot of
// the same size) round 2 is the pages that differ between them.
func loadWorkload(tb testing.TB) *workload {
	tb.Helper()
	workloadOnce.Do(func() { theWorkload, workloadErr = buildWorkload() })
	if workloadErr != nil {
		tb.Fatal(workloadErr)
	}
	return theWorkload
}

func buildWorkload() (*workload, error) {
	const ps = 4096
	if path := os.Getenv("HDE_IMAGE"); path != "" {
		img, err := os.ReadFile(path)
		if err != nil {
			return nil, err
		}
		img = append(img, make([]byte, (ps-len(img)%ps)%ps)...)
		w := &workload{name: "image " + path, pageSize: ps, mem1: img, round1: pagesOfImage(img, ps)}
		if path2 := os.Getenv("HDE_IMAGE2"); path2 != "" {
			img2, err := os.ReadFile(path2)
			if err != nil {
				return nil, err
			}
			img2 = append(img2, make([]byte, (ps-len(img2)%ps)%ps)...)
			for i := 0; i+ps <= len(img) && i+ps <= len(img2); i += ps {
				if !bytes.Equal(img[i:i+ps], img2[i:i+ps]) {
					w.dirtyMem = append(w.dirtyMem, img2[i:i+ps]...)
					w.round2 = append(w.round2, Page{Index: uint64(i / ps), Data: img2[i : i+ps]})
				}
			}
		}
		return w, nil
	}
	c, err := NewCorpus(DefaultCorpusConfig(1))
	if err != nil {
		return nil, err
	}
	mem1 := append([]byte(nil), c.Memory()...)
	w := &workload{name: "corpus seed 1", pageSize: ps, mem1: mem1, round1: pagesOfImage(mem1, ps)}
	for _, x := range c.NextRound() {
		p := c.Page(int(x))
		w.dirtyMem = append(w.dirtyMem, p...)
		w.round2 = append(w.round2, Page{Index: x, Data: p})
	}
	return w, nil
}

func pagesOfImage(img []byte, ps int) []Page {
	out := make([]Page, len(img)/ps)
	for i := range out {
		out[i] = Page{Index: uint64(i), Data: img[i*ps : (i+1)*ps]}
	}
	return out
}

// encodeAll runs pages through enc in batches and returns the wire bytes.
func encodeAll(tb testing.TB, enc *Encoder, pages []Page, frames *[][]byte) int {
	wire := 0
	var buf []byte
	for i := 0; i < len(pages); i += benchBatchPages {
		var err error
		buf, err = enc.EncodeBatch(buf[:0], pages[i:min(i+benchBatchPages, len(pages))])
		if err != nil {
			tb.Fatal(err)
		}
		wire += len(buf)
		if frames != nil {
			*frames = append(*frames, append([]byte(nil), buf...))
		}
	}
	return wire
}

// plainCodec compresses contiguous memory in the same 1 MiB batches with one
// general-purpose codec: the baselines HDE is compared with.
type plainCodec struct {
	name string
	run  func(dst, src []byte) []byte
}

func plainCodecs() []plainCodec {
	zf, _ := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderConcurrency(1))
	zd, _ := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedDefault), zstd.WithEncoderConcurrency(1))
	var lc lz4.Compressor
	return []plainCodec{
		{"zstd-fastest", func(dst, src []byte) []byte { return zf.EncodeAll(src, dst[:0]) }},
		{"zstd-default", func(dst, src []byte) []byte { return zd.EncodeAll(src, dst[:0]) }},
		{"lz4", func(dst, src []byte) []byte {
			dst = grow(dst[:0], lz4.CompressBlockBound(len(src)))
			n, _ := lc.CompressBlock(src, dst[:cap(dst)])
			if n == 0 {
				return append(dst[:0], src...)
			}
			return dst[:n]
		}},
		{"snappy", func(dst, src []byte) []byte { return snappy.Encode(dst[:cap(dst)], src) }},
	}
}

func plainSize(c plainCodec, mem []byte, ps int) int {
	total := 0
	var buf []byte
	step := benchBatchPages * ps
	for i := 0; i < len(mem); i += step {
		buf = c.run(buf, mem[i:min(i+step, len(mem))])
		total += len(buf)
	}
	return total
}
