package pba

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math"
)

// Model file format, version 1 (all integers and floats little-endian):
//
//	magic     [8]byte "PBA-LSTM"
//	version   uint16  1
//	layers    uint16
//	hidden    uint16
//	window    uint16
//	nh, nq    uint8, uint8
//	horizons  nh x uint16
//	quantiles nq x float64
//	norm      4 x float64 (LogLevelMean, LogLevelStd, LogDtMean, LogDtStd)
//	nparams   uint32 (must equal the count implied by the shape)
//	params    nparams x float64
//	crc       uint32  CRC-32C of every byte before it
//
// A file is accepted only if it is exactly this long, its shape validates,
// every number is finite, and the checksum matches.
const (
	modelMagic   = "PBA-LSTM"
	modelVersion = 1
	// maxModelBytes bounds what ReadModel buffers: the largest valid shape
	// (4 layers of 256) is about 17 MB.
	maxModelBytes = 32 << 20
)

// ErrBadModel is wrapped by every error of UnmarshalModel / ReadModel that
// is caused by the file's content.
var ErrBadModel = errors.New("pba: invalid model file")

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// MarshalBinary encodes the model in the versioned format above.
func (m *Model) MarshalBinary() ([]byte, error) {
	s := m.shape
	var buf bytes.Buffer
	buf.WriteString(modelMagic)
	le := binary.LittleEndian
	put16 := func(v int) { buf.Write(le.AppendUint16(nil, uint16(v))) }
	putF := func(v float64) { buf.Write(le.AppendUint64(nil, math.Float64bits(v))) }
	put16(modelVersion)
	put16(s.Layers)
	put16(s.Hidden)
	put16(s.Window)
	buf.WriteByte(byte(len(s.Horizons)))
	buf.WriteByte(byte(len(s.Quantiles)))
	for _, h := range s.Horizons {
		put16(h)
	}
	for _, q := range s.Quantiles {
		putF(q)
	}
	for _, v := range []float64{m.norm.LogLevelMean, m.norm.LogLevelStd, m.norm.LogDtMean, m.norm.LogDtStd} {
		putF(v)
	}
	buf.Write(le.AppendUint32(nil, uint32(len(m.params))))
	for _, p := range m.params {
		putF(p)
	}
	buf.Write(le.AppendUint32(nil, crc32.Checksum(buf.Bytes(), castagnoli)))
	return buf.Bytes(), nil
}

// WriteTo writes the encoded model to w.
func (m *Model) WriteTo(w io.Writer) (int64, error) {
	b, err := m.MarshalBinary()
	if err != nil {
		return 0, err
	}
	n, err := w.Write(b)
	return int64(n), err
}

// ReadModel reads and validates one model from r (at most 32 MB).
func ReadModel(r io.Reader) (*Model, error) {
	b, err := io.ReadAll(io.LimitReader(r, maxModelBytes+1))
	if err != nil {
		return nil, fmt.Errorf("pba: reading model: %w", err)
	}
	if len(b) > maxModelBytes {
		return nil, fmt.Errorf("%w: larger than %d bytes", ErrBadModel, maxModelBytes)
	}
	return UnmarshalModel(b)
}

// modelDecoder reads fields and remembers the first short read.
type modelDecoder struct {
	b   []byte
	off int
	err error
}

func (d *modelDecoder) take(n int) []byte {
	if d.err != nil {
		return nil
	}
	if len(d.b)-d.off < n {
		d.err = fmt.Errorf("%w: truncated at byte %d", ErrBadModel, d.off)
		return nil
	}
	s := d.b[d.off : d.off+n]
	d.off += n
	return s
}

func (d *modelDecoder) u8() int {
	if s := d.take(1); s != nil {
		return int(s[0])
	}
	return 0
}

func (d *modelDecoder) u16() int {
	if s := d.take(2); s != nil {
		return int(binary.LittleEndian.Uint16(s))
	}
	return 0
}

func (d *modelDecoder) u32() uint32 {
	if s := d.take(4); s != nil {
		return binary.LittleEndian.Uint32(s)
	}
	return 0
}

func (d *modelDecoder) f64() float64 {
	if s := d.take(8); s != nil {
		v := math.Float64frombits(binary.LittleEndian.Uint64(s))
		if !finite(v) && d.err == nil {
			d.err = fmt.Errorf("%w: non-finite number at byte %d", ErrBadModel, d.off-8)
		}
		return v
	}
	return 0
}

// UnmarshalModel decodes and validates a model encoded by MarshalBinary.
func UnmarshalModel(b []byte) (*Model, error) {
	if len(b) < len(modelMagic)+4 {
		return nil, fmt.Errorf("%w: %d bytes is too short", ErrBadModel, len(b))
	}
	if string(b[:len(modelMagic)]) != modelMagic {
		return nil, fmt.Errorf("%w: bad magic (not a pba model)", ErrBadModel)
	}
	body, sum := b[:len(b)-4], binary.LittleEndian.Uint32(b[len(b)-4:])
	d := &modelDecoder{b: body, off: len(modelMagic)}
	if v := d.u16(); d.err == nil && v != modelVersion {
		return nil, fmt.Errorf("%w: version %d, this build reads version %d", ErrBadModel, v, modelVersion)
	}
	var s ModelShape
	s.Layers, s.Hidden, s.Window = d.u16(), d.u16(), d.u16()
	nh, nq := d.u8(), d.u8()
	if d.err != nil {
		return nil, d.err
	}
	if nh < 1 || nh > 8 || nq < 1 || nq > 8 {
		return nil, fmt.Errorf("%w: %d horizons and %d quantiles, want 1..8 each", ErrBadModel, nh, nq)
	}
	for range nh {
		s.Horizons = append(s.Horizons, d.u16())
	}
	for range nq {
		s.Quantiles = append(s.Quantiles, d.f64())
	}
	if d.err != nil {
		return nil, d.err
	}
	if err := s.Validate(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadModel, err)
	}
	var n Normalization
	n.LogLevelMean, n.LogLevelStd, n.LogDtMean, n.LogDtStd = d.f64(), d.f64(), d.f64(), d.f64()
	count := d.u32()
	if d.err != nil {
		return nil, d.err
	}
	if !(n.LogLevelStd > 0) || !(n.LogDtStd > 0) {
		return nil, fmt.Errorf("%w: normalisation deviations %v, %v must be positive", ErrBadModel, n.LogLevelStd, n.LogDtStd)
	}
	want := s.numParams()
	if int64(count) != int64(want) {
		return nil, fmt.Errorf("%w: %d parameters, the shape needs %d", ErrBadModel, count, want)
	}
	if rest := len(body) - d.off; rest != 8*want {
		return nil, fmt.Errorf("%w: %d bytes of parameters, want %d", ErrBadModel, rest, 8*want)
	}
	if got := crc32.Checksum(body, castagnoli); got != sum {
		return nil, fmt.Errorf("%w: checksum %08x, file says %08x", ErrBadModel, got, sum)
	}
	params := make([]float64, want)
	for i := range params {
		params[i] = d.f64()
	}
	if d.err != nil {
		return nil, d.err
	}
	m := &Model{shape: s, norm: n, params: params}
	m.net = newNetwork(s, params, 1)
	return m, nil
}

func crc32Castagnoli(b []byte) uint32 { return crc32.Checksum(b, castagnoli) }
