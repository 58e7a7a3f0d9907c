package pba

import (
	"fmt"
	"math"
	"math/rand/v2"

	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/blas64"
)

// NumFeatures is the number of inputs per time step of the LSTM:
//
//	0: log(x_t/x_last)    the window relative to its newest sample
//	1: log(x_t/x_{t-1})   the step-to-step change
//	2: log(x_t), standardised with the training mean and deviation
//	3: log(dt_t), standardised likewise (sampling gaps)
//
// Logs are taken of x + LogFloor so that idle intervals stay finite.
const NumFeatures = 4

// LogFloor (Mbit/s) is added before every logarithm of a throughput.
const LogFloor = 0.01

// maxLogOut bounds the network's output, the log of the forecast ratio to
// the last sample (e^8 ~ 3000x), so that exp never overflows.
const maxLogOut = 8.0

// ModelShape is the architecture of an LSTM model; it is saved with it.
type ModelShape struct {
	Layers int // stacked LSTM layers, 1..4
	Hidden int // hidden units per layer, 1..256
	Window int // samples per input sequence, 2..256
	// Horizons are the forecast horizons in samples, ascending, 1..64; the
	// target of horizon h is the mean of the next h samples.
	Horizons []int
	// Quantiles of each horizon's forecast, in (0, 1). Quantiles[0] must be
	// 0.5: the median, which minimises the absolute error behind WAPE. The
	// smallest other quantile is the conservative ("lower") forecast.
	Quantiles []float64
}

// DefaultModelShape is the shape of the shipped model.
func DefaultModelShape() ModelShape {
	return ModelShape{Layers: 1, Hidden: 24, Window: 20, Horizons: []int{1, 5}, Quantiles: []float64{0.5, 0.1}}
}

// Validate reports the first field out of range.
func (s ModelShape) Validate() error {
	switch {
	case s.Layers < 1 || s.Layers > 4:
		return fmt.Errorf("pba: model layers %d outside 1..4", s.Layers)
	case s.Hidden < 1 || s.Hidden > 256:
		return fmt.Errorf("pba: model hidden size %d outside 1..256", s.Hidden)
	case s.Window < 2 || s.Window > 256:
		return fmt.Errorf("pba: model window %d outside 2..256", s.Window)
	case len(s.Horizons) < 1 || len(s.Horizons) > 8:
		return fmt.Errorf("pba: %d horizons, want 1..8", len(s.Horizons))
	case len(s.Quantiles) < 1 || len(s.Quantiles) > 8:
		return fmt.Errorf("pba: %d quantiles, want 1..8", len(s.Quantiles))
	case s.Quantiles[0] != 0.5:
		return fmt.Errorf("pba: first quantile %v, want 0.5 (the point forecast)", s.Quantiles[0])
	}
	for i, h := range s.Horizons {
		if h < 1 || h > 64 || (i > 0 && h <= s.Horizons[i-1]) {
			return fmt.Errorf("pba: horizons %v must ascend within 1..64", s.Horizons)
		}
	}
	for _, q := range s.Quantiles {
		if !(q > 0 && q < 1) {
			return fmt.Errorf("pba: quantile %v outside (0, 1)", q)
		}
	}
	return nil
}

func (s ModelShape) outputs() int { return len(s.Horizons) * len(s.Quantiles) }

func (s ModelShape) layerInputs(l int) int {
	if l == 0 {
		return NumFeatures
	}
	return s.Hidden
}

// numParams is the length of the flat parameter vector: per layer
// W (4H x (in+H)) and b (4H), then the head Wy (K x H) and by (K).
func (s ModelShape) numParams() int {
	n := 0
	for l := 0; l < s.Layers; l++ {
		n += 4*s.Hidden*(s.layerInputs(l)+s.Hidden) + 4*s.Hidden
	}
	return n + s.outputs()*(s.Hidden+1)
}

// Normalization holds the statistics of the training data that the model's
// inputs and loss weights are scaled with; they are saved with the model.
type Normalization struct {
	LogLevelMean, LogLevelStd float64
	LogDtMean, LogDtStd       float64
}

// Model is a trained (or freshly initialised) LSTM forecaster. Its methods
// that run the network use per-Model scratch buffers, so a Model is not
// safe for concurrent use; Clone it for another goroutine.
type Model struct {
	shape  ModelShape
	norm   Normalization
	params []float64
	net    *network // views into params plus scratch buffers, batch 1
}

// NewModel returns a model with weights drawn from a seeded generator
// (uniform in +-1/sqrt(Hidden), forget-gate bias 1) and identity
// normalisation.
func NewModel(shape ModelShape, seed uint64) (*Model, error) {
	if err := shape.Validate(); err != nil {
		return nil, err
	}
	m := &Model{shape: cloneShape(shape), norm: Normalization{LogLevelStd: 1, LogDtStd: 1}}
	m.params = make([]float64, shape.numParams())
	rng := rand.New(rand.NewPCG(seed, 0x9e3779b97f4a7c15))
	scale := 1 / math.Sqrt(float64(shape.Hidden))
	for i := range m.params {
		m.params[i] = scale * (2*rng.Float64() - 1)
	}
	layers, head := splitParams(shape, m.params)
	H := shape.Hidden
	for _, ly := range layers {
		for j := range ly.b {
			ly.b[j] = 0
		}
		for j := H; j < 2*H; j++ {
			ly.b[j] = 1
		}
	}
	for j := range head.b {
		head.b[j] = 0
	}
	m.net = newNetwork(shape, m.params, 1)
	return m, nil
}

func cloneShape(s ModelShape) ModelShape {
	s.Horizons = append([]int(nil), s.Horizons...)
	s.Quantiles = append([]float64(nil), s.Quantiles...)
	return s
}

// Clone returns an independent copy (for use on another goroutine).
func (m *Model) Clone() *Model {
	c := &Model{shape: cloneShape(m.shape), norm: m.norm, params: append([]float64(nil), m.params...)}
	c.net = newNetwork(c.shape, c.params, 1)
	return c
}

// Shape returns the model's architecture.
func (m *Model) Shape() ModelShape { return cloneShape(m.shape) }

// Normalization returns the input statistics the model was trained with.
func (m *Model) Normalization() Normalization { return m.norm }

// NumParams is the number of trainable parameters.
func (m *Model) NumParams() int { return len(m.params) }

// lowerQuantileIndex is the index in Quantiles of the conservative forecast,
// the smallest quantile below 0.5, or -1.
func (s ModelShape) lowerQuantileIndex() int {
	best := -1
	for i, q := range s.Quantiles {
		if q < 0.5 && (best < 0 || q < s.Quantiles[best]) {
			best = i
		}
	}
	return best
}

// layerParams are views into the flat parameter (or gradient) vector.
type layerParams struct {
	W   blas64.General // 4H x (in+H): rows i, f, g, o gates
	b   []float64      // 4H
	in  int
	hid int
}

func splitParams(s ModelShape, p []float64) ([]layerParams, layerParams) {
	H := s.Hidden
	layers := make([]layerParams, s.Layers)
	off := 0
	for l := range layers {
		in := s.layerInputs(l)
		cols := in + H
		layers[l] = layerParams{
			W:  blas64.General{Rows: 4 * H, Cols: cols, Stride: cols, Data: p[off : off+4*H*cols]},
			in: in, hid: H,
		}
		off += 4 * H * cols
		layers[l].b = p[off : off+4*H]
		off += 4 * H
	}
	K := s.outputs()
	head := layerParams{W: blas64.General{Rows: K, Cols: H, Stride: H, Data: p[off : off+K*H]}, in: H}
	off += K * H
	head.b = p[off : off+K]
	return layers, head
}

// network holds the activations of one forward pass over a batch of
// sequences, kept for backpropagation through time.
type network struct {
	shape  ModelShape
	batch  int
	layers []layerParams
	head   layerParams
	// Per layer and time step, batch-major matrices.
	z     [][]blas64.General // [l][t] B x (in+H): input and previous hidden
	gates [][]blas64.General // [l][t] B x 4H: activated i, f, g, o
	c     [][]blas64.General // [l][t] B x H
	tc    [][]blas64.General // [l][t] B x H: tanh(c)
	h     [][]blas64.General // [l][t] B x H
	out   blas64.General     // B x K: log of forecast ratio to last sample
	// Backward scratch.
	dG, dZ    blas64.General   // B x 4H, B x (in_max+H)
	dHin      []blas64.General // [t] B x H: gradient into a layer's hidden output from above
	dHrec, dC blas64.General   // B x H
	dOut      blas64.General   // B x K
	zeroH     blas64.General   // B x H zeros: initial state
}

func newMat(r, c int) blas64.General {
	return blas64.General{Rows: r, Cols: c, Stride: c, Data: make([]float64, r*c)}
}

func newNetwork(s ModelShape, params []float64, batch int) *network {
	n := &network{shape: s, batch: batch}
	n.layers, n.head = splitParams(s, params)
	H, T := s.Hidden, s.Window
	mk := func(cols func(l int) int) [][]blas64.General {
		out := make([][]blas64.General, s.Layers)
		for l := range out {
			out[l] = make([]blas64.General, T)
			for t := range out[l] {
				out[l][t] = newMat(batch, cols(l))
			}
		}
		return out
	}
	n.z = mk(func(l int) int { return s.layerInputs(l) + H })
	n.gates = mk(func(int) int { return 4 * H })
	n.c = mk(func(int) int { return H })
	n.tc = mk(func(int) int { return H })
	n.h = mk(func(int) int { return H })
	n.out = newMat(batch, s.outputs())
	n.dG = newMat(batch, 4*H)
	n.dZ = newMat(batch, max(NumFeatures, H)+H)
	n.dHin = make([]blas64.General, T)
	for t := range n.dHin {
		n.dHin[t] = newMat(batch, H)
	}
	n.dHrec = newMat(batch, H)
	n.dC = newMat(batch, H)
	n.dOut = newMat(batch, s.outputs())
	n.zeroH = newMat(batch, H)
	return n
}

func sigmoid(x float64) float64 { return 1 / (1 + math.Exp(-x)) }

// setInput copies features (B x T x NumFeatures, batch-major) into the
// first layer's z matrices.
func (n *network) setInput(x []float64) {
	T, F := n.shape.Window, NumFeatures
	for t := 0; t < T; t++ {
		z := n.z[0][t]
		for b := 0; b < n.batch; b++ {
			copy(z.Data[b*z.Stride:b*z.Stride+F], x[(b*T+t)*F:(b*T+t+1)*F])
		}
	}
}

// forward runs the network on the inputs set by setInput and leaves the
// raw outputs (log ratio to the last sample, clamped) in n.out.
func (n *network) forward() {
	H, T, B := n.shape.Hidden, n.shape.Window, n.batch
	for l, ly := range n.layers {
		for t := 0; t < T; t++ {
			z := n.z[l][t]
			hPrev, cPrev := n.zeroH, n.zeroH
			if t > 0 {
				hPrev, cPrev = n.h[l][t-1], n.c[l][t-1]
			}
			for b := 0; b < B; b++ {
				copy(z.Data[b*z.Stride+ly.in:b*z.Stride+ly.in+H], hPrev.Data[b*H:(b+1)*H])
			}
			g := n.gates[l][t]
			for b := 0; b < B; b++ {
				copy(g.Data[b*4*H:(b+1)*4*H], ly.b)
			}
			blas64.Gemm(blas.NoTrans, blas.Trans, 1, z, ly.W, 1, g)
			c, tc, h := n.c[l][t], n.tc[l][t], n.h[l][t]
			for b := 0; b < B; b++ {
				gr := g.Data[b*4*H : (b+1)*4*H]
				cp := cPrev.Data[b*H : (b+1)*H]
				cr, tcr, hr := c.Data[b*H:(b+1)*H], tc.Data[b*H:(b+1)*H], h.Data[b*H:(b+1)*H]
				for j := 0; j < H; j++ {
					ig := sigmoid(gr[j])
					fg := sigmoid(gr[H+j])
					gg := math.Tanh(gr[2*H+j])
					og := sigmoid(gr[3*H+j])
					gr[j], gr[H+j], gr[2*H+j], gr[3*H+j] = ig, fg, gg, og
					cr[j] = fg*cp[j] + ig*gg
					tcr[j] = math.Tanh(cr[j])
					hr[j] = og * tcr[j]
				}
			}
			if l+1 < len(n.layers) {
				zn := n.z[l+1][t]
				for b := 0; b < B; b++ {
					copy(zn.Data[b*zn.Stride:b*zn.Stride+H], h.Data[b*H:(b+1)*H])
				}
			}
		}
	}
	K := n.shape.outputs()
	for b := 0; b < B; b++ {
		copy(n.out.Data[b*K:(b+1)*K], n.head.b)
	}
	blas64.Gemm(blas.NoTrans, blas.Trans, 1, n.h[len(n.layers)-1][T-1], n.head.W, 1, n.out)
	for i, v := range n.out.Data {
		n.out.Data[i] = math.Max(-maxLogOut, math.Min(maxLogOut, v))
	}
}

// backward accumulates into grad (same layout as the parameters) the
// gradient of the loss whose derivative with respect to n.out the caller
// left in n.dOut. Outputs clamped by forward must have a zero derivative.
func (n *network) backward(grad []float64) {
	H, T, B := n.shape.Hidden, n.shape.Window, n.batch
	gLayers, gHead := splitParams(n.shape, grad)
	top := len(n.layers) - 1
	// Head.
	blas64.Gemm(blas.Trans, blas.NoTrans, 1, n.dOut, n.h[top][T-1], 1, gHead.W)
	for b := 0; b < B; b++ {
		for k, d := range n.dOut.Data[b*n.dOut.Stride : b*n.dOut.Stride+n.dOut.Cols] {
			gHead.b[k] += d
		}
	}
	for t := range n.dHin {
		clear(n.dHin[t].Data)
	}
	blas64.Gemm(blas.NoTrans, blas.NoTrans, 1, n.dOut, n.head.W, 0, n.dHin[T-1])
	for l := top; l >= 0; l-- {
		ly, gl := n.layers[l], gLayers[l]
		cols := ly.in + H
		dZ := blas64.General{Rows: B, Cols: cols, Stride: cols, Data: n.dZ.Data[:B*cols]}
		clear(n.dHrec.Data)
		clear(n.dC.Data)
		for t := T - 1; t >= 0; t-- {
			g, tc := n.gates[l][t], n.tc[l][t]
			cPrev := n.zeroH
			if t > 0 {
				cPrev = n.c[l][t-1]
			}
			for b := 0; b < B; b++ {
				gr := g.Data[b*4*H : (b+1)*4*H]
				dg := n.dG.Data[b*4*H : (b+1)*4*H]
				dhIn := n.dHin[t].Data[b*H : (b+1)*H]
				dhRec := n.dHrec.Data[b*H : (b+1)*H]
				dc := n.dC.Data[b*H : (b+1)*H]
				tcr := tc.Data[b*H : (b+1)*H]
				cp := cPrev.Data[b*H : (b+1)*H]
				for j := 0; j < H; j++ {
					ig, fg, gg, og := gr[j], gr[H+j], gr[2*H+j], gr[3*H+j]
					dh := dhIn[j] + dhRec[j]
					dcj := dc[j] + dh*og*(1-tcr[j]*tcr[j])
					dg[j] = dcj * gg * ig * (1 - ig)
					dg[H+j] = dcj * cp[j] * fg * (1 - fg)
					dg[2*H+j] = dcj * ig * (1 - gg*gg)
					dg[3*H+j] = dh * tcr[j] * og * (1 - og)
					dc[j] = dcj * fg
				}
			}
			blas64.Gemm(blas.Trans, blas.NoTrans, 1, n.dG, n.z[l][t], 1, gl.W)
			for b := 0; b < B; b++ {
				for k, d := range n.dG.Data[b*4*H : (b+1)*4*H] {
					gl.b[k] += d
				}
			}
			blas64.Gemm(blas.NoTrans, blas.NoTrans, 1, n.dG, ly.W, 0, dZ)
			for b := 0; b < B; b++ {
				row := dZ.Data[b*cols : (b+1)*cols]
				copy(n.dHrec.Data[b*H:(b+1)*H], row[ly.in:])
				if l > 0 {
					copy(n.dHin[t].Data[b*H:(b+1)*H], row[:ly.in])
				}
			}
		}
	}
}
