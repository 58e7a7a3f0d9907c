package pba

import (
	"bytes"
	"errors"
	"math"
	"testing"
)

func smallModel(t testing.TB) *Model {
	t.Helper()
	m, err := NewModel(ModelShape{Layers: 2, Hidden: 5, Window: 6, Horizons: []int{1, 5}, Quantiles: []float64{0.5, 0.1}}, 42)
	if err != nil {
		t.Fatal(err)
	}
	m.norm = Normalization{LogLevelMean: 1.2, LogLevelStd: 0.8, LogDtMean: -0.3, LogDtStd: 0.2}
	return m
}

func TestModelRoundTrip(t *testing.T) {
	m := smallModel(t)
	var buf bytes.Buffer
	if _, err := m.WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	got, err := ReadModel(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if got.norm != m.norm || got.shape.Hidden != m.shape.Hidden || len(got.params) != len(m.params) {
		t.Fatalf("round trip changed the model: %+v vs %+v", got.shape, m.shape)
	}
	for i := range m.params {
		if got.params[i] != m.params[i] {
			t.Fatalf("param %d: %v != %v", i, got.params[i], m.params[i])
		}
	}
	// Same forecasts from both.
	tr := syntheticTrace("r", 40, 1)
	a, b := NewLSTMPredictor(m), NewLSTMPredictor(got)
	for i := range tr.Throughput {
		a.Observe(tr.Times[i], tr.Throughput[i])
		b.Observe(tr.Times[i], tr.Throughput[i])
		if a.Predict(1) != b.Predict(1) || a.PredictLower(5) != b.PredictLower(5) {
			t.Fatalf("sample %d: forecasts differ after round trip", i)
		}
	}
}

func TestModelLoadRejects(t *testing.T) {
	m := smallModel(t)
	good, _ := m.MarshalBinary()
	flip := func(i int) []byte {
		b := bytes.Clone(good)
		b[i] ^= 0x40
		return b
	}
	nan := bytes.Clone(good)
	// Overwrite the first parameter with NaN and fix the checksum, so only
	// the finiteness check can catch it.
	off := len(good) - 4 - 8*len(m.params)
	copy(nan[off:], []byte{0, 0, 0, 0, 0, 0, 0xf8, 0x7f})
	nan = fixCRC(nan)
	for _, tc := range []struct {
		name string
		in   []byte
	}{
		{"empty", nil},
		{"foreign", []byte("GIF89a this is not a model at all, not even close")},
		{"truncated header", good[:20]},
		{"truncated params", good[:len(good)-30]},
		{"missing checksum", good[:len(good)-4]},
		{"trailing byte", append(bytes.Clone(good), 0)},
		{"bad version", fixCRC(flip(8))},
		{"bad layers", fixCRC(flip(11))},
		{"flipped param bit", flip(len(good) - 20)},
		{"flipped checksum", flip(len(good) - 1)},
		{"nan param", nan},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := UnmarshalModel(tc.in)
			if !errors.Is(err, ErrBadModel) {
				t.Fatalf("got %v, want ErrBadModel", err)
			}
		})
	}
}

func fixCRC(b []byte) []byte {
	b = bytes.Clone(b)
	body := b[:len(b)-4]
	sum := crc32Castagnoli(body)
	b[len(b)-4], b[len(b)-3], b[len(b)-2], b[len(b)-1] = byte(sum), byte(sum>>8), byte(sum>>16), byte(sum>>24)
	return b
}

func FuzzUnmarshalModel(f *testing.F) {
	m := smallModel(f)
	good, _ := m.MarshalBinary()
	f.Add(good)
	f.Add(good[:40])
	f.Add([]byte(modelMagic))
	one, _ := NewModel(ModelShape{Layers: 1, Hidden: 1, Window: 2, Horizons: []int{1}, Quantiles: []float64{0.5}}, 1)
	tiny, _ := one.MarshalBinary()
	f.Add(tiny)
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := UnmarshalModel(b)
		if err != nil {
			if !errors.Is(err, ErrBadModel) {
				t.Fatalf("error not wrapping ErrBadModel: %v", err)
			}
			return
		}
		// Anything accepted must re-encode to the same bytes and run.
		again, _ := m.MarshalBinary()
		if !bytes.Equal(again, b) {
			t.Fatal("accepted model does not re-encode identically")
		}
		p := NewLSTMPredictor(m)
		for i := 0; i <= m.shape.Window; i++ {
			p.Observe(float64(i), 1+float64(i%3))
		}
		if v := p.Predict(1); math.IsNaN(v) || v < 0 {
			t.Fatalf("forecast %v from an accepted model", v)
		}
	})
}
