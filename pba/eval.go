package pba

import (
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/dwcp/dwcp/metrics"
)

// Workload is the class of a sample, from the coefficient of variation
// (population standard deviation / mean) of the ClassWindow samples before
// it: stable < 0.15 <= variable < 0.5 <= bursty.
type Workload int

const (
	Stable Workload = iota
	Variable
	Bursty
	numWorkloads
)

// ClassWindow is the number of previous samples that classify a sample.
const ClassWindow = 20

// Class thresholds on the coefficient of variation.
const (
	StableBelowCV   = 0.15
	VariableBelowCV = 0.5
)

// String returns the workload label value of the metrics catalogue.
func (w Workload) String() string {
	switch w {
	case Stable:
		return metrics.WorkloadStable
	case Variable:
		return metrics.WorkloadVariable
	default:
		return metrics.WorkloadBursty
	}
}

// Classify returns the workload class of the sample that follows prev (the
// caller passes the last ClassWindow samples, or fewer at the start). An
// empty or all-zero window is bursty: nothing is known about it.
func Classify(prev []float64) Workload {
	cv := CoefficientOfVariation(prev)
	switch {
	case cv < StableBelowCV:
		return Stable
	case cv < VariableBelowCV:
		return Variable
	default:
		return Bursty
	}
}

// CoefficientOfVariation is the population standard deviation of xs divided
// by its mean; +Inf when the mean is not positive.
func CoefficientOfVariation(xs []float64) float64 {
	if len(xs) == 0 {
		return math.Inf(1)
	}
	var s, ss float64
	for _, x := range xs {
		s += x
	}
	mean := s / float64(len(xs))
	if mean <= 0 {
		return math.Inf(1)
	}
	for _, x := range xs {
		ss += (x - mean) * (x - mean)
	}
	return math.Sqrt(ss/float64(len(xs))) / mean
}

// MissFactor: a prediction misses when it exceeds the actual value by more
// than 20%, i.e. predicted > 1.2 * actual.
const MissFactor = 1.2

// Score accumulates the error of one predictor on one class. The zero value
// is ready to use.
type Score struct {
	Predictions int
	Misses      int
	SumAbsErr   float64
	SumActual   float64
	Latencies   []time.Duration // one per prediction, when measured
}

// Add scores one prediction against the actual value.
func (s *Score) Add(predicted, actual float64) {
	s.Predictions++
	s.SumAbsErr += math.Abs(predicted - actual)
	s.SumActual += actual
	if predicted > MissFactor*actual {
		s.Misses++
	}
}

// WAPE is sum|predicted-actual| / sum actual; NaN with no actual volume.
func (s *Score) WAPE() float64 {
	if s.SumActual <= 0 {
		return math.NaN()
	}
	return s.SumAbsErr / s.SumActual
}

// Accuracy is 100 * (1 - min(1, WAPE)).
func (s *Score) Accuracy() float64 { return 100 * (1 - math.Min(1, s.WAPE())) }

// MissPercent is the percentage of predictions that were misses.
func (s *Score) MissPercent() float64 {
	if s.Predictions == 0 {
		return math.NaN()
	}
	return 100 * float64(s.Misses) / float64(s.Predictions)
}

// LatencyQuantile returns the q-quantile (0..1) of the measured prediction
// latencies, 0 when none were measured.
func (s *Score) LatencyQuantile(q float64) time.Duration {
	if len(s.Latencies) == 0 {
		return 0
	}
	l := slices.Clone(s.Latencies)
	slices.Sort(l)
	i := int(math.Ceil(q*float64(len(l)))) - 1
	return l[max(0, min(len(l)-1, i))]
}

// ClassScores holds one Score per workload class plus the overall one.
type ClassScores struct {
	ByClass [numWorkloads]Score
	All     Score
}

func (c *ClassScores) add(w Workload, predicted, actual float64, lat time.Duration, timed bool) {
	c.ByClass[w].Add(predicted, actual)
	c.All.Add(predicted, actual)
	if timed {
		c.ByClass[w].Latencies = append(c.ByClass[w].Latencies, lat)
		c.All.Latencies = append(c.All.Latencies, lat)
	}
}

// EvalResult is the outcome for one forecast of one predictor: its point
// forecast, or (Lower true) its conservative forecast.
type EvalResult struct {
	Predictor string
	Lower     bool
	Scores    ClassScores
}

// Label names the row: the predictor, with "/lower" for a lower forecast.
func (r *EvalResult) Label() string {
	if r.Lower {
		return r.Predictor + "/lower"
	}
	return r.Predictor
}

// EvalOptions configure Evaluate.
type EvalOptions struct {
	// TrainFrac is the fraction of each trace (from its start) that is only
	// observed, never scored. The rest is scored.
	TrainFrac float64
	// Horizon is the forecast horizon in samples; the target is the mean of
	// the next Horizon samples.
	Horizon int
	// MeasureLatency records, per prediction, the time from the arrival
	// of the latest sample to the forecast: its Observe plus the Predict
	// call (plus PredictLower for the lower forecast). Predictors that do
	// their work in Observe (the Selector) are thus timed fairly.
	MeasureLatency bool
}

// Evaluate replays every trace through every predictor (each Reset at the
// start of a trace) and scores the forecasts made before each sample of the
// evaluation part: one-step-ahead for Horizon 1. A LowerPredictor is also
// scored on its lower forecast. Predictors are used in turn, never
// concurrently.
func Evaluate(traces []*Trace, preds []Predictor, opt EvalOptions) ([]EvalResult, error) {
	if !(opt.TrainFrac >= 0 && opt.TrainFrac < 1) {
		return nil, fmt.Errorf("pba: train fraction %v outside [0, 1)", opt.TrainFrac)
	}
	if opt.Horizon < 1 {
		return nil, fmt.Errorf("pba: horizon %d must be >= 1", opt.Horizon)
	}
	var results []EvalResult
	for _, p := range preds {
		point := EvalResult{Predictor: p.Name()}
		lp, hasLower := p.(LowerPredictor)
		lower := EvalResult{Predictor: p.Name(), Lower: true}
		for _, tr := range traces {
			x := tr.Throughput
			split := tr.Split(opt.TrainFrac)
			p.Reset()
			var observeTime time.Duration // of the latest sample
			for i := range x {
				if i >= split && i >= 1 && i+opt.Horizon <= len(x) {
					w := Classify(x[max(0, i-ClassWindow):i])
					actual := mean(x[i : i+opt.Horizon])
					start := time.Now()
					pred := p.Predict(opt.Horizon)
					lat := observeTime + time.Since(start)
					point.Scores.add(w, pred, actual, lat, opt.MeasureLatency)
					if hasLower {
						start = time.Now()
						lo := lp.PredictLower(opt.Horizon)
						lower.Scores.add(w, lo, actual, lat+time.Since(start), opt.MeasureLatency)
					}
				}
				start := time.Now()
				p.Observe(tr.Times[i], x[i])
				observeTime = time.Since(start)
			}
		}
		results = append(results, point)
		if hasLower {
			results = append(results, lower)
		}
	}
	return results, nil
}

func mean(xs []float64) float64 {
	var s float64
	for _, x := range xs {
		s += x
	}
	return s / float64(len(xs))
}
