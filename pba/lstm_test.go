package pba

import (
	"math"
	"math/rand/v2"
	"testing"
)

// syntheticTrace is a deterministic, bursty-ish series for tests that must
// not depend on the shared traces.
func syntheticTrace(name string, n int, seed uint64) *Trace {
	rng := rand.New(rand.NewPCG(seed, 7))
	tr := &Trace{Name: name}
	level := 5.0
	t := 0.0
	for i := 0; i < n; i++ {
		level = math.Max(0.2, level*math.Exp(0.15*rng.NormFloat64())+0.05*(5-level))
		t += 0.5 + 0.5*rng.Float64()
		tr.Times = append(tr.Times, t)
		tr.Throughput = append(tr.Throughput, level*(1+0.1*rng.NormFloat64()*0.5))
	}
	return tr
}

func TestGradientCheck(t *testing.T) {
	for _, tc := range []struct {
		name  string
		shape ModelShape
	}{
		{"one layer", ModelShape{Layers: 1, Hidden: 3, Window: 4, Horizons: []int{1}, Quantiles: []float64{0.5}}},
		{"two layers two horizons two quantiles", ModelShape{Layers: 2, Hidden: 4, Window: 5, Horizons: []int{1, 3}, Quantiles: []float64{0.5, 0.2}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tr := syntheticTrace("g", 60, 3)
			m, err := NewModel(tc.shape, 11)
			if err != nil {
				t.Fatal(err)
			}
			m.norm = normalizationOf([]*Trace{tr}, []window{{0, 10}, {0, 20}, {0, 30}}, tc.shape.Window)
			// Larger weights than the initialisation exercise saturation.
			for i := range m.params {
				m.params[i] *= 3
			}
			const B = 3
			fs := &featureSetter{shape: tc.shape, norm: m.norm}
			bt := &batchTrainer{
				net: newNetwork(tc.shape, m.params, B), fs: fs, traces: []*Trace{tr}, levelScale: m.norm.levelScale(),
				x: make([]float64, B*tc.shape.Window*NumFeatures), y: make([]float64, B*len(tc.shape.Horizons)), w: make([]float64, B),
			}
			bt.load([]window{{0, 12}, {0, 25}, {0, 40}})
			grad := make([]float64, len(m.params))
			bt.loss(true)
			bt.net.backward(grad)
			lossAt := func() float64 { return bt.loss(false) / B }
			const h = 1e-6
			worst := 0.0
			for i := range m.params {
				orig := m.params[i]
				m.params[i] = orig + h
				lp := lossAt()
				m.params[i] = orig - h
				lm := lossAt()
				m.params[i] = orig
				num := (lp - lm) / (2 * h)
				diff := math.Abs(num-grad[i]) / math.Max(1e-4, math.Abs(num)+math.Abs(grad[i]))
				worst = math.Max(worst, diff)
				if diff > 1e-4 {
					t.Errorf("param %d: analytic %.8g, numeric %.8g", i, grad[i], num)
				}
			}
			t.Logf("%d params, worst relative difference %.2g", len(m.params), worst)
		})
	}
}
