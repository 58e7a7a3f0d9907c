package hde

import (
	"errors"
	"strings"
	"sync"
	"testing"
)

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		name   string
		mutate func(*Config)
		want   string
	}{
		{"page size not power of two", func(c *Config) { c.PageSize = 3000 }, "PageSize 3000"},
		{"page size too small", func(c *Config) { c.PageSize = 256 }, "PageSize 256"},
		{"unknown mode", func(c *Config) { c.Mode = 9 }, "Mode 9"},
		{"unknown baseline codec", func(c *Config) { c.BaselineCodec = 42 }, "BaselineCodec 42"},
		{"no codecs", func(c *Config) { c.Codecs = nil }, "Codecs is empty"},
		{"codec twice", func(c *Config) { c.Codecs = []Codec{CodecLZ4, CodecLZ4} }, "lz4 twice"},
		{"negative cache", func(c *Config) { c.CacheBytes = -1 }, "CacheBytes -1"},
		{"zero batch", func(c *Config) { c.MaxBatchPages = 0 }, "MaxBatchPages 0"},
		{"huge batch", func(c *Config) { c.MaxBatchPages = 1 << 20 }, "1 GiB"},
		{"zero link", func(c *Config) { c.LinkBandwidth = 0 }, "LinkBandwidth 0"},
		{"alpha", func(c *Config) { c.EWMAAlpha = 1.5 }, "EWMAAlpha 1.5"},
		{"entropy", func(c *Config) { c.EntropyThreshold = 9 }, "EntropyThreshold 9"},
		{"chunk", func(c *Config) { c.ChunkSize = 0 }, "ChunkSize 0"},
		{"data class", func(c *Config) { c.DataClass = "all" }, `DataClass "all"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := DefaultConfig()
			tc.mutate(&cfg)
			err := cfg.Validate()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want mention of %q", err, tc.want)
			}
			if _, err := NewEncoder(cfg, nil); err == nil {
				t.Fatal("NewEncoder accepted an invalid config")
			}
		})
	}
	if err := DefaultConfig().Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestEmptyBatchAndClose(t *testing.T) {
	enc, dec := newPair(t, DefaultConfig())
	frame, err := enc.EncodeBatch(nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	calls := 0
	if err := dec.DecodeBatch(frame, func(uint64, []byte) error { calls++; return nil }); err != nil || calls != 0 {
		t.Fatalf("empty batch: err %v, %d calls", err, calls)
	}
	for i := 0; i < 2; i++ {
		if err := enc.Close(); err != nil {
			t.Fatal(err)
		}
		if err := dec.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := enc.EncodeBatch(nil, nil); !errors.Is(err, ErrClosed) {
		t.Fatalf("encode after Close: %v", err)
	}
	if err := dec.DecodeBatch(frame, nil); !errors.Is(err, ErrClosed) {
		t.Fatalf("decode after Close: %v", err)
	}
}

// TestConcurrentControl runs SetLinkBandwidth and Stats from other
// goroutines while batches are encoded (meaningful under -race).
func TestConcurrentControl(t *testing.T) {
	enc, dec := newPair(t, DefaultConfig())
	cc := DefaultCorpusConfig(2)
	cc.Pages = 512
	c, _ := NewCorpus(cc)
	var wg sync.WaitGroup
	stop := make(chan struct{})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			enc.SetLinkBandwidth(float64(1+i%100) * 1e7)
			_ = enc.Stats()
			_ = dec.Stats()
		}
	}()
	m := mirror{}
	sendAll(t, enc, dec, m, c.Pages(), 64)
	close(stop)
	wg.Wait()
	enc.SetLinkBandwidth(-1) // ignored
	if st := enc.Stats(); st.LinkBandwidth <= 0 || st.Batches != 8 || len(st.Estimates) != len(DefaultConfig().Codecs) {
		t.Fatalf("stats %+v", st)
	}
}

// TestSelectorFollowsLink checks the selector's decisions on fixed figures:
// a slow link favours the best ratio, a link faster than every codec
// favours sending uncompressed.
func TestSelectorFollowsLink(t *testing.T) {
	s := newSelector(DefaultConfig())
	s.explore = 0
	set := func(k Codec, speed, frac float64) { s.est[k] = codecEstimate{speed: speed, frac: frac, samples: 1} }
	set(CodecSnappy, 500e6, 0.50)
	set(CodecLZ4, 450e6, 0.49)
	set(CodecZstdFastest, 250e6, 0.40)
	set(CodecZstdDefault, 150e6, 0.38)
	set(CodecZstdBetter, 50e6, 0.37)
	body := batchShape{body: 1 << 20}
	for _, tc := range []struct {
		link float64
		want Codec
	}{
		{1e6, CodecZstdBetter},
		{60e6, CodecZstdDefault},
		{110e6, CodecZstdFastest},
		{200e6, CodecLZ4},
		{10e9, CodecNone},
	} {
		if got := s.choose(tc.link, body); got != tc.want {
			t.Errorf("link %g B/s: chose %s, want %s", tc.link, got, tc.want)
		}
	}
	if p := s.probes(nil); len(p) != 0 {
		t.Errorf("probes with exploration off and all measured: %v", p)
	}
}
