package hde

import (
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
)

// BenchmarkPaired alternates, batch by batch, an HDE encode and a plain
// zstd-fastest compression of the same bytes, so that load from other
// processes hits both alike; it reports both speeds and
// their ratios. Round 2 runs with the encoder holding round 1's state.
//
//	go test -run='^$' -bench=Paired -benchtime=10x ./hde/
func BenchmarkPaired(b *testing.B) {
	w := loadWorkload(b)
	zstdFastest := plainCodecs()[0]
	for _, round := range []int{1, 2} {
		pages, mem := w.round1, w.mem1
		if round == 2 {
			if len(w.round2) == 0 {
				continue
			}
			pages, mem = w.round2, w.dirtyMem
		}
		for _, v := range hdeVariants {
			b.Run("round"+string(rune('0'+round))+"/"+v.name, func(b *testing.B) {
				enc, err := NewEncoder(v.cfg(), nil)
				if err != nil {
					b.Fatal(err)
				}
				defer enc.Close()
				encodeAll(b, enc, w.round1, nil) // warm-up
				var hdeTime, zstdTime time.Duration
				hdeWire, zstdWire := 0, 0
				for i := 0; i < b.N; i++ {
					enc.Reset()
					if round == 2 {
						encodeAll(b, enc, w.round1, nil)
					}
					hdeWire, zstdWire = 0, 0
					var frame, plain []byte
					for j := 0; j < len(pages); j += benchBatchPages {
						batch := pages[j:min(j+benchBatchPages, len(pages))]
						raw := mem[j*w.pageSize : (j+len(batch))*w.pageSize]
						t0 := time.Now()
						frame, err = enc.EncodeBatch(frame[:0], batch)
						t1 := time.Now()
						plain = zstdFastest.run(plain, raw)
						hdeTime += t1.Sub(t0)
						zstdTime += time.Since(t1)
						if err != nil {
							b.Fatal(err)
						}
						hdeWire += len(frame)
						zstdWire += len(plain)
					}
				}
				mb := float64(len(mem)) * float64(b.N) / 1e6
				b.ReportMetric(mb/hdeTime.Seconds(), "hde-MB/s")
				b.ReportMetric(mb/zstdTime.Seconds(), "zstd1-MB/s")
				b.ReportMetric(zstdTime.Seconds()/hdeTime.Seconds(), "speedup")
				b.ReportMetric(float64(hdeWire)/float64(zstdWire), "size-vs-zstd1")
				b.ReportMetric(100*(1-float64(hdeWire)/float64(len(mem))), "saved-%")
			})
		}
	}
}

// BenchmarkPairedDecode alternates, frame by frame, HDE decoding of round 1
// and zstd decoding of the plain zstd-fastest frames of the same bytes;
// MB/s are of guest memory.
func BenchmarkPairedDecode(b *testing.B) {
	w := loadWorkload(b)
	zdec, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1))
	if err != nil {
		b.Fatal(err)
	}
	defer zdec.Close()
	zstdFastest := plainCodecs()[0]
	var plains [][]byte
	for j := 0; j < len(w.mem1); j += benchBatchPages * w.pageSize {
		plains = append(plains, zstdFastest.run(nil, w.mem1[j:min(j+benchBatchPages*w.pageSize, len(w.mem1))]))
	}
	for _, v := range hdeVariants {
		b.Run(v.name, func(b *testing.B) {
			cfg := v.cfg()
			enc, err := NewEncoder(cfg, nil)
			if err != nil {
				b.Fatal(err)
			}
			var frames [][]byte
			encodeAll(b, enc, w.round1, &frames)
			enc.Close()
			dec, err := NewDecoder(cfg, nil)
			if err != nil {
				b.Fatal(err)
			}
			defer dec.Close()
			sink := func(uint64, []byte) error { return nil }
			var hdeTime, zstdTime time.Duration
			var out []byte
			for i := 0; i < b.N; i++ {
				dec.Reset()
				for j, f := range frames {
					t0 := time.Now()
					if err := dec.DecodeBatch(f, sink); err != nil {
						b.Fatal(err)
					}
					t1 := time.Now()
					out, err = zdec.DecodeAll(plains[j], out[:0])
					zstdTime += time.Since(t1)
					hdeTime += t1.Sub(t0)
					if err != nil {
						b.Fatal(err)
					}
				}
			}
			mb := float64(len(w.mem1)) * float64(b.N) / 1e6
			b.ReportMetric(mb/hdeTime.Seconds(), "hde-MB/s")
			b.ReportMetric(mb/zstdTime.Seconds(), "zstd1-MB/s")
		})
	}
}
