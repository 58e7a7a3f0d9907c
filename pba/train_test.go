package pba

import (
	"context"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

// squareWave alternates 3 samples at 10 and 3 at 2 Mbit/s with 3% noise:
// the last value is wrong at every edge, a model that learns the period is
// not.
func squareWave(n int, seed uint64) *Trace {
	rng := rand.New(rand.NewPCG(seed, 1))
	tr := &Trace{Name: "square"}
	for i := 0; i < n; i++ {
		v := 2.0
		if (i/3)%2 == 0 {
			v = 10
		}
		tr.Times = append(tr.Times, float64(i))
		tr.Throughput = append(tr.Throughput, v*(1+0.03*rng.NormFloat64()))
	}
	return tr
}

func smallTrainConfig() TrainConfig {
	cfg := DefaultTrainConfig()
	cfg.Shape = ModelShape{Layers: 1, Hidden: 8, Window: 8, Horizons: []int{1, 3}, Quantiles: []float64{0.5, 0.1}}
	cfg.Epochs, cfg.Patience, cfg.LearningRate = 25, 25, 1e-2
	cfg.MaxDuration = 0
	return cfg
}

func TestTrainLearnsPattern(t *testing.T) {
	traces := []*Trace{squareWave(500, 1), squareWave(500, 2)}
	m, res, err := Train(context.Background(), traces, smallTrainConfig())
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%+v", res)
	out, err := Evaluate(traces, []Predictor{&LastValue{}, NewLSTMPredictor(m)}, EvalOptions{TrainFrac: 0.7, Horizon: 1})
	if err != nil {
		t.Fatal(err)
	}
	last, lstm, lower := out[0].Scores.All, out[1].Scores.All, out[2].Scores.All
	t.Logf("last value WAPE %.3f, LSTM %.3f, lower %.3f misses %.1f%%", last.WAPE(), lstm.WAPE(), lower.WAPE(), lower.MissPercent())
	if lstm.WAPE() > 0.5*last.WAPE() {
		t.Errorf("LSTM WAPE %.3f is not below half of last value's %.3f on a periodic signal", lstm.WAPE(), last.WAPE())
	}
	if lower.MissPercent() > 10 {
		t.Errorf("lower quantile misses %.1f%%", lower.MissPercent())
	}
}

func TestTrainDeterministic(t *testing.T) {
	traces := []*Trace{syntheticTrace("a", 200, 1), syntheticTrace("b", 150, 2)}
	cfg := smallTrainConfig()
	cfg.Epochs = 3
	a, _, err := Train(context.Background(), traces, cfg)
	if err != nil {
		t.Fatal(err)
	}
	b, _, _ := Train(context.Background(), traces, cfg)
	if !slices.Equal(a.params, b.params) {
		t.Fatal("two runs with the same seed differ")
	}
	cfg.Seed++
	c, _, _ := Train(context.Background(), traces, cfg)
	if slices.Equal(a.params, c.params) {
		t.Fatal("another seed gave the same weights")
	}
}

func TestTrainErrors(t *testing.T) {
	cfg := smallTrainConfig()
	if _, _, err := Train(context.Background(), []*Trace{syntheticTrace("short", 10, 1)}, cfg); err == nil {
		t.Error("too-short traces accepted")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, _, err := Train(ctx, []*Trace{syntheticTrace("a", 200, 1)}, cfg); err == nil {
		t.Error("cancelled context ignored")
	}
	for _, mut := range []func(*TrainConfig){
		func(c *TrainConfig) { c.Shape.Hidden = 0 },
		func(c *TrainConfig) { c.Shape.Quantiles = []float64{0.1} },
		func(c *TrainConfig) { c.Shape.Horizons = []int{5, 1} },
		func(c *TrainConfig) { c.TrainFrac = 0 },
		func(c *TrainConfig) { c.LearningRate = 0 },
		func(c *TrainConfig) { c.BatchSize = 0 },
	} {
		c := smallTrainConfig()
		mut(&c)
		if err := c.Validate(); err == nil {
			t.Errorf("config %+v accepted", c)
		}
	}
}

func sharedTraces(t testing.TB, name string) []*Trace {
	t.Helper()
	dir := filepath.Join("..", "..", "shared", "traces", name)
	if _, err := os.Stat(dir); err != nil {
		t.Skip("shared traces absent:", err)
	}
	trs, err := ReadTraceDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	return trs
}

// TestDefaultModelOnNorway checks the shipped model on the held-out 30% of
// the traces it was trained on the first 70% of.
func TestDefaultModelOnNorway(t *testing.T) {
	trs := sharedTraces(t, "norway-hsdpa")
	m, err := DefaultModel()
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range []int{1, 5} {
		out, err := Evaluate(trs, []Predictor{&LastValue{}, &RobustMPC{}, NewLSTMPredictor(m)}, EvalOptions{TrainFrac: 0.7, Horizon: h})
		if err != nil {
			t.Fatal(err)
		}
		last, rmpc, lstm, lower := out[0].Scores.All, out[1].Scores.All, out[2].Scores.All, out[3].Scores.All
		t.Logf("h%d: last value %.2f%%, LSTM %.2f%%, lower %.2f%% with %.1f%% misses (RobustMPC %.2f%%, %.1f%%)",
			h, 100*last.WAPE(), 100*lstm.WAPE(), 100*lower.WAPE(), lower.MissPercent(), 100*rmpc.WAPE(), rmpc.MissPercent())
		if lstm.WAPE() >= last.WAPE() {
			t.Errorf("h%d: LSTM WAPE %.4f not below last value %.4f", h, lstm.WAPE(), last.WAPE())
		}
		if lower.MissPercent() >= 5 || lower.WAPE() >= rmpc.WAPE() {
			t.Errorf("h%d: lower forecast %.1f%% misses, WAPE %.4f vs RobustMPC %.4f", h, lower.MissPercent(), lower.WAPE(), rmpc.WAPE())
		}
	}
}

func TestInferenceLatency(t *testing.T) {
	if raceEnabled {
		t.Skip("latency is meaningless under the race detector")
	}
	m, err := DefaultModel()
	if err != nil {
		t.Fatal(err)
	}
	p := NewLSTMPredictor(m)
	tr := syntheticTrace("lat", 400, 5)
	var lat []time.Duration
	for i := range tr.Throughput {
		p.Observe(tr.Times[i], tr.Throughput[i])
		start := time.Now()
		v := p.Predict(1)
		lat = append(lat, time.Since(start))
		if math.IsNaN(v) || v < 0 {
			t.Fatalf("forecast %v", v)
		}
	}
	slices.Sort(lat)
	p50, p99 := lat[len(lat)/2], lat[len(lat)*99/100]
	t.Logf("p50 %v, p99 %v", p50, p99)
	// The p99 target (500 µs) is checked by examples/pba-eval and the
	// benchmarks; on a shared machine the wall-clock tail of a test is set
	// by other processes, so the test holds the median to the target.
	if p50 > 500*time.Microsecond {
		t.Errorf("median inference %v, target p99 500µs", p50)
	}
}
