package pba

import (
	"fmt"
	"math"

	"github.com/dwcp/dwcp/metrics"
)

// Predictor forecasts bandwidth from the samples it has observed. Units are
// whatever the caller feeds (the package uses Mbit/s internally); time is in
// seconds. A Predictor is not safe for concurrent use: Online serialises
// access to the ones it owns.
type Predictor interface {
	// Name is the predictor's label value in the metrics catalogue
	// (metrics.PredictorLastValue, ...).
	Name() string
	// Observe appends one sample: t seconds since any fixed origin, v the
	// throughput measured over the interval ending at t.
	Observe(t, v float64)
	// Predict returns the mean throughput of the next horizon samples
	// (horizon >= 1). Before the first observation it returns 0.
	Predict(horizon int) float64
	// Reset forgets every observation.
	Reset()
}

// LowerPredictor is a Predictor that also gives a conservative forecast: a
// value the mean of the next horizon samples falls below only rarely.
type LowerPredictor interface {
	Predictor
	PredictLower(horizon int) float64
}

// LastValue predicts the last observed sample. It is the baseline to beat:
// on the shared traces no smoothing predictor is more accurate.
type LastValue struct {
	last float64
}

func (p *LastValue) Name() string          { return metrics.PredictorLastValue }
func (p *LastValue) Observe(_, v float64)  { p.last = v }
func (p *LastValue) Predict(_ int) float64 { return p.last }
func (p *LastValue) Reset()                { p.last = 0 }

// EWMA predicts an exponentially weighted moving average:
// est = Alpha*v + (1-Alpha)*est, started at the first sample.
type EWMA struct {
	Alpha float64
	est   float64
	seen  bool
}

// NewEWMA returns an EWMA with weight alpha in (0, 1] on the newest sample.
func NewEWMA(alpha float64) (*EWMA, error) {
	if !(alpha > 0 && alpha <= 1) {
		return nil, fmt.Errorf("pba: EWMA alpha %v outside (0, 1]", alpha)
	}
	return &EWMA{Alpha: alpha}, nil
}

func (p *EWMA) Name() string { return metrics.PredictorEWMA }
func (p *EWMA) Observe(_, v float64) {
	if !p.seen {
		p.est, p.seen = v, true
		return
	}
	p.est = p.Alpha*v + (1-p.Alpha)*p.est
}
func (p *EWMA) Predict(_ int) float64 { return p.est }
func (p *EWMA) Reset()                { p.est, p.seen = 0, false }

// harmonicWindow is the number of samples of the harmonic mean (FESTIVE,
// RobustMPC).
const harmonicWindow = 5

// ring keeps the last harmonicWindow values.
type ring struct {
	buf [harmonicWindow]float64
	n   int
	pos int
}

func (r *ring) push(v float64) {
	r.buf[r.pos] = v
	r.pos = (r.pos + 1) % harmonicWindow
	r.n = min(r.n+1, harmonicWindow)
}

func (r *ring) harmonicMean() float64 {
	if r.n == 0 {
		return 0
	}
	var s float64
	for i := 0; i < r.n; i++ {
		if r.buf[i] <= 0 {
			return 0 // one idle interval makes the harmonic mean zero
		}
		s += 1 / r.buf[i]
	}
	return float64(r.n) / s
}

func (r *ring) max() float64 {
	m := 0.0
	for i := 0; i < r.n; i++ {
		m = math.Max(m, r.buf[i])
	}
	return m
}

// Harmonic predicts the harmonic mean of the last 5 samples.
type Harmonic struct{ win ring }

func (p *Harmonic) Name() string          { return metrics.PredictorHarmonic }
func (p *Harmonic) Observe(_, v float64)  { p.win.push(v) }
func (p *Harmonic) Predict(_ int) float64 { return p.win.harmonicMean() }
func (p *Harmonic) Reset()                { *p = Harmonic{} }

// RobustMPC is the predictor of RobustMPC (Yin et al., SIGCOMM 2015, as in
// Pensieve's mpc.py): the harmonic mean of the last 5 samples divided by
// 1 + the largest relative error |estimate-actual|/actual of the last 5
// harmonic-mean estimates. It is conservative by design: few misses, much
// lower accuracy.
type RobustMPC struct {
	win     ring
	errs    ring
	lastEst float64
	hasEst  bool
}

func (p *RobustMPC) Name() string { return metrics.PredictorRobustMPC }
func (p *RobustMPC) Observe(_, v float64) {
	if p.hasEst && v > 0 {
		p.errs.push(math.Abs(p.lastEst-v) / v)
	}
	p.win.push(v)
	p.lastEst, p.hasEst = p.win.harmonicMean(), true
}
func (p *RobustMPC) Predict(_ int) float64 { return p.win.harmonicMean() / (1 + p.errs.max()) }
func (p *RobustMPC) Reset()                { *p = RobustMPC{} }

// Holt is double exponential smoothing (level and trend). Its h-step
// forecast is the mean of level + k*trend for k = 1..h, floored at zero.
type Holt struct {
	Alpha, Beta  float64
	level, trend float64
	n            int
}

// NewHolt returns Holt smoothing with level weight alpha and trend weight
// beta, both in (0, 1].
func NewHolt(alpha, beta float64) (*Holt, error) {
	if !(alpha > 0 && alpha <= 1) || !(beta > 0 && beta <= 1) {
		return nil, fmt.Errorf("pba: Holt alpha %v and beta %v must be in (0, 1]", alpha, beta)
	}
	return &Holt{Alpha: alpha, Beta: beta}, nil
}

func (p *Holt) Name() string { return metrics.PredictorHolt }
func (p *Holt) Observe(_, v float64) {
	switch p.n {
	case 0:
		p.level = v
	case 1:
		p.trend = v - p.level
		p.level = v
	default:
		prev := p.level
		p.level = p.Alpha*v + (1-p.Alpha)*(p.level+p.trend)
		p.trend = p.Beta*(p.level-prev) + (1-p.Beta)*p.trend
	}
	p.n++
}
func (p *Holt) Predict(h int) float64 {
	h = max(h, 1)
	return math.Max(0, p.level+p.trend*float64(h+1)/2)
}
func (p *Holt) Reset() { p.level, p.trend, p.n = 0, 0, 0 }

// Baselines returns fresh instances of the baseline predictors with the
// parameters used in the README tables: last value, EWMA(0.3), harmonic
// mean of 5, RobustMPC, Holt(0.8, 0.1).
func Baselines() []Predictor {
	ewma, _ := NewEWMA(0.3)
	holt, _ := NewHolt(DefaultHoltAlpha, DefaultHoltBeta)
	return []Predictor{&LastValue{}, ewma, &Harmonic{}, &RobustMPC{}, holt}
}

// Holt parameters of Baselines.
const (
	DefaultHoltAlpha = 0.8
	DefaultHoltBeta  = 0.1
)
