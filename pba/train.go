package pba

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"time"
)

// TrainConfig controls Train. DefaultTrainConfig gives the settings of the
// shipped model.
type TrainConfig struct {
	Shape ModelShape
	// TrainFrac of each trace, from its start, is the training data; the
	// rest is never read by Train (it is the evaluation part).
	TrainFrac float64
	// ValidationFrac of each trace's training part (its end) is held out
	// to pick the best epoch (early stopping).
	ValidationFrac float64
	Epochs         int
	// Patience is the number of epochs without a better validation loss
	// after which training stops.
	Patience     int
	BatchSize    int
	LearningRate float64 // Adam step size
	ClipNorm     float64 // global gradient norm limit
	Seed         uint64
	// MaxWindows caps the training windows (a deterministic stride over
	// all of them), so that a large folder trains in bounded time.
	MaxWindows int
	// MaxDuration stops training after this much wall time (0: no limit);
	// the best epoch so far is kept. TrainResult says when it happened.
	MaxDuration time.Duration
}

// DefaultTrainConfig returns the configuration that trained the shipped
// model.
func DefaultTrainConfig() TrainConfig {
	return TrainConfig{
		Shape: DefaultModelShape(), TrainFrac: 0.7, ValidationFrac: 0.15,
		Epochs: 40, Patience: 6, BatchSize: 32, LearningRate: 2e-3, ClipNorm: 1,
		Seed: 1, MaxWindows: 60000, MaxDuration: 4 * time.Minute,
	}
}

// Validate reports the first setting out of range.
func (c TrainConfig) Validate() error {
	if err := c.Shape.Validate(); err != nil {
		return err
	}
	switch {
	case !(c.TrainFrac > 0 && c.TrainFrac <= 1):
		return fmt.Errorf("pba: train fraction %v outside (0, 1]", c.TrainFrac)
	case !(c.ValidationFrac >= 0 && c.ValidationFrac < 1):
		return fmt.Errorf("pba: validation fraction %v outside [0, 1)", c.ValidationFrac)
	case c.Epochs < 1:
		return fmt.Errorf("pba: epochs %d < 1", c.Epochs)
	case c.Patience < 1:
		return fmt.Errorf("pba: patience %d < 1", c.Patience)
	case c.BatchSize < 1 || c.BatchSize > 4096:
		return fmt.Errorf("pba: batch size %d outside 1..4096", c.BatchSize)
	case !(c.LearningRate > 0 && c.LearningRate < 1):
		return fmt.Errorf("pba: learning rate %v outside (0, 1)", c.LearningRate)
	case !(c.ClipNorm > 0):
		return fmt.Errorf("pba: clip norm %v must be > 0", c.ClipNorm)
	case c.MaxWindows < 1:
		return fmt.Errorf("pba: max windows %d < 1", c.MaxWindows)
	case c.MaxDuration < 0:
		return fmt.Errorf("pba: max duration %v < 0", c.MaxDuration)
	}
	return nil
}

// TrainResult describes a training run.
type TrainResult struct {
	TrainWindows, ValidationWindows int
	Epochs                          int     // epochs run
	BestEpoch                       int     // 1-based epoch whose weights were kept
	BestValidationLoss              float64 // mean weighted pinball loss
	Duration                        time.Duration
	TimedOut                        bool // MaxDuration stopped training
}

// window identifies a training example: the input window ends at sample
// last of trace tr.
type window struct {
	tr   int32
	last int32
}

// featureSetter fills model inputs and targets from traces.
type featureSetter struct {
	shape ModelShape
	norm  Normalization
}

// fill writes the features of the window of xs/ts ending at index last
// (last >= Window) into dst (Window x NumFeatures).
func (f *featureSetter) fill(dst []float64, xs, ts []float64, last int) {
	T := f.shape.Window
	ll := math.Log(xs[last] + LogFloor)
	prev := math.Log(xs[last-T] + LogFloor)
	for k := 0; k < T; k++ {
		i := last - T + 1 + k
		lv := math.Log(xs[i] + LogFloor)
		dt := math.Max(ts[i]-ts[i-1], 1e-3)
		row := dst[k*NumFeatures : (k+1)*NumFeatures]
		row[0] = clampFeature(lv - ll)
		row[1] = clampFeature(lv - prev)
		row[2] = clampFeature((lv - f.norm.LogLevelMean) / f.norm.LogLevelStd)
		row[3] = clampFeature((math.Log(dt) - f.norm.LogDtMean) / f.norm.LogDtStd)
		prev = lv
	}
}

func clampFeature(v float64) float64 { return math.Max(-10, math.Min(10, v)) }

// targets writes, per horizon, the ratio of the mean of the next h samples
// to the last one (both with LogFloor added), and returns the loss weight
// (x_last+LogFloor)/levelScale, which makes the pinball loss on ratios an
// absolute error in Mbit/s, the quantity WAPE sums.
func (f *featureSetter) targets(dst []float64, xs []float64, last int) {
	base := xs[last] + LogFloor
	for hi, h := range f.shape.Horizons {
		var s float64
		for _, v := range xs[last+1 : last+1+h] {
			s += v
		}
		dst[hi] = (s/float64(h) + LogFloor) / base
	}
}

// Train fits a new model to the training part of traces and returns it
// with the weights of the epoch with the lowest validation loss. It is
// deterministic for a given config and input, and single-threaded.
func Train(ctx context.Context, traces []*Trace, cfg TrainConfig) (*Model, TrainResult, error) {
	var res TrainResult
	if err := cfg.Validate(); err != nil {
		return nil, res, err
	}
	start := time.Now()
	shape := cfg.Shape
	T, maxH := shape.Window, shape.Horizons[len(shape.Horizons)-1]
	var trainW, valW []window
	for ti, tr := range traces {
		n := len(tr.Throughput)
		end := tr.Split(cfg.TrainFrac) // samples [0, end) may be read
		lastMax := end - 1 - maxH      // the targets must stay inside
		first := T
		if lastMax < first {
			continue
		}
		valStart := lastMax + 1 - int(math.Round(cfg.ValidationFrac*float64(lastMax+1-first)))
		for last := first; last <= lastMax && last < n; last++ {
			w := window{tr: int32(ti), last: int32(last)}
			if last >= valStart {
				valW = append(valW, w)
			} else {
				trainW = append(trainW, w)
			}
		}
	}
	if len(trainW) == 0 {
		return nil, res, fmt.Errorf("pba: no training windows: traces need more than %d samples in their first %.0f%%", T+maxH, 100*cfg.TrainFrac)
	}
	if len(trainW) > cfg.MaxWindows {
		stride := float64(len(trainW)) / float64(cfg.MaxWindows)
		kept := make([]window, cfg.MaxWindows)
		for i := range kept {
			kept[i] = trainW[int(float64(i)*stride)]
		}
		trainW = kept
	}
	res.TrainWindows, res.ValidationWindows = len(trainW), len(valW)

	m, err := NewModel(shape, cfg.Seed)
	if err != nil {
		return nil, res, err
	}
	m.norm = normalizationOf(traces, trainW, T)
	fs := &featureSetter{shape: shape, norm: m.norm}

	B := cfg.BatchSize
	net := newNetwork(shape, m.params, B)
	bt := &batchTrainer{
		net: net, fs: fs, traces: traces, levelScale: m.norm.levelScale(),
		x: make([]float64, B*T*NumFeatures),
		y: make([]float64, B*len(shape.Horizons)),
		w: make([]float64, B),
	}
	grad := make([]float64, len(m.params))
	adam := newAdam(len(m.params), cfg.LearningRate)
	best := append([]float64(nil), m.params...)
	res.BestValidationLoss = math.Inf(1)
	rng := rand.New(rand.NewPCG(cfg.Seed, 0x5851f42d4c957f2d))
	evalSet := valW
	if len(evalSet) == 0 {
		evalSet = trainW
	}
	sinceBest := 0
	for epoch := 1; epoch <= cfg.Epochs; epoch++ {
		rng.Shuffle(len(trainW), func(i, j int) { trainW[i], trainW[j] = trainW[j], trainW[i] })
		// Full batches only (the shuffle changes which windows are left
		// out); fewer windows than a batch train as one padded batch.
		for off := 0; off == 0 || off+B <= len(trainW); off += B {
			if err := ctx.Err(); err != nil {
				return nil, res, err
			}
			clear(grad)
			bt.load(trainW[off:min(off+B, len(trainW))])
			bt.loss(true)
			net.backward(grad)
			clipGradient(grad, cfg.ClipNorm)
			adam.step(m.params, grad)
		}
		res.Epochs = epoch
		vl := bt.meanLoss(evalSet)
		if vl < res.BestValidationLoss {
			res.BestValidationLoss, res.BestEpoch = vl, epoch
			copy(best, m.params)
			sinceBest = 0
		} else if sinceBest++; sinceBest >= cfg.Patience {
			break
		}
		if cfg.MaxDuration > 0 && time.Since(start) > cfg.MaxDuration {
			res.TimedOut = epoch < cfg.Epochs
			break
		}
	}
	copy(m.params, best)
	res.Duration = time.Since(start)
	return m, res, nil
}

// levelScale is the mean training throughput implied by the log-level
// statistics; loss weights are relative to it so the loss stays O(1).
func (n Normalization) levelScale() float64 {
	return math.Max(math.Exp(n.LogLevelMean), LogFloor)
}

func normalizationOf(traces []*Trace, ws []window, T int) Normalization {
	var n, sl, sll, sd, sdd float64
	for _, w := range ws {
		tr := traces[w.tr]
		// Each window contributes its newest sample; together they cover
		// the training part.
		i := int(w.last)
		lv := math.Log(tr.Throughput[i] + LogFloor)
		ld := math.Log(math.Max(tr.Times[i]-tr.Times[i-1], 1e-3))
		n++
		sl += lv
		sll += lv * lv
		sd += ld
		sdd += ld * ld
	}
	std := func(s, ss float64) float64 {
		v := ss/n - (s/n)*(s/n)
		return math.Max(math.Sqrt(math.Max(v, 0)), 1e-3)
	}
	return Normalization{LogLevelMean: sl / n, LogLevelStd: std(sl, sll), LogDtMean: sd / n, LogDtStd: std(sd, sdd)}
}

// batchTrainer holds one batch's inputs, targets and loss weights.
type batchTrainer struct {
	net        *network
	fs         *featureSetter
	traces     []*Trace
	levelScale float64
	x, y, w    []float64
}

// load fills the batch from ws (len <= batch); missing rows get weight 0.
func (bt *batchTrainer) load(ws []window) {
	s := bt.fs.shape
	T, nh := s.Window, len(s.Horizons)
	for b := 0; b < bt.net.batch; b++ {
		if b >= len(ws) {
			bt.w[b] = 0
			continue
		}
		tr := bt.traces[ws[b].tr]
		last := int(ws[b].last)
		bt.fs.fill(bt.x[b*T*NumFeatures:(b+1)*T*NumFeatures], tr.Throughput, tr.Times, last)
		bt.fs.targets(bt.y[b*nh:(b+1)*nh], tr.Throughput, last)
		bt.w[b] = (tr.Throughput[last] + LogFloor) / bt.levelScale
	}
	bt.net.setInput(bt.x)
}

// loss runs the forward pass and returns the summed weighted pinball loss of
// the batch; with grad it also leaves d(mean loss)/d(out) in net.dOut.
func (bt *batchTrainer) loss(grad bool) float64 {
	n := bt.net
	n.forward()
	s := bt.fs.shape
	nh, nq, K := len(s.Horizons), len(s.Quantiles), s.outputs()
	var total float64
	inv := 1 / float64(n.batch)
	for b := 0; b < n.batch; b++ {
		for hi := 0; hi < nh; hi++ {
			r := bt.y[b*nh+hi]
			for qi, tau := range s.Quantiles {
				k := b*K + hi*nq + qi
				o := n.out.Data[k]
				pred := math.Exp(o)
				u := r - pred
				var l, dldpred float64
				if u >= 0 {
					l, dldpred = tau*u, -tau
				} else {
					l, dldpred = (tau-1)*u, 1-tau
				}
				total += bt.w[b] * l
				if grad {
					d := bt.w[b] * dldpred * pred * inv
					if math.Abs(o) >= maxLogOut {
						d = 0 // clamped in forward
					}
					n.dOut.Data[k] = d
				}
			}
		}
	}
	return total
}

// meanLoss is the mean loss per window over ws.
func (bt *batchTrainer) meanLoss(ws []window) float64 {
	var total float64
	B := bt.net.batch
	for off := 0; off < len(ws); off += B {
		bt.load(ws[off:min(off+B, len(ws))])
		total += bt.loss(false)
	}
	return total / float64(len(ws))
}

func clipGradient(g []float64, maxNorm float64) {
	var ss float64
	for _, v := range g {
		ss += v * v
	}
	if norm := math.Sqrt(ss); norm > maxNorm {
		s := maxNorm / norm
		for i := range g {
			g[i] *= s
		}
	}
}

// adam is the Adam optimiser (Kingma & Ba) with bias correction.
type adam struct {
	lr, b1, b2, eps float64
	m, v            []float64
	t               int
}

func newAdam(n int, lr float64) *adam {
	return &adam{lr: lr, b1: 0.9, b2: 0.999, eps: 1e-8, m: make([]float64, n), v: make([]float64, n)}
}

func (a *adam) step(params, grad []float64) {
	a.t++
	c1 := 1 - math.Pow(a.b1, float64(a.t))
	c2 := 1 - math.Pow(a.b2, float64(a.t))
	step := a.lr * math.Sqrt(c2) / c1
	for i, g := range grad {
		a.m[i] = a.b1*a.m[i] + (1-a.b1)*g
		a.v[i] = a.b2*a.v[i] + (1-a.b2)*g*g
		params[i] -= step * a.m[i] / (math.Sqrt(a.v[i]) + a.eps)
	}
}
