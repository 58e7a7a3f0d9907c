package pba

import (
	"math"
	"time"

	"github.com/dwcp/dwcp/metrics"
)

// forecast runs the model on the window ending at the newest of xs/ts
// (len(xs) must be Window+1) and writes, for each horizon and quantile
// (index hi*len(Quantiles)+qi), the forecast mean of the next h samples in
// the units of xs. It allocates nothing.
func (m *Model) forecast(dst, xs, ts []float64) {
	fs := featureSetter{shape: m.shape, norm: m.norm}
	n := m.net
	T := m.shape.Window
	// Write features straight into the first layer's inputs.
	z := n.z[0]
	last := len(xs) - 1
	ll := math.Log(xs[last] + LogFloor)
	prev := math.Log(xs[last-T] + LogFloor)
	for k := 0; k < T; k++ {
		i := last - T + 1 + k
		lv := math.Log(xs[i] + LogFloor)
		dt := math.Max(ts[i]-ts[i-1], 1e-3)
		row := z[k].Data[:NumFeatures]
		row[0] = clampFeature(lv - ll)
		row[1] = clampFeature(lv - prev)
		row[2] = clampFeature((lv - fs.norm.LogLevelMean) / fs.norm.LogLevelStd)
		row[3] = clampFeature((math.Log(dt) - fs.norm.LogDtMean) / fs.norm.LogDtStd)
		prev = lv
	}
	n.forward()
	base := xs[last] + LogFloor
	for k, o := range n.out.Data {
		dst[k] = math.Max(0, base*math.Exp(o)-LogFloor)
	}
}

// LSTMPredictor runs a Model over the samples it observes. Until it has
// Window+1 samples it predicts the last value (and no lower forecast
// beyond it); Ready says when the model is in use.
type LSTMPredictor struct {
	model  *Model
	xs, ts []float64 // the last Window+1 samples, oldest first
	n      int
	out    []float64
	fresh  bool // out matches the current window
	lower  int  // index of the lower quantile, -1 if none
	// lastRun is the duration of the latest forward pass.
	lastRun time.Duration
}

// NewLSTMPredictor wraps a clone of m (so m may be shared).
func NewLSTMPredictor(m *Model) *LSTMPredictor {
	c := m.Clone()
	w := c.shape.Window + 1
	return &LSTMPredictor{
		model: c, xs: make([]float64, w), ts: make([]float64, w),
		out: make([]float64, c.shape.outputs()), lower: c.shape.lowerQuantileIndex(),
	}
}

func (p *LSTMPredictor) Name() string { return metrics.PredictorLSTM }

// Ready reports whether enough samples were observed for the model to run.
func (p *LSTMPredictor) Ready() bool { return p.n >= len(p.xs) }

func (p *LSTMPredictor) Observe(t, v float64) {
	copy(p.xs, p.xs[1:])
	copy(p.ts, p.ts[1:])
	p.xs[len(p.xs)-1], p.ts[len(p.ts)-1] = v, t
	p.n = min(p.n+1, len(p.xs))
	p.fresh = false
}

func (p *LSTMPredictor) Reset() {
	clear(p.xs)
	clear(p.ts)
	p.n, p.fresh = 0, false
}

// horizonIndex picks the trained horizon closest to h (the smaller on a
// tie).
func (p *LSTMPredictor) horizonIndex(h int) int {
	best := 0
	for i, th := range p.model.shape.Horizons {
		if abs(th-h) < abs(p.model.shape.Horizons[best]-h) {
			best = i
		}
	}
	return best
}

func abs(x int) int {
	if x < 0 {
		return -x
	}
	return x
}

func (p *LSTMPredictor) run() {
	if !p.fresh {
		start := time.Now()
		p.model.forecast(p.out, p.xs, p.ts)
		p.lastRun = time.Since(start)
		p.fresh = true
	}
}

// Predict returns the median forecast of the mean of the next horizon
// samples, using the trained horizon closest to horizon.
func (p *LSTMPredictor) Predict(horizon int) float64 {
	if !p.Ready() {
		return p.xs[len(p.xs)-1]
	}
	p.run()
	return p.out[p.horizonIndex(horizon)*len(p.model.shape.Quantiles)]
}

// PredictLower returns the lower-quantile forecast (the model's smallest
// quantile below 0.5); without one, or before Ready, the point forecast.
func (p *LSTMPredictor) PredictLower(horizon int) float64 {
	if !p.Ready() || p.lower < 0 {
		return p.Predict(horizon)
	}
	p.run()
	return p.out[p.horizonIndex(horizon)*len(p.model.shape.Quantiles)+p.lower]
}
