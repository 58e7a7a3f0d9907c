package pba

import (
	_ "embed"
	"errors"
	"fmt"
	"math"
	"sync"
	"time"

	"github.com/dwcp/dwcp/metrics"
)

// defaultModel was trained on the first 70% of each Norway HSDPA trace
// with DefaultTrainConfig; regenerate it with
//
//	go run ./examples/pba-eval -traces ../shared/traces/norway-hsdpa -save pba/default_model.pbam
//
//go:embed default_model.pbam
var defaultModel []byte

// DefaultModel decodes the embedded model (each call returns a new copy).
func DefaultModel() (*Model, error) { return UnmarshalModel(defaultModel) }

// Sample is one throughput measurement from a transport.
type Sample struct {
	Time time.Time // end of the measurement interval
	// BytesPerSecond is the goodput over the interval.
	BytesPerSecond float64
	// RTT is the smoothed round-trip time, 0 if unknown. It is kept (see
	// Online.RTT) but is not a model input: none of the training traces
	// records it.
	RTT time.Duration
}

// Config configures an Online forecaster.
type Config struct {
	// Model is the LSTM to run; nil uses DefaultModel().
	Model *Model
	// DisableLSTM runs the baselines only.
	DisableLSTM bool
	// Selector tunes the choice among predictors.
	Selector SelectorConfig
	// SampleInterval converts Forecast horizons to samples. 0 measures it
	// (mean gap of the recent samples; 1 s until there are two).
	SampleInterval time.Duration
}

// DefaultConfig returns the configuration NewOnline uses for a zero Config.
func DefaultConfig() Config { return Config{} }

// Validate reports the first bad setting.
func (c Config) Validate() error {
	if c.SampleInterval < 0 {
		return fmt.Errorf("pba: sample interval %v < 0", c.SampleInterval)
	}
	sc := c.Selector
	sc.setDefaults(c.Model)
	return sc.validate()
}

// ErrBadSample is returned by Observe for a sample it cannot use.
var ErrBadSample = errors.New("pba: bad sample")

// bytesPerMbit converts the transport's bytes/s to the model's Mbit/s.
const bytesPerMbit = 1e6 / 8

// Online forecasts the bandwidth of one link from live samples. It runs the
// LSTM and the baselines side by side and answers with the one doing best
// on the current workload class (see Selector). All methods are safe for
// concurrent use; Observe does the work (about 50 µs with the default
// model), Forecast only reads.
type Online struct {
	mu       sync.Mutex
	cfg      Config
	met      *metrics.Metrics
	sel      *Selector
	origin   time.Time
	last     time.Time
	n        int
	gap      float64 // EWMA of the sample gap, seconds
	rtt      time.Duration
	accuracy [numWorkloads + 1]windowScore // point forecasts; [numWorkloads] is all
}

// NewOnline builds a forecaster. m receives the pba metrics (nil: a
// private, unregistered set).
func NewOnline(cfg Config, m *metrics.Metrics) (*Online, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if m == nil {
		m = metrics.New(nil)
	}
	model := cfg.Model
	if model == nil && !cfg.DisableLSTM {
		var err error
		if model, err = DefaultModel(); err != nil {
			return nil, fmt.Errorf("pba: embedded model: %w", err)
		}
	}
	if cfg.DisableLSTM {
		model = nil
	}
	sel, err := NewSelector(cfg.Selector, model)
	if err != nil {
		return nil, err
	}
	o := &Online{cfg: cfg, met: m, sel: sel}
	for i := range o.accuracy {
		o.accuracy[i] = newWindowScore(sel.cfg.ErrorWindow)
	}
	sel.onScore = o.score
	return o, nil
}

// score records one scored forecast of the selector (called under mu).
func (o *Online) score(w Workload, point, lower, actual float64) {
	for _, label := range []string{w.String(), metrics.WorkloadAll} {
		o.met.PBAPredictions.WithLabelValues(label).Inc()
		if lower > MissFactor*actual {
			o.met.PBAPredictionMisses.WithLabelValues(label).Inc()
		}
	}
	o.accuracy[w].add(point, actual)
	o.accuracy[numWorkloads].add(point, actual)
	o.met.PBAPredictionAccuracy.WithLabelValues(w.String()).Set(accuracyOf(&o.accuracy[w]))
	o.met.PBAPredictionAccuracy.WithLabelValues(metrics.WorkloadAll).Set(accuracyOf(&o.accuracy[numWorkloads]))
}

func accuracyOf(w *windowScore) float64 { return 100 * (1 - math.Min(1, w.wape())) }

// Observe feeds one sample. Samples must come in time order with a finite,
// non-negative rate; others are rejected with ErrBadSample and ignored.
func (o *Online) Observe(s Sample) error {
	if !(s.BytesPerSecond >= 0) || math.IsInf(s.BytesPerSecond, 0) || s.RTT < 0 {
		return fmt.Errorf("%w: rate %v, RTT %v", ErrBadSample, s.BytesPerSecond, s.RTT)
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.n > 0 && !s.Time.After(o.last) {
		return fmt.Errorf("%w: time %v not after the previous sample %v", ErrBadSample, s.Time, o.last)
	}
	if o.n == 0 {
		o.origin = s.Time
	} else {
		gap := s.Time.Sub(o.last).Seconds()
		if o.n == 1 {
			o.gap = gap
		} else {
			o.gap = 0.9*o.gap + 0.1*gap
		}
	}
	o.last = s.Time
	o.n++
	if s.RTT > 0 {
		if o.rtt == 0 {
			o.rtt = s.RTT
		} else {
			o.rtt = (7*o.rtt + s.RTT) / 8
		}
	}
	start := time.Now()
	o.sel.Observe(s.Time.Sub(o.origin).Seconds(), s.BytesPerSecond/bytesPerMbit)
	o.met.PBAInferenceLatency.WithLabelValues(metrics.PredictorEnsemble).Observe(time.Since(start).Seconds())
	if l := o.sel.lstm; l != nil && l.lastRun > 0 {
		o.met.PBAInferenceLatency.WithLabelValues(metrics.PredictorLSTM).Observe(l.lastRun.Seconds())
	}
	return nil
}

// horizonSamples converts a horizon to a number of samples (>= 1).
func (o *Online) horizonSamples(h time.Duration) int {
	gap := o.gap
	if o.cfg.SampleInterval > 0 {
		gap = o.cfg.SampleInterval.Seconds()
	} else if o.n < 2 {
		gap = 1
	}
	if gap <= 0 {
		return 1
	}
	return max(1, min(1024, int(math.Round(h.Seconds()/gap))))
}

// Forecast returns the expected mean bandwidth over the next horizon
// (bytes/s) and a conservative value it falls below only rarely (the one
// to base downtime decisions on). Both are 0 before the first sample.
func (o *Online) Forecast(horizon time.Duration) (point, lower float64) {
	start := time.Now()
	o.mu.Lock()
	h := o.horizonSamples(horizon)
	point = o.sel.Predict(h) * bytesPerMbit
	lower = math.Min(point, o.sel.PredictLower(h)*bytesPerMbit)
	chosen := o.sel.Chosen(h)
	o.mu.Unlock()
	d := time.Since(start).Seconds()
	o.met.PBAInferenceLatency.WithLabelValues(chosen).Observe(d)
	o.met.MigrationLatency.WithLabelValues(metrics.ComponentPBA).Observe(d)
	return point, lower
}

// Chosen names the predictor Forecast(horizon) uses now.
func (o *Online) Chosen(horizon time.Duration) string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.sel.Chosen(o.horizonSamples(horizon))
}

// RTT returns the smoothed RTT of the samples (0 if none carried one).
func (o *Online) RTT() time.Duration {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.rtt
}

// Workload returns the class of the current window of samples.
func (o *Online) Workload() Workload {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.sel.currentClass()
}

// Accuracy returns 100*(1-min(1,WAPE)) of the point forecasts (one sample
// ahead) over the recent window, overall; NaN-free (0 before any score).
func (o *Online) Accuracy() float64 {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.accuracy[numWorkloads].n == 0 {
		return 0
	}
	return accuracyOf(&o.accuracy[numWorkloads])
}
