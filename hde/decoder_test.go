package hde

import (
	"encoding/binary"
	"errors"
	"testing"
)

// validFrames returns a small configuration and a sequence of frames that
// exercise every page kind and several codecs.
func validFrames(tb testing.TB) (Config, [][]byte) {
	return validFramesWith(tb, smallConfig())
}

// validFramesWith encodes the same page sequence under cfg. The page-level
// encoding, and so the decoder state after each frame, does not depend on
// the codecs chosen.
func validFramesWith(tb testing.TB, cfg Config) (Config, [][]byte) {
	tb.Helper()
	cc := DefaultCorpusConfig(3)
	cc.Pages, cc.PageSize, cc.DirtyFraction = 48, cfg.PageSize, 0.3
	corpus, err := NewCorpus(cc)
	if err != nil {
		tb.Fatal(err)
	}
	enc, err := NewEncoder(cfg, nil)
	if err != nil {
		tb.Fatal(err)
	}
	defer enc.Close()
	var frames [][]byte
	add := func(pages []Page) {
		for len(pages) > 0 {
			n := min(8, len(pages))
			f, err := enc.EncodeBatch(nil, pages[:n])
			if err != nil {
				tb.Fatal(err)
			}
			frames = append(frames, f)
			pages = pages[n:]
		}
	}
	add(corpus.Pages())
	add(corpus.PagesOf(corpus.NextRound()))
	add(corpus.PagesOf(corpus.NextRound()))
	return cfg, frames
}

// decodeSequence decodes frames in order and returns the first error.
func decodeSequence(dec *Decoder, frames [][]byte) error {
	for _, f := range frames {
		if err := dec.DecodeBatch(f, func(uint64, []byte) error { return nil }); err != nil {
			return err
		}
	}
	return nil
}

func TestDecodeRejectsCorruption(t *testing.T) {
	cfg, frames := validFrames(t)
	last := len(frames) - 1
	mutate := func(i int, f func([]byte) []byte) [][]byte {
		out := append([][]byte(nil), frames...)
		out[i] = f(append([]byte(nil), frames[i]...))
		return out
	}
	for _, tc := range []struct {
		name   string
		frames [][]byte
		want   error
	}{
		{"empty", [][]byte{{}}, ErrTruncated},
		{"bad magic", mutate(0, func(b []byte) []byte { b[0] = 'X'; return b }), ErrMalformed},
		{"bad version", mutate(0, func(b []byte) []byte { b[4] = 9; return b }), ErrVersion},
		{"unknown flag", mutate(0, func(b []byte) []byte { b[5] |= 0x80; return b }), ErrMalformed},
		{"unknown codec", mutate(0, func(b []byte) []byte { b[6] = 200; return b }), ErrCorruptPayload},
		{"page size", mutate(0, func(b []byte) []byte { b[7]++; return b }), ErrPageSize},
		{"truncated", mutate(0, func(b []byte) []byte { return b[:len(b)-1] }), ErrTruncated},
		{"trailing byte", mutate(0, func(b []byte) []byte { return append(b, 0) }), ErrMalformed},
		{"checksum", mutate(0, func(b []byte) []byte { b[checksumOffset(b)] ^= 1; return b }), ErrChecksum},
		{"out of order", append([][]byte{frames[1]}, frames[0]), ErrSequence},
		{"replayed", append([][]byte{frames[0]}, frames[0]), ErrSequence},
		{"skipped batch", append(append([][]byte(nil), frames[:2]...), frames[3:]...), nil},
		{"stored byte flipped", mutate(last, func(b []byte) []byte { b[len(b)-1] ^= 0x40; return b }), nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dec, err := NewDecoder(cfg, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer dec.Close()
			err = decodeSequence(dec, tc.frames)
			if err == nil {
				t.Fatal("corrupted sequence decoded without error")
			}
			if tc.want != nil && !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
		})
	}
}

// checksumOffset finds the checksum field of a frame.
func checksumOffset(frame []byte) int {
	var h batchHeader
	n, err := parseBatchHeader(frame, &h)
	if err != nil {
		panic(err)
	}
	return n - 8
}

// TestDecoderDesynchronizes checks that a frame failing after it changed the
// decoder's state makes every later frame fail until Reset.
func TestDecoderDesynchronizes(t *testing.T) {
	cfg, frames := validFrames(t)
	dec, err := NewDecoder(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer dec.Close()
	if err := decodeSequence(dec, frames[:1]); err != nil {
		t.Fatal(err)
	}
	bad := append([]byte(nil), frames[1]...)
	bad[checksumOffset(bad)] ^= 1
	if err := decodeSequence(dec, [][]byte{bad}); !errors.Is(err, ErrChecksum) {
		t.Fatalf("err = %v, want ErrChecksum", err)
	}
	if err := decodeSequence(dec, frames[1:2]); !errors.Is(err, ErrDesynchronized) {
		t.Fatalf("err = %v, want ErrDesynchronized", err)
	}
	dec.Reset()
	if err := decodeSequence(dec, frames); err != nil {
		t.Fatalf("after Reset: %v", err)
	}
	if st := dec.Stats(); st.Batches != int64(len(frames)) || st.Failures != 0 {
		t.Fatalf("stats after Reset = %+v", st)
	}
}

// TestDecodeUnknownReference hand-builds a frame whose duplicate reference
// names a page the decoder never saw.
func TestDecodeUnknownReference(t *testing.T) {
	cfg := smallConfig()
	for _, kind := range []int{kindDup, kindDelta} {
		var recs []byte
		recs = binary.AppendUvarint(recs, zigzag(4)<<3|uint64(kind))
		recs = binary.AppendUvarint(recs, 0)
		h := batchHeader{codec: CodecNone, pageShift: cfg.pageShift(), pages: 1, recLen: uint64(len(recs)), bodyLen: uint64(len(recs)), payloadLen: uint64(len(recs))}
		frame := append(appendBatchHeader(nil, &h), recs...)
		dec, err := NewDecoder(cfg, nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := decodeSequence(dec, [][]byte{frame}); !errors.Is(err, ErrUnknownReference) {
			t.Fatalf("kind %d: err = %v, want ErrUnknownReference", kind, err)
		}
		dec.Close()
	}
}

func TestDecodeLimits(t *testing.T) {
	cfg := smallConfig()
	for _, tc := range []struct {
		name string
		h    batchHeader
		want error
	}{
		{"too many pages", batchHeader{pages: uint64(cfg.MaxBatchPages) + 1, recLen: 1 << 20, bodyLen: 1 << 20}, ErrTooLarge},
		{"body too large", batchHeader{pages: 1, recLen: 1, bodyLen: 1 << 40}, ErrTooLarge},
		{"records past body", batchHeader{pages: 1, recLen: 10, bodyLen: 5}, ErrMalformed},
		{"stored not whole pages", batchHeader{pages: 1, recLen: 1, bodyLen: 1, storedLen: 100}, ErrMalformed},
		{"payload past frame", batchHeader{pages: 1, recLen: 1, bodyLen: 1, payloadLen: 1 << 30}, ErrTruncated},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.h.pageShift = cfg.pageShift()
			dec, _ := NewDecoder(cfg, nil)
			defer dec.Close()
			err := dec.DecodeBatch(appendBatchHeader(nil, &tc.h), nil)
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
		})
	}
}

func TestCallbackErrorStopsDelivery(t *testing.T) {
	cfg, frames := validFrames(t)
	dec, _ := NewDecoder(cfg, nil)
	defer dec.Close()
	stop := errors.New("stop")
	calls := 0
	err := dec.DecodeBatch(frames[0], func(uint64, []byte) error { calls++; return stop })
	if !errors.Is(err, stop) || calls != 1 {
		t.Fatalf("err = %v after %d calls", err, calls)
	}
	// The frame was valid, so the stream continues.
	if err := decodeSequence(dec, frames[1:]); err != nil {
		t.Fatal(err)
	}
}

func TestBaselineFramesAreStateless(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Mode = ModeBaseline
	enc, dec := newPair(t, cfg)
	c, _ := NewCorpus(CorpusConfig{Seed: 1, Pages: 64, PageSize: 4096, Mix: DefaultCorpusMix(), RunPages: 4, DuplicateSources: 2})
	f0, _ := enc.EncodeBatch(nil, nil)
	f1, _ := enc.EncodeBatch(nil, c.Pages()[:32])
	f2, _ := enc.EncodeBatch(nil, c.Pages()[32:])
	// Stateless frames may arrive in any order (e.g. over parallel streams).
	m := mirror{}
	if err := m.apply(dec, f2); err != nil {
		t.Fatal(err)
	}
	if err := m.apply(dec, f1); err != nil {
		t.Fatal(err)
	}
	if err := m.apply(dec, f0); err != nil {
		t.Fatal(err)
	}
	if len(m) != 64 {
		t.Fatalf("got %d pages", len(m))
	}
}
