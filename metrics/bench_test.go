package metrics

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// BenchmarkObserve compares the per-observation cost of the SLA evaluator
// and the z-score detector with client_golang's histogram Observe, the
// baseline every component already pays.
func BenchmarkObserve(b *testing.B) {
	b.Run("baseline_histogram", func(b *testing.B) {
		h := New(nil).MigrationLatency.WithLabelValues(ComponentAMST)
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			h.Observe(float64(i%1000) * 1e-6)
		}
	})
	b.Run("sla_latency", func(b *testing.B) {
		e, _, _, _ := newTestEvaluator(b, nil)
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			e.ObserveLatency(time.Duration(i%1000) * time.Microsecond)
		}
	})
	b.Run("sla_operation", func(b *testing.B) {
		e, _, _, _ := newTestEvaluator(b, nil)
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			e.ObserveOperation(i%100 == 0)
		}
	})
	b.Run("zscore_window100", func(b *testing.B) {
		d, _ := NewZScoreDetector(DefaultAnomalyConfig())
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			d.Observe(float64(i % 17))
		}
	})
}

// BenchmarkWindowClose is the cost of closing one 10 s window holding 10000
// latency samples (sorting them for the quantile) plus every detector.
func BenchmarkWindowClose(b *testing.B) {
	e, _, _, clock := newTestEvaluator(b, nil)
	b.ReportAllocs()
	for b.Loop() {
		b.StopTimer()
		for i := range 10_000 {
			e.ObserveLatency(time.Duration(i*7919%10_000) * time.Microsecond)
		}
		e.ObserveOperation(false)
		e.ObserveTransfer(1e9, time.Second)
		clock.Advance(e.cfg.Window)
		b.StartTimer()
		e.Evaluate()
	}
}

// BenchmarkResourceSample is one real sample: getrusage plus four procfs
// reads.
func BenchmarkResourceSample(b *testing.B) {
	cfg := DefaultResourceConfig()
	cfg.Interval = 0
	s, err := NewResourceSampler(nil, cfg)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	b.ReportAllocs()
	for b.Loop() {
		s.Sample()
	}
}

// BenchmarkCheckLabelValues compares checking a full registry (every
// documented series present) with gathering it alone.
func BenchmarkCheckLabelValues(b *testing.B) {
	reg := prometheus.NewRegistry()
	series := recordEverySeries(b, New(reg), one)
	b.Logf("%d series", series)
	b.Run("baseline_gather", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := reg.Gather(); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("check", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if err := CheckLabelValues(reg); err != nil {
				b.Fatal(err)
			}
		}
	})
}
