package hde

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"
)

// mirror is the decoder side's copy of guest memory.
type mirror map[uint64][]byte

func (m mirror) apply(d *Decoder, frame []byte) error {
	return d.DecodeBatch(frame, func(index uint64, data []byte) error {
		m[index] = append(m[index][:0], data...)
		return nil
	})
}

func newPair(t testing.TB, cfg Config) (*Encoder, *Decoder) {
	t.Helper()
	enc, err := NewEncoder(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	dec, err := NewDecoder(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { enc.Close(); dec.Close() })
	return enc, dec
}

// sendAll encodes pages in batches of batch and checks that the mirror ends
// up equal to them.
func sendAll(t testing.TB, enc *Encoder, dec *Decoder, m mirror, pages []Page, batch int) int {
	t.Helper()
	wire := 0
	var frame []byte
	for len(pages) > 0 {
		n := min(batch, len(pages))
		var err error
		frame, err = enc.EncodeBatch(frame[:0], pages[:n])
		if err != nil {
			t.Fatalf("encode: %v", err)
		}
		wire += len(frame)
		if err := m.apply(dec, frame); err != nil {
			t.Fatalf("decode: %v", err)
		}
		for _, p := range pages[:n] {
			if !bytes.Equal(m[p.Index], p.Data) {
				t.Fatalf("page %d differs after decode", p.Index)
			}
		}
		pages = pages[n:]
	}
	return wire
}

func smallConfig() Config {
	cfg := DefaultConfig()
	cfg.PageSize = 512
	cfg.MaxBatchPages = 64
	cfg.CacheBytes = 64 * 512
	cfg.MinCompressBytes = 64
	cfg.ExploreEvery = 3
	return cfg
}

// TestRoundTripCorpus sends several rounds of the corpus under a table of
// configurations, checking every page after every batch.
func TestRoundTripCorpus(t *testing.T) {
	small := smallConfig()
	noCache := DefaultConfig()
	noCache.CacheBytes = 0
	tinyCache := DefaultConfig()
	tinyCache.CacheBytes = 16 * 4096 // far smaller than the corpus: evictions
	baseline := DefaultConfig()
	baseline.Mode = ModeBaseline
	for _, tc := range []struct {
		name  string
		cfg   Config
		batch int
	}{
		{"default", DefaultConfig(), 128},
		{"small-pages", small, 64},
		{"no-cache", noCache, 100},
		{"tiny-cache", tinyCache, 37},
		{"baseline", baseline, 256},
		{"single-page-batches", DefaultConfig(), 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cc := DefaultCorpusConfig(7)
			cc.PageSize = tc.cfg.PageSize
			cc.Pages = 1024
			cc.DirtyFraction = 0.2
			corpus, err := NewCorpus(cc)
			if err != nil {
				t.Fatal(err)
			}
			enc, dec := newPair(t, tc.cfg)
			m := mirror{}
			sendAll(t, enc, dec, m, corpus.Pages(), tc.batch)
			for r := 0; r < 3; r++ {
				sendAll(t, enc, dec, m, corpus.PagesOf(corpus.NextRound()), tc.batch)
			}
			for i := 0; i < corpus.PageCount(); i++ {
				if !bytes.Equal(m[uint64(i)], corpus.Page(i)) {
					t.Fatalf("page %d differs at the end", i)
				}
			}
			st := enc.Stats()
			if tc.cfg.Mode == ModeBaseline && st.ZeroPages+st.DuplicatePages+st.DeltaPages != 0 {
				t.Errorf("baseline used page-level encoding: %+v", st)
			}
			if tc.cfg.Mode == ModeAdaptive && tc.cfg.CacheBytes >= int64(cc.Pages*cc.PageSize) && (st.DuplicatePages == 0 || st.DeltaPages == 0) {
				t.Errorf("adaptive with a cache found no duplicates or deltas: %+v", st)
			}
			if tc.cfg.Mode == ModeAdaptive && st.ZeroPages == 0 {
				t.Errorf("no zero pages detected: %+v", st)
			}
		})
	}
}

// TestRoundTripRandomMixes is the property test: random sequences of
// batches of random page mixes (zero, repeated, edited, random, reordered
// indices), across random configurations, always decode to the input.
func TestRoundTripRandomMixes(t *testing.T) {
	for seed := uint64(1); seed <= 25; seed++ {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 0))
			cfg := smallConfig()
			cfg.CacheBytes = int64(rng.IntN(40)) * 512
			cfg.EntropyThreshold = []float64{5, 7, 8}[rng.IntN(3)]
			cfg.LinkBandwidth = []float64{1e6, 1e8, 1e10}[rng.IntN(3)]
			if rng.IntN(5) == 0 {
				cfg.Mode = ModeBaseline
				cfg.BaselineCodec = Codec(rng.IntN(int(numCodecs)))
			}
			enc, dec := newPair(t, cfg)
			m := mirror{}
			universe := 100
			mem := make([][]byte, universe)
			for i := range mem {
				mem[i] = make([]byte, cfg.PageSize)
			}
			for round := 0; round < 30; round++ {
				perm := rng.Perm(universe)[:1+rng.IntN(cfg.MaxBatchPages)]
				var pages []Page
				for _, i := range perm {
					p := mem[i]
					switch rng.IntN(6) {
					case 0:
						clear(p)
					case 1:
						copy(p, mem[rng.IntN(universe)])
					case 2:
						for k := rng.IntN(6); k >= 0; k-- {
							p[rng.IntN(len(p))] = byte(rng.Uint32())
						}
					case 3:
						for k := range p {
							p[k] = byte(rng.Uint32())
						}
					case 4:
						for k := range p {
							p[k] = "abcabcabd"[(k+round)%9]
						}
					}
					pages = append(pages, Page{Index: uint64(i), Data: p})
				}
				frame, err := enc.EncodeBatch(nil, pages)
				if err != nil {
					t.Fatal(err)
				}
				if err := m.apply(dec, frame); err != nil {
					t.Fatalf("round %d: %v", round, err)
				}
				for _, p := range pages {
					if !bytes.Equal(m[p.Index], p.Data) {
						t.Fatalf("round %d: page %d differs", round, p.Index)
					}
				}
			}
		})
	}
}

func TestEncodeRejectsBadBatches(t *testing.T) {
	cfg := smallConfig()
	good := make([]byte, cfg.PageSize)
	for _, tc := range []struct {
		name  string
		pages []Page
	}{
		{"short page", []Page{{Index: 1, Data: good[:10]}}},
		{"repeated index", []Page{{Index: 1, Data: good}, {Index: 1, Data: good}}},
		{"index too large", []Page{{Index: 1 << 60, Data: good}}},
		{"too many pages", make([]Page, cfg.MaxBatchPages+1)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			enc, _ := newPair(t, cfg)
			out, err := enc.EncodeBatch([]byte("x"), tc.pages)
			if !errors.Is(err, ErrInvalidBatch) {
				t.Fatalf("err = %v, want ErrInvalidBatch", err)
			}
			if string(out) != "x" {
				t.Fatalf("dst changed on error")
			}
		})
	}
}
