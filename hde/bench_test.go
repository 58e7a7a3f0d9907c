package hde

import (
	"fmt"
	"slices"
	"testing"
	"time"
)

// The benchmarks compare, on the same bytes and in the same 1 MiB batches,
// HDE against plain zstd (fastest and default), lz4 and snappy. Each reports
// wire bytes per op and the fraction saved; MB/s is over guest memory bytes.
//
//	go test -run='^$' -bench=. -benchtime=3x ./hde/
//	HDE_IMAGE=/path/to/guest.mem go test -run='^$' -bench=Round1 ./hde/

func hdeConfig(link float64) Config {
	cfg := DefaultConfig()
	cfg.LinkBandwidth = link
	return cfg
}

var hdeVariants = []struct {
	name string
	cfg  func() Config
}{
	{"hde-100Mbps", func() Config { return hdeConfig(12.5e6) }},
	{"hde-1Gbps", func() Config { return hdeConfig(125e6) }},
	{"hde-10Gbps", func() Config { return hdeConfig(1.25e9) }},
	// Page level plus always zstd-fastest: the same codec as the plain
	// baseline, so the difference is what the page level buys.
	{"hde-fixed-zstd-fastest", func() Config {
		c := hdeConfig(125e6)
		c.Codecs = []Codec{CodecZstdFastest}
		return c
	}},
	{"hde-baseline-v1", func() Config { c := DefaultConfig(); c.Mode = ModeBaseline; return c }},
}

func BenchmarkRound1(b *testing.B) {
	w := loadWorkload(b)
	in := int64(len(w.mem1))
	for _, v := range hdeVariants {
		b.Run(v.name, func(b *testing.B) {
			enc, err := NewEncoder(v.cfg(), nil)
			if err != nil {
				b.Fatal(err)
			}
			defer enc.Close()
			encodeAll(b, enc, w.round1, nil) // warm up buffers and the selector
			b.SetBytes(in)
			b.ReportAllocs()
			b.ResetTimer()
			wire := 0
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				enc.Reset()
				b.StartTimer()
				wire = encodeAll(b, enc, w.round1, nil)
			}
			b.ReportMetric(float64(wire), "wire-B")
			b.ReportMetric(100*(1-float64(wire)/float64(in)), "saved-%")
		})
	}
	for _, c := range plainCodecs() {
		b.Run(c.name, func(b *testing.B) {
			b.SetBytes(in)
			b.ReportAllocs()
			wire := 0
			for i := 0; i < b.N; i++ {
				wire = plainSize(c, w.mem1, w.pageSize)
			}
			b.ReportMetric(float64(wire), "wire-B")
			b.ReportMetric(100*(1-float64(wire)/float64(in)), "saved-%")
		})
	}
}

// BenchmarkRound2 encodes the pages dirtied after round 1, with the encoder
// holding round 1's state, against plain codecs on the same dirty pages.
func BenchmarkRound2(b *testing.B) {
	w := loadWorkload(b)
	if len(w.round2) == 0 {
		b.Skip("no second round (set HDE_IMAGE2 with HDE_IMAGE)")
	}
	in := int64(len(w.dirtyMem))
	for _, v := range hdeVariants {
		b.Run(v.name, func(b *testing.B) {
			enc, err := NewEncoder(v.cfg(), nil)
			if err != nil {
				b.Fatal(err)
			}
			defer enc.Close()
			b.SetBytes(in)
			b.ReportAllocs()
			wire := 0
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				enc.Reset()
				encodeAll(b, enc, w.round1, nil)
				b.StartTimer()
				wire = encodeAll(b, enc, w.round2, nil)
			}
			b.ReportMetric(float64(wire), "wire-B")
			b.ReportMetric(100*(1-float64(wire)/float64(in)), "saved-%")
		})
	}
	for _, c := range plainCodecs() {
		b.Run(c.name, func(b *testing.B) {
			b.SetBytes(in)
			b.ReportAllocs()
			wire := 0
			for i := 0; i < b.N; i++ {
				wire = plainSize(c, w.dirtyMem, w.pageSize)
			}
			b.ReportMetric(float64(wire), "wire-B")
			b.ReportMetric(100*(1-float64(wire)/float64(in)), "saved-%")
		})
	}
}

// BenchmarkDecodeRound1 measures decoding throughput in guest memory bytes.
func BenchmarkDecodeRound1(b *testing.B) {
	w := loadWorkload(b)
	for _, v := range hdeVariants {
		b.Run(v.name, func(b *testing.B) {
			cfg := v.cfg()
			enc, err := NewEncoder(cfg, nil)
			if err != nil {
				b.Fatal(err)
			}
			defer enc.Close()
			var frames [][]byte
			encodeAll(b, enc, w.round1, &frames)
			dec, err := NewDecoder(cfg, nil)
			if err != nil {
				b.Fatal(err)
			}
			defer dec.Close()
			sink := func(uint64, []byte) error { return nil }
			b.SetBytes(int64(len(w.mem1)))
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				dec.Reset()
				for _, f := range frames {
					if err := dec.DecodeBatch(f, sink); err != nil {
						b.Fatal(err)
					}
				}
			}
		})
	}
}

// BenchmarkEncodeLatency reports per-page encode latency percentiles: with
// 256-page batches (batch time / pages, what the metric records) and with
// single-page batches (the worst case: one codec call per page).
func BenchmarkEncodeLatency(b *testing.B) {
	w := loadWorkload(b)
	for _, batch := range []int{benchBatchPages, 1} {
		b.Run(fmt.Sprintf("batch-%d", batch), func(b *testing.B) {
			enc, err := NewEncoder(hdeConfig(125e6), nil)
			if err != nil {
				b.Fatal(err)
			}
			defer enc.Close()
			lat := make([]float64, 0, len(w.round1))
			var buf []byte
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				lat = lat[:0]
				enc.Reset()
				for j := 0; j < len(w.round1); j += batch {
					pages := w.round1[j:min(j+batch, len(w.round1))]
					t0 := time.Now()
					buf, err = enc.EncodeBatch(buf[:0], pages)
					d := time.Since(t0)
					if err != nil {
						b.Fatal(err)
					}
					per := float64(d.Nanoseconds()) / 1e3 / float64(len(pages))
					for range pages {
						lat = append(lat, per)
					}
				}
			}
			slices.Sort(lat)
			b.ReportMetric(lat[len(lat)/2], "p50-us/page")
			b.ReportMetric(lat[len(lat)*99/100], "p99-us/page")
			b.ReportMetric(lat[len(lat)-1], "max-us/page")
		})
	}
}
