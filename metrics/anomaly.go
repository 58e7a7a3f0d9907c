package metrics

import (
	"fmt"
	"math"
	"sync"
)

// Side says which deviations from the baseline a detector reports.
type Side int

const (
	// SideBoth reports values far above or below the baseline.
	SideBoth Side = iota
	// SideUpper reports values far above it (latency spikes, error bursts).
	SideUpper
	// SideLower reports values far below it (throughput drops).
	SideLower
)

func (s Side) String() string {
	switch s {
	case SideBoth:
		return "both"
	case SideUpper:
		return "upper"
	case SideLower:
		return "lower"
	}
	return fmt.Sprintf("Side(%d)", int(s))
}

// AnomalyConfig configures a ZScoreDetector.
type AnomalyConfig struct {
	// Window is how many past samples form the baseline (a ring buffer).
	Window int
	// MinSamples is how many baseline samples are needed before the
	// detector reports anything.
	MinSamples int
	// WarningZ and CriticalZ are the |z| thresholds (spec: 3σ; critical 6σ).
	WarningZ, CriticalZ float64
	// Side selects which deviations count.
	Side Side
	// MinStdDev and RelativeStdDevFloor bound σ from below, at
	// max(σ, MinStdDev, RelativeStdDevFloor·|mean|): a perfectly flat
	// baseline would otherwise make any wiggle an infinite-σ event. With
	// both zero and a flat baseline, nothing is reported.
	MinStdDev           float64
	RelativeStdDevFloor float64
}

// DefaultAnomalyConfig returns a 100-sample baseline, 10 samples minimum,
// 3σ warning, 6σ critical, both sides, σ floored at 1% of the mean.
func DefaultAnomalyConfig() AnomalyConfig {
	return AnomalyConfig{Window: 100, MinSamples: 10, WarningZ: 3, CriticalZ: 6, Side: SideBoth, RelativeStdDevFloor: 0.01}
}

// Validate reports the first bad field, naming its value.
func (c AnomalyConfig) Validate() error {
	finite := func(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) }
	switch {
	case c.Window < 2:
		return fmt.Errorf("metrics: AnomalyConfig.Window %d must be at least 2", c.Window)
	case c.MinSamples < 2 || c.MinSamples > c.Window:
		return fmt.Errorf("metrics: AnomalyConfig.MinSamples %d must be in 2..Window (%d)", c.MinSamples, c.Window)
	case !finite(c.WarningZ) || c.WarningZ <= 0:
		return fmt.Errorf("metrics: AnomalyConfig.WarningZ %v must be positive", c.WarningZ)
	case !finite(c.CriticalZ) || c.CriticalZ < c.WarningZ:
		return fmt.Errorf("metrics: AnomalyConfig.CriticalZ %v must be at least WarningZ (%v)", c.CriticalZ, c.WarningZ)
	case c.Side < SideBoth || c.Side > SideLower:
		return fmt.Errorf("metrics: AnomalyConfig.Side %v is unknown", c.Side)
	case !finite(c.MinStdDev) || c.MinStdDev < 0:
		return fmt.Errorf("metrics: AnomalyConfig.MinStdDev %v must be finite and non-negative", c.MinStdDev)
	case !finite(c.RelativeStdDevFloor) || c.RelativeStdDevFloor < 0:
		return fmt.Errorf("metrics: AnomalyConfig.RelativeStdDevFloor %v must be finite and non-negative", c.RelativeStdDevFloor)
	}
	return nil
}

// Detection is the verdict on one sample.
type Detection struct {
	Value, Mean, StdDev float64
	// Z is the signed z-score (value-mean)/σ against the baseline before
	// the sample; 0 while the baseline is too short.
	Z float64
	// Severity is SeverityWarning, SeverityCritical, or "" for normal.
	Severity string
}

// Anomalous reports whether the sample was flagged.
func (d Detection) Anomalous() bool { return d.Severity != "" }

// ZScoreDetector flags samples whose z-score against the previous Window
// samples exceeds the thresholds. The new sample is judged against a
// baseline that does not contain it, and then joins the baseline (so a
// lasting level shift stops being reported once the baseline has absorbed
// it). It is safe for concurrent use.
type ZScoreDetector struct {
	cfg AnomalyConfig

	mu   sync.Mutex
	ring []float64 // ring[(head+i)%len] for i in 0..n is oldest..newest
	head int
	n    int
}

// NewZScoreDetector returns a detector with an empty baseline.
func NewZScoreDetector(cfg AnomalyConfig) (*ZScoreDetector, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &ZScoreDetector{cfg: cfg, ring: make([]float64, cfg.Window)}, nil
}

// Observe judges x against the baseline and then adds it to the baseline.
// NaN and infinite samples are ignored (reported normal, not added).
func (d *ZScoreDetector) Observe(x float64) Detection {
	if math.IsNaN(x) || math.IsInf(x, 0) {
		return Detection{Value: x}
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	det := d.judge(x)
	d.push(x)
	return det
}

func (d *ZScoreDetector) judge(x float64) Detection {
	det := Detection{Value: x}
	if d.n < d.cfg.MinSamples {
		return det
	}
	var sum float64
	for i := range d.n {
		sum += d.at(i)
	}
	mean := sum / float64(d.n)
	var ss float64
	for i := range d.n {
		dev := d.at(i) - mean
		ss += dev * dev
	}
	sigma := math.Sqrt(ss / float64(d.n))
	det.Mean, det.StdDev = mean, sigma
	sigma = max(sigma, d.cfg.MinStdDev, d.cfg.RelativeStdDevFloor*math.Abs(mean))
	if sigma == 0 {
		return det
	}
	det.Z = (x - mean) / sigma
	var z float64
	switch d.cfg.Side {
	case SideUpper:
		z = det.Z
	case SideLower:
		z = -det.Z
	default:
		z = math.Abs(det.Z)
	}
	switch {
	case z > d.cfg.CriticalZ:
		det.Severity = SeverityCritical
	case z > d.cfg.WarningZ:
		det.Severity = SeverityWarning
	}
	return det
}

// at returns the i-th oldest baseline sample.
func (d *ZScoreDetector) at(i int) float64 { return d.ring[(d.head+i)%len(d.ring)] }

func (d *ZScoreDetector) push(x float64) {
	if d.n < len(d.ring) {
		d.ring[(d.head+d.n)%len(d.ring)] = x
		d.n++
		return
	}
	d.ring[d.head] = x // overwrite the oldest
	d.head = (d.head + 1) % len(d.ring)
}

// Baseline returns the baseline samples in chronological order, oldest
// first.
func (d *ZScoreDetector) Baseline() []float64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make([]float64, d.n)
	for i := range out {
		out[i] = d.at(i)
	}
	return out
}
