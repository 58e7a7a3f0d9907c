package metrics

import (
	"fmt"
	"math"
	"slices"
	"sync"
	"time"
)

// SLAConfig configures an SLAEvaluator. The targets are the spec's
// (section 5.1).
type SLAConfig struct {
	// Window is the length of one evaluation window.
	Window time.Duration
	// History is how many evaluated windows dwcp_v3_sla_compliance covers
	// (60 windows of 10 s = the last 10 minutes).
	History int
	// LatencyQuantile and LatencyTarget: a window meets the latency SLA
	// when its LatencyQuantile (nearest rank) is below LatencyTarget
	// (spec: P99 < 500 ms).
	LatencyQuantile float64
	LatencyTarget   time.Duration
	// ThroughputTarget in bytes per second of busy time (spec: >= 2.4 GB/s).
	ThroughputTarget float64
	// ErrorRateTarget: failed operations / operations below it (spec: 1%).
	ErrorRateTarget float64
	// AvailabilityTarget: served requests / requests above it (spec: 99.9%).
	AvailabilityTarget float64
	// MaxLatencySamples bounds the memory of one window; beyond it a
	// uniform reservoir keeps this many samples for the window's quantile
	// (the SLA verdict itself always counts every sample exactly).
	MaxLatencySamples int
	// Anomaly detectors, fed once per window with the window's latency
	// quantile, throughput, error rate, and each resource's peak percent.
	LatencyAnomaly, ThroughputAnomaly, ErrorAnomaly, ResourceAnomaly AnomalyConfig
	// EvaluateInterval is how often a background goroutine closes finished
	// windows so the gauges move while no observations arrive. Zero starts
	// no goroutine; windows then close on the next Observe or Evaluate.
	EvaluateInterval time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// DefaultSLAConfig returns the spec's targets over 10 s windows.
func DefaultSLAConfig() SLAConfig {
	lat := DefaultAnomalyConfig()
	lat.Side = SideUpper
	tp := DefaultAnomalyConfig()
	tp.Side = SideLower
	errs := DefaultAnomalyConfig()
	errs.Side = SideUpper
	// A run of error-free windows has σ = 0; half a percentage point is the
	// noise floor, so a 1.5% window is a 3σ warning and 3% a 6σ critical.
	errs.MinStdDev = 0.005
	res := DefaultAnomalyConfig()
	res.Side = SideUpper
	res.MinStdDev = 1 // percentage point
	return SLAConfig{
		Window:             10 * time.Second,
		History:            60,
		LatencyQuantile:    0.99,
		LatencyTarget:      500 * time.Millisecond,
		ThroughputTarget:   2.4e9,
		ErrorRateTarget:    0.01,
		AvailabilityTarget: 0.999,
		MaxLatencySamples:  1 << 16,
		LatencyAnomaly:     lat,
		ThroughputAnomaly:  tp,
		ErrorAnomaly:       errs,
		ResourceAnomaly:    res,
		EvaluateInterval:   time.Second,
	}
}

// Validate reports the first bad field, naming its value.
func (c SLAConfig) Validate() error {
	ratio := func(v float64) bool { return v > 0 && v < 1 }
	switch {
	case c.Window <= 0:
		return fmt.Errorf("metrics: SLAConfig.Window %v must be positive", c.Window)
	case c.History <= 0:
		return fmt.Errorf("metrics: SLAConfig.History %d must be positive", c.History)
	case !ratio(c.LatencyQuantile):
		return fmt.Errorf("metrics: SLAConfig.LatencyQuantile %v must be in (0, 1)", c.LatencyQuantile)
	case c.LatencyTarget <= 0:
		return fmt.Errorf("metrics: SLAConfig.LatencyTarget %v must be positive", c.LatencyTarget)
	case !(c.ThroughputTarget > 0) || math.IsInf(c.ThroughputTarget, 0):
		return fmt.Errorf("metrics: SLAConfig.ThroughputTarget %v must be positive and finite", c.ThroughputTarget)
	case !ratio(c.ErrorRateTarget):
		return fmt.Errorf("metrics: SLAConfig.ErrorRateTarget %v must be in (0, 1)", c.ErrorRateTarget)
	case !ratio(c.AvailabilityTarget):
		return fmt.Errorf("metrics: SLAConfig.AvailabilityTarget %v must be in (0, 1)", c.AvailabilityTarget)
	case c.MaxLatencySamples <= 0:
		return fmt.Errorf("metrics: SLAConfig.MaxLatencySamples %d must be positive", c.MaxLatencySamples)
	case c.EvaluateInterval < 0:
		return fmt.Errorf("metrics: SLAConfig.EvaluateInterval %v is negative", c.EvaluateInterval)
	}
	for name, a := range map[string]AnomalyConfig{
		"LatencyAnomaly": c.LatencyAnomaly, "ThroughputAnomaly": c.ThroughputAnomaly,
		"ErrorAnomaly": c.ErrorAnomaly, "ResourceAnomaly": c.ResourceAnomaly,
	} {
		if err := a.Validate(); err != nil {
			return fmt.Errorf("metrics: SLAConfig.%s: %w", name, err)
		}
	}
	return nil
}

// WindowResult is the evaluation of one finished window. A field's Has*
// flag is false when the window had no observation of that kind; such a
// window does not count towards that SLA's compliance.
type WindowResult struct {
	Start, End time.Time

	HasLatency      bool
	LatencyQuantile time.Duration // nearest rank, from the (reservoir) samples
	LatencyMet      bool

	HasThroughput bool
	Throughput    float64 // bytes per second of busy time
	ThroughputMet bool

	HasErrorRate bool
	ErrorRate    float64
	ErrorRateMet bool

	HasAvailability bool
	Availability    float64
	AvailabilityMet bool

	Anomalies []Anomaly
}

// Anomaly is one detection, as counted in dwcp_v3_anomaly_detections_total.
type Anomaly struct {
	Type     string // AnomalyLatencySpike, ...
	Resource string // for AnomalyResourceSaturation: which resource
	Detection
}

// window accumulates one window's observations.
type window struct {
	latencies        []time.Duration // reservoir
	latencyN         uint64
	latencyBelow     uint64 // samples strictly below the target
	bytes            float64
	busy             time.Duration
	ops, failed      uint64
	requests, served uint64
	resourcePeak     map[string]float64
}

// SLAEvaluator turns observations into per-window SLA verdicts, sets
// dwcp_v3_sla_compliance{sla_type} to the fraction of the last History
// evaluated windows that met each SLA, and counts z-score anomalies of the
// per-window statistics in dwcp_v3_anomaly_detections_total. Windows are
// fixed: [start+k·Window, start+(k+1)·Window) from the evaluator's creation.
// Its methods are safe for concurrent use.
type SLAEvaluator struct {
	m   *Metrics
	cfg SLAConfig
	now func() time.Time

	mu      sync.Mutex
	start   time.Time
	index   int64 // index of the current window
	cur     window
	rng     uint64 // xorshift state for the reservoir
	history map[string][]bool
	latDet  *ZScoreDetector
	tpDet   *ZScoreDetector
	errDet  *ZScoreDetector
	resDet  map[string]*ZScoreDetector

	stop      chan struct{}
	done      chan struct{}
	closeOnce sync.Once
}

// NewSLAEvaluator starts the first window now. A nil m records into metrics
// registered nowhere.
func NewSLAEvaluator(m *Metrics, cfg SLAConfig) (*SLAEvaluator, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if m == nil {
		m = New(nil)
	}
	e := &SLAEvaluator{m: m, cfg: cfg, now: cfg.Now, rng: 0x9E3779B97F4A7C15, history: map[string][]bool{}, resDet: map[string]*ZScoreDetector{}}
	if e.now == nil {
		e.now = time.Now
	}
	// The configs were validated above, so these cannot fail.
	e.latDet, _ = NewZScoreDetector(cfg.LatencyAnomaly)
	e.tpDet, _ = NewZScoreDetector(cfg.ThroughputAnomaly)
	e.errDet, _ = NewZScoreDetector(cfg.ErrorAnomaly)
	for _, r := range resourceTypes {
		e.resDet[r], _ = NewZScoreDetector(cfg.ResourceAnomaly)
	}
	e.start = e.now()
	if cfg.EvaluateInterval > 0 {
		e.stop, e.done = make(chan struct{}), make(chan struct{})
		go e.loop()
	}
	return e, nil
}

func (e *SLAEvaluator) loop() {
	defer close(e.done)
	t := time.NewTicker(e.cfg.EvaluateInterval)
	defer t.Stop()
	for {
		select {
		case <-e.stop:
			return
		case <-t.C:
			e.Evaluate()
		}
	}
}

// Close stops the background goroutine and waits for it. Observations after
// Close are still accepted. It is safe to call more than once.
func (e *SLAEvaluator) Close() error {
	e.closeOnce.Do(func() {
		if e.stop != nil {
			close(e.stop)
			<-e.done
		}
	})
	return nil
}

// ObserveLatency records the latency of one unit of work.
func (e *SLAEvaluator) ObserveLatency(d time.Duration) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.rollLocked()
	w := &e.cur
	w.latencyN++
	if d < e.cfg.LatencyTarget {
		w.latencyBelow++
	}
	if len(w.latencies) < e.cfg.MaxLatencySamples {
		w.latencies = append(w.latencies, d)
		return
	}
	// Reservoir sampling (Algorithm R): keep each sample with probability
	// MaxLatencySamples/latencyN.
	if j := e.nextRand() % w.latencyN; j < uint64(len(w.latencies)) {
		w.latencies[j] = d
	}
}

// ObserveTransfer records bytes moved during busy time (the time the
// transfer was actually running). Window throughput is total bytes over
// total busy time, not an average of rates.
func (e *SLAEvaluator) ObserveTransfer(bytes uint64, busy time.Duration) {
	if busy <= 0 {
		return
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	e.rollLocked()
	e.cur.bytes += float64(bytes)
	e.cur.busy += busy
}

// ObserveOperation records one operation and whether it failed (error rate).
func (e *SLAEvaluator) ObserveOperation(failed bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.rollLocked()
	e.cur.ops++
	if failed {
		e.cur.failed++
	}
}

// ObserveRequest records one request to the service (a migration request,
// a health probe) and whether it was served; unserved requests are
// unavailability.
func (e *SLAEvaluator) ObserveRequest(served bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.rollLocked()
	e.cur.requests++
	if served {
		e.cur.served++
	}
}

// ObserveUtilization records a resource utilisation sample in percent; the
// window's peak per resource feeds the resource_saturation detector. It
// implements UtilizationObserver, so a ResourceSampler can feed it.
func (e *SLAEvaluator) ObserveUtilization(resource string, percent float64) {
	if _, ok := e.resDet[resource]; !ok || math.IsNaN(percent) {
		return
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	e.rollLocked()
	if e.cur.resourcePeak == nil {
		e.cur.resourcePeak = map[string]float64{}
	}
	if p, ok := e.cur.resourcePeak[resource]; !ok || percent > p {
		e.cur.resourcePeak[resource] = percent
	}
}

// Evaluate closes every window that has ended and returns its result (nil
// when none ended since the last call).
func (e *SLAEvaluator) Evaluate() []WindowResult {
	e.mu.Lock()
	defer e.mu.Unlock()
	if r, ok := e.rollLocked(); ok {
		return []WindowResult{r}
	}
	return nil
}

// Compliance returns the fraction of the last History evaluated windows
// that met slaType, and false before any window was evaluated for it.
func (e *SLAEvaluator) Compliance(slaType string) (float64, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return compliance(e.history[slaType])
}

func compliance(h []bool) (float64, bool) {
	if len(h) == 0 {
		return 0, false
	}
	met := 0
	for _, ok := range h {
		if ok {
			met++
		}
	}
	return float64(met) / float64(len(h)), true
}

// rollLocked closes the current window if the clock has left it. Windows
// that passed without observations need no evaluation, so one close is
// enough however long the gap. A clock that goes backwards keeps the
// current window.
func (e *SLAEvaluator) rollLocked() (WindowResult, bool) {
	idx := int64(e.now().Sub(e.start) / e.cfg.Window)
	if idx <= e.index {
		return WindowResult{}, false
	}
	start := e.start.Add(time.Duration(e.index) * e.cfg.Window)
	r := e.closeLocked(start, start.Add(e.cfg.Window))
	e.index = idx
	e.cur = window{latencies: e.cur.latencies[:0]}
	return r, true
}

func (e *SLAEvaluator) closeLocked(start, end time.Time) WindowResult {
	w := &e.cur
	r := WindowResult{Start: start, End: end}
	if w.latencyN > 0 {
		r.HasLatency = true
		// Nearest rank: the quantile is below the target iff at least
		// ceil(q·n) samples are.
		need := uint64(math.Ceil(e.cfg.LatencyQuantile * float64(w.latencyN)))
		r.LatencyMet = w.latencyBelow >= need
		slices.Sort(w.latencies)
		rank := int(math.Ceil(e.cfg.LatencyQuantile*float64(len(w.latencies)))) - 1
		r.LatencyQuantile = w.latencies[max(rank, 0)]
		e.record(SLALatency, r.LatencyMet)
		e.detect(&r, AnomalyLatencySpike, "", e.latDet, r.LatencyQuantile.Seconds())
	}
	if w.busy > 0 {
		r.HasThroughput = true
		r.Throughput = w.bytes / w.busy.Seconds()
		r.ThroughputMet = r.Throughput >= e.cfg.ThroughputTarget
		e.record(SLAThroughput, r.ThroughputMet)
		e.detect(&r, AnomalyThroughputDrop, "", e.tpDet, r.Throughput)
	}
	if w.ops > 0 {
		r.HasErrorRate = true
		r.ErrorRate = float64(w.failed) / float64(w.ops)
		r.ErrorRateMet = r.ErrorRate < e.cfg.ErrorRateTarget
		e.record(SLAErrorRate, r.ErrorRateMet)
		e.detect(&r, AnomalyErrorBurst, "", e.errDet, r.ErrorRate)
	}
	if w.requests > 0 {
		r.HasAvailability = true
		r.Availability = float64(w.served) / float64(w.requests)
		r.AvailabilityMet = r.Availability > e.cfg.AvailabilityTarget
		e.record(SLAAvailability, r.AvailabilityMet)
	}
	for _, res := range resourceTypes {
		if p, ok := w.resourcePeak[res]; ok {
			e.detect(&r, AnomalyResourceSaturation, res, e.resDet[res], p)
		}
	}
	return r
}

func (e *SLAEvaluator) record(slaType string, met bool) {
	h := append(e.history[slaType], met)
	if len(h) > e.cfg.History {
		h = h[len(h)-e.cfg.History:]
	}
	e.history[slaType] = h
	c, _ := compliance(h)
	e.m.SLACompliance.WithLabelValues(slaType).Set(c)
}

func (e *SLAEvaluator) detect(r *WindowResult, anomalyType, resource string, d *ZScoreDetector, v float64) {
	det := d.Observe(v)
	if !det.Anomalous() {
		return
	}
	r.Anomalies = append(r.Anomalies, Anomaly{Type: anomalyType, Resource: resource, Detection: det})
	e.m.AnomalyDetections.WithLabelValues(anomalyType, det.Severity).Inc()
}

// nextRand is xorshift64*: deterministic, so tests are reproducible.
func (e *SLAEvaluator) nextRand() uint64 {
	e.rng ^= e.rng >> 12
	e.rng ^= e.rng << 25
	e.rng ^= e.rng >> 27
	return e.rng * 2685821657736338717
}

var _ UtilizationObserver = (*SLAEvaluator)(nil)
