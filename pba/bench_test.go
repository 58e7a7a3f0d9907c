package pba

import (
	"testing"
	"time"
)

// BenchmarkPredict compares one forecast (observe a sample, then predict)
// of the LSTM with the baselines, in the same run. SetBytes counts one
// float64 sample, so MB/s reads as samples handled.
func BenchmarkPredict(b *testing.B) {
	m, err := DefaultModel()
	if err != nil {
		b.Fatal(err)
	}
	sel, _ := NewSelector(SelectorConfig{}, m)
	tr := syntheticTrace("bench", 4096, 1)
	for _, p := range append(Baselines(), NewLSTMPredictor(m), sel) {
		b.Run(p.Name(), func(b *testing.B) {
			b.SetBytes(8)
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				j := i % len(tr.Throughput)
				p.Observe(float64(i), tr.Throughput[j])
				_ = p.Predict(1)
			}
		})
	}
}

// BenchmarkOnline measures the engine's path: Observe then Forecast.
func BenchmarkOnline(b *testing.B) {
	for _, tc := range []struct {
		name string
		cfg  Config
	}{{"baselines", Config{DisableLSTM: true}}, {"with_lstm", DefaultConfig()}} {
		b.Run(tc.name, func(b *testing.B) {
			o, err := NewOnline(tc.cfg, nil)
			if err != nil {
				b.Fatal(err)
			}
			tr := syntheticTrace("bench", 4096, 1)
			t0 := time.Unix(0, 0)
			b.SetBytes(8)
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				_ = o.Observe(Sample{Time: t0.Add(time.Duration(i+1) * time.Second), BytesPerSecond: tr.Throughput[i%len(tr.Throughput)] * 125000})
				o.Forecast(time.Second)
			}
		})
	}
}

// BenchmarkTrainEpoch times one epoch on synthetic traces (about 2000
// windows of the default shape).
func BenchmarkTrainEpoch(b *testing.B) {
	traces := []*Trace{syntheticTrace("a", 1500, 1), syntheticTrace("b", 1500, 2)}
	cfg := DefaultTrainConfig()
	cfg.Epochs, cfg.MaxDuration = 1, 0
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := Train(b.Context(), traces, cfg); err != nil {
			b.Fatal(err)
		}
	}
}
