package hde

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"testing"
)

func streamPair(t testing.TB, cfg Config) (*StreamEncoder, *StreamDecoder) {
	t.Helper()
	enc, err := NewStreamEncoder(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	dec, err := NewStreamDecoder(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { enc.Close(); dec.Close() })
	return enc, dec
}

// streamInput mixes compressible memory, zeros and random bytes, like a
// QEMU migration stream.
func streamInput(n int) []byte {
	cc := DefaultCorpusConfig(9)
	cc.Pages = max(1, (n+4095)/4096)
	c, _ := NewCorpus(cc)
	return c.Memory()[:n]
}

func TestStreamRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		name  string
		chunk int
		size  int
		write int
	}{
		{"default", 256 << 10, 3<<20 + 123, 10000},
		{"small chunks", 1000, 50000, 777},
		{"one byte writes", 64, 3000, 1},
		{"empty", 4096, 0, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := DefaultConfig()
			cfg.ChunkSize = tc.chunk
			enc, dec := streamPair(t, cfg)
			in := streamInput(tc.size)
			var wire bytes.Buffer
			w := NewWriter(&wire, enc)
			for p := in; len(p) > 0; {
				n := min(tc.write, len(p))
				if _, err := w.Write(p[:n]); err != nil {
					t.Fatal(err)
				}
				p = p[n:]
			}
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			if _, err := w.Write([]byte{1}); err == nil {
				t.Fatal("write after Close succeeded")
			}
			out, err := io.ReadAll(NewReader(bytes.NewReader(wire.Bytes()), dec))
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(out, in) {
				t.Fatalf("stream differs: %d bytes in, %d out", len(in), len(out))
			}
			if tc.size > 1<<20 && wire.Len() >= len(in) {
				t.Errorf("no compression: %d -> %d: %+v", len(in), wire.Len(), enc.Stats())
			}
		})
	}
}

func TestStreamRejectsCorruption(t *testing.T) {
	cfg := DefaultConfig()
	cfg.ChunkSize = 8192
	enc, dec := streamPair(t, cfg)
	frame, err := enc.EncodeChunk(nil, streamInput(8192))
	if err != nil {
		t.Fatal(err)
	}
	mut := func(f func([]byte) []byte) []byte { return f(append([]byte(nil), frame...)) }
	for _, tc := range []struct {
		name  string
		frame []byte
		want  error
	}{
		{"bad magic", mut(func(b []byte) []byte { b[1] = 'x'; return b }), ErrMalformed},
		{"version", mut(func(b []byte) []byte { b[4] = 2; return b }), ErrVersion},
		{"codec", mut(func(b []byte) []byte { b[5] = 99; return b }), ErrCorruptPayload},
		{"truncated", mut(func(b []byte) []byte { return b[:len(b)-3] }), ErrTruncated},
		{"trailing", mut(func(b []byte) []byte { return append(b, 1) }), ErrMalformed},
		{"payload bit", mut(func(b []byte) []byte { b[len(b)-1] ^= 1; return b }), nil},
		{"too large", append([]byte("HDES\x01\x00\xff\xff\x7f\x01"), make([]byte, 9)...), ErrTooLarge},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := dec.DecodeChunk(nil, tc.frame)
			if err == nil || (tc.want != nil && !errors.Is(err, tc.want)) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			_, err = io.ReadAll(NewReader(bytes.NewReader(tc.frame), dec))
			if err == nil && tc.name != "trailing" {
				t.Fatalf("Reader accepted it")
			}
		})
	}
	if _, err := enc.EncodeChunk(nil, make([]byte, cfg.ChunkSize+1)); !errors.Is(err, ErrInvalidBatch) {
		t.Fatalf("oversized chunk: %v", err)
	}
}

func TestStreamSkipsIncompressible(t *testing.T) {
	enc, _ := streamPair(t, DefaultConfig())
	rnd := make([]byte, 64<<10)
	r := rand.New(rand.NewPCG(1, 1))
	for i := range rnd {
		rnd[i] = byte(r.Uint32())
	}
	if _, err := enc.EncodeChunk(nil, rnd); err != nil {
		t.Fatal(err)
	}
	if st := enc.Stats(); st.Selections[CodecNone] != 1 || len(st.Selections) != 1 {
		t.Fatalf("random chunk was handed to a codec: %v", st.Selections)
	}
}

// FuzzStreamReader feeds arbitrary bytes to the stream Reader and to
// DecodeChunk: errors are fine, panics, hangs and huge allocations are not.
func FuzzStreamReader(f *testing.F) {
	cfg := DefaultConfig()
	cfg.ChunkSize = 4096
	enc, err := NewStreamEncoder(cfg, nil)
	if err != nil {
		f.Fatal(err)
	}
	in := streamInput(10000)
	for i := 0; i < len(in); i += 4096 {
		fr, _ := enc.EncodeChunk(nil, in[i:min(i+4096, len(in))])
		f.Add(fr)
	}
	enc.Close()
	dec, err := NewStreamDecoder(cfg, nil)
	if err != nil {
		f.Fatal(err)
	}
	defer dec.Close()
	f.Fuzz(func(t *testing.T, data []byte) {
		out, err := io.ReadAll(io.LimitReader(NewReader(bytes.NewReader(data), dec), 1<<20))
		if err == nil && len(out) > 0 && len(data) == 0 {
			t.Fatal("bytes from nothing")
		}
		if got, err := dec.DecodeChunk(nil, data); err == nil && len(got) > cfg.ChunkSize {
			t.Fatalf("chunk of %d bytes past ChunkSize", len(got))
		}
	})
}
