package pba

import (
	"fmt"
	"math"

	"github.com/dwcp/dwcp/metrics"
)

// windowScore is a Score over the last n predictions only.
type windowScore struct {
	absErr, actual []float64
	miss           []bool
	pos, n         int
	sumErr, sumAct float64
	misses         int
}

func newWindowScore(size int) windowScore {
	return windowScore{absErr: make([]float64, size), actual: make([]float64, size), miss: make([]bool, size)}
}

func (w *windowScore) add(pred, actual float64) {
	if w.n == len(w.absErr) {
		w.sumErr -= w.absErr[w.pos]
		w.sumAct -= w.actual[w.pos]
		if w.miss[w.pos] {
			w.misses--
		}
	} else {
		w.n++
	}
	e := math.Abs(pred - actual)
	m := pred > MissFactor*actual
	w.absErr[w.pos], w.actual[w.pos], w.miss[w.pos] = e, actual, m
	w.sumErr += e
	w.sumAct += actual
	if m {
		w.misses++
	}
	w.pos = (w.pos + 1) % len(w.absErr)
}

func (w *windowScore) wape() float64 {
	if w.sumAct <= 0 {
		return math.Inf(1)
	}
	return w.sumErr / w.sumAct
}

func (w *windowScore) missFrac() float64 {
	if w.n == 0 {
		return 1
	}
	return float64(w.misses) / float64(w.n)
}

// SelectorConfig configures a Selector.
type SelectorConfig struct {
	// Horizons (in samples) whose forecasts are scored to choose a
	// predictor; a forecast at another horizon uses the closest one's
	// scores. Default: the model's horizons, or 1 and 5 without a model.
	Horizons []int
	// ErrorWindow is how many recent scored predictions per predictor,
	// horizon and workload class decide the choice (default 100).
	ErrorWindow int
	// MinScored is how many scored predictions a class needs before the
	// scores override the default choice (default 10).
	MinScored int
	// MissTarget is the fraction of misses the conservative forecast aims
	// below (default 0.05).
	MissTarget float64
	// SwitchMargin: another predictor replaces the default one (the LSTM
	// when ready, else the last value) only if its recent WAPE is lower by
	// this fraction (default 0.1), so that noise in short windows does not
	// make the choice flap. Negative means 0.
	SwitchMargin float64
}

func (c *SelectorConfig) setDefaults(m *Model) {
	if len(c.Horizons) == 0 {
		if m != nil {
			c.Horizons = append([]int(nil), m.shape.Horizons...)
		} else {
			c.Horizons = []int{1, 5}
		}
	}
	if c.ErrorWindow == 0 {
		c.ErrorWindow = 100
	}
	if c.MinScored == 0 {
		c.MinScored = 10
	}
	if c.MissTarget == 0 {
		c.MissTarget = 0.05
	}
	if c.SwitchMargin == 0 {
		c.SwitchMargin = 0.1
	}
	c.SwitchMargin = max(0, c.SwitchMargin)
}

func (c *SelectorConfig) validate() error {
	for i, h := range c.Horizons {
		if h < 1 || h > 1024 || (i > 0 && h <= c.Horizons[i-1]) {
			return fmt.Errorf("pba: selector horizons %v must ascend within 1..1024", c.Horizons)
		}
	}
	switch {
	case c.ErrorWindow < 1 || c.ErrorWindow > 1<<20:
		return fmt.Errorf("pba: error window %d outside 1..%d", c.ErrorWindow, 1<<20)
	case c.MinScored < 1:
		return fmt.Errorf("pba: min scored %d < 1", c.MinScored)
	case !(c.MissTarget > 0 && c.MissTarget < 1):
		return fmt.Errorf("pba: miss target %v outside (0, 1)", c.MissTarget)
	case !(c.SwitchMargin < 1):
		return fmt.Errorf("pba: switch margin %v must be < 1", c.SwitchMargin)
	}
	return nil
}

// Selector runs every predictor side by side, scores each one's forecasts
// as the actual samples arrive, and forecasts with the predictor whose
// recent WAPE is lowest for the current workload class and horizon. Until a
// class has MinScored scores it uses the LSTM when it is ready and the last
// value otherwise. Its conservative forecast picks, among the LSTM's lower
// quantile and RobustMPC, the most accurate one whose recent misses are
// below MissTarget (or the one with the fewest misses).
//
// Selector implements LowerPredictor (name "ensemble"), so Evaluate can
// score it like any other predictor. It is not safe for concurrent use.
type Selector struct {
	cfg   SelectorConfig
	point []Predictor // candidates; [0] is LastValue
	lstm  *LSTMPredictor
	rmpc  *RobustMPC
	// Recent samples, newest last, for targets and the workload class.
	hist []float64
	n    int // samples observed
	// pending[hi][slot] holds the forecasts made after sample n, in slot
	// n % (h+1): point candidates, the two lower candidates, then the
	// selector's own point and lower forecasts.
	pending [][][]float64
	class   [][]Workload
	// scores[hi][class][candidate]; lower candidates follow the points.
	scores [][numWorkloads][]windowScore
	// calib[hi] scales the conservative forecast so that its miss rate
	// tracks calibTarget on this link (adaptive conformal inference).
	calib []float64
	// onScore, if set, receives each scored forecast of the selector itself
	// at Horizons[0] (for metrics).
	onScore func(w Workload, point, lower, actual float64)
}

const (
	lowerLSTM = iota
	lowerRobustMPC
	numLower
	// The selector's own point and lower forecasts follow in pending rows.
	selPoint = numLower
	selLower = numLower + 1
)

// NewSelector builds a Selector over the baselines and, if m is not nil,
// an LSTMPredictor of m.
func NewSelector(cfg SelectorConfig, m *Model) (*Selector, error) {
	cfg.setDefaults(m)
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	s := &Selector{cfg: cfg, rmpc: &RobustMPC{}, calib: make([]float64, len(cfg.Horizons))}
	for i := range s.calib {
		s.calib[i] = 1
	}
	ewma, _ := NewEWMA(0.3)
	holt, _ := NewHolt(DefaultHoltAlpha, DefaultHoltBeta)
	s.point = []Predictor{&LastValue{}, ewma, &Harmonic{}, holt}
	if m != nil {
		s.lstm = NewLSTMPredictor(m)
		s.point = append(s.point, s.lstm)
	}
	maxH := cfg.Horizons[len(cfg.Horizons)-1]
	s.hist = make([]float64, max(ClassWindow, maxH))
	nc := len(s.point) + numLower
	for _, h := range cfg.Horizons {
		p := make([][]float64, h+1)
		for i := range p {
			p[i] = make([]float64, nc+2)
		}
		s.pending = append(s.pending, p)
		s.class = append(s.class, make([]Workload, h+1))
		var sc [numWorkloads][]windowScore
		for w := range sc {
			sc[w] = make([]windowScore, nc)
			for c := range sc[w] {
				sc[w][c] = newWindowScore(cfg.ErrorWindow)
			}
		}
		s.scores = append(s.scores, sc)
	}
	return s, nil
}

func (s *Selector) Name() string { return metrics.PredictorEnsemble }

func (s *Selector) Reset() {
	for _, p := range s.point {
		p.Reset()
	}
	s.rmpc.Reset()
	for i := range s.calib {
		s.calib[i] = 1
	}
	clear(s.hist)
	s.n = 0
	for hi := range s.scores {
		for w := range s.scores[hi] {
			for c := range s.scores[hi][w] {
				s.scores[hi][w][c] = newWindowScore(s.cfg.ErrorWindow)
			}
		}
	}
}

// recent returns the last k samples (k <= len(hist), k <= n) in order,
// using buf.
func (s *Selector) recent(buf []float64, k int) []float64 {
	k = min(k, s.n, len(s.hist))
	return append(buf[:0], s.hist[len(s.hist)-k:]...)
}

// currentClass classifies the next sample from the samples so far.
func (s *Selector) currentClass() Workload {
	var buf [ClassWindow]float64
	return Classify(s.recent(buf[:], ClassWindow))
}

// Observe scores the forecasts that this sample completes, then feeds it
// to every predictor and records their new forecasts.
func (s *Selector) Observe(t, v float64) {
	copy(s.hist, s.hist[1:])
	s.hist[len(s.hist)-1] = v
	s.n++
	for hi, h := range s.cfg.Horizons {
		made := s.n - h // forecasts made after sample `made` target samples made+1..n
		if made < 1 {
			continue
		}
		actual := mean(s.hist[len(s.hist)-h:])
		slot := made % (h + 1)
		w := s.class[hi][slot]
		f := s.pending[hi][slot]
		np := len(s.point)
		if hi == 0 && s.onScore != nil {
			s.onScore(w, f[np+selPoint], f[np+selLower], actual)
		}
		s.calibrate(hi, f[np+selLower], actual)
		for c := 0; c < np+numLower; c++ {
			s.scores[hi][w][c].add(f[c], actual)
		}
	}
	for _, p := range s.point {
		p.Observe(t, v)
	}
	s.rmpc.Observe(t, v)
	w := s.currentClass()
	np := len(s.point)
	for hi, h := range s.cfg.Horizons {
		slot := s.n % (h + 1)
		s.class[hi][slot] = w
		f := s.pending[hi][slot]
		for c, p := range s.point {
			f[c] = p.Predict(h)
		}
		f[np+lowerRobustMPC] = s.rmpc.Predict(h)
		f[np+lowerLSTM] = f[np+lowerRobustMPC]
		if s.lstm != nil && s.lstm.Ready() {
			f[np+lowerLSTM] = s.lstm.PredictLower(h)
		}
		f[np+selPoint] = s.Predict(h)
		f[np+selLower] = s.PredictLower(h)
	}
}

func (s *Selector) horizonIndex(h int) int {
	best := 0
	for i, th := range s.cfg.Horizons {
		if abs(th-h) < abs(s.cfg.Horizons[best]-h) {
			best = i
		}
	}
	return best
}

// choosePoint returns the index of the point candidate to use.
func (s *Selector) choosePoint(hi int, w Workload) int {
	sc := s.scores[hi][w]
	def := 0
	if s.lstm != nil && s.lstm.Ready() {
		def = len(s.point) - 1
	}
	if sc[def].n < s.cfg.MinScored {
		return def
	}
	best, bestWAPE := def, sc[def].wape()*(1-s.cfg.SwitchMargin)
	for c := range s.point {
		if sc[c].n >= s.cfg.MinScored && sc[c].wape() < bestWAPE {
			best, bestWAPE = c, sc[c].wape()
		}
	}
	if best == len(s.point)-1 && s.lstm != nil && !s.lstm.Ready() {
		return 0
	}
	return best
}

// chooseLower returns lowerLSTM or lowerRobustMPC.
func (s *Selector) chooseLower(hi int, w Workload) int {
	if s.lstm == nil || !s.lstm.Ready() {
		return lowerRobustMPC
	}
	np := len(s.point)
	a, b := &s.scores[hi][w][np+lowerLSTM], &s.scores[hi][w][np+lowerRobustMPC]
	if a.n < s.cfg.MinScored {
		return lowerLSTM
	}
	okA, okB := a.missFrac() < s.cfg.MissTarget, b.missFrac() < s.cfg.MissTarget
	switch {
	case okA && okB:
		if b.wape() < a.wape() {
			return lowerRobustMPC
		}
		return lowerLSTM
	case okA:
		return lowerLSTM
	case okB:
		return lowerRobustMPC
	case b.missFrac() < a.missFrac():
		return lowerRobustMPC
	default:
		return lowerLSTM
	}
}

// Chosen returns the name of the predictor the point forecast at horizon
// h uses now.
func (s *Selector) Chosen(h int) string {
	hi := s.horizonIndex(h)
	return s.point[s.choosePoint(hi, s.currentClass())].Name()
}

// Predict forecasts the mean of the next h samples with the predictor
// that has done best recently on the current workload class.
func (s *Selector) Predict(h int) float64 {
	if s.n == 0 {
		return 0
	}
	hi := s.horizonIndex(h)
	return s.point[s.choosePoint(hi, s.currentClass())].Predict(h)
}

// PredictLower is the conservative forecast (see Selector), never above
// the point forecast.
func (s *Selector) PredictLower(h int) float64 {
	if s.n == 0 {
		return 0
	}
	hi := s.horizonIndex(h)
	var v float64
	if s.chooseLower(hi, s.currentClass()) == lowerLSTM {
		v = s.lstm.PredictLower(h)
	} else {
		v = s.rmpc.Predict(h)
	}
	return math.Min(s.calib[hi]*v, s.Predict(h))
}

// Calibration of the conservative forecast: after each scored forecast the
// factor is multiplied by exp(calibRate*(target - miss)), miss being 1 or
// 0, so that over time the miss rate settles at the target whatever the
// link (Gibbs & Candès, "Adaptive conformal inference", 2021). The target
// sits below MissTarget to leave room for the noise of a finite window.
const (
	calibRate = 0.05
	calibMin  = 0.25
	calibMax  = 1.5
)

func (s *Selector) calibrate(hi int, lower, actual float64) {
	target := 0.8 * s.cfg.MissTarget
	miss := 0.0
	if lower > MissFactor*actual {
		miss = 1
	}
	s.calib[hi] = math.Max(calibMin, math.Min(calibMax, s.calib[hi]*math.Exp(calibRate*(target-miss))))
}
