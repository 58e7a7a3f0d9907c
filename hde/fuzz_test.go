package hde

import (
	"bytes"
	"testing"
)

// FuzzDecodeBatch feeds arbitrary frames to a decoder that has already
// decoded a valid prefix of a stream (so references and deltas can resolve).
// Any input must yield pages or a typed error: never a panic, a hang, an
// allocation past the configured limits, or a page delivered from a frame
// that then fails.
func FuzzDecodeBatch(f *testing.F) {
	cfg, frames := validFrames(f)
	// The state-building prefix is stored uncompressed: under coverage
	// instrumentation decoding zstd prefixes would dominate every execution.
	plainCfg := cfg
	plainCfg.Codecs = []Codec{CodecNone}
	_, prefixes := validFramesWith(f, plainCfg)
	for i, fr := range frames {
		f.Add(uint8(i), fr)
	}
	f.Add(uint8(1), []byte("HDEB\x01\x00\x00\x09"))
	// One decoder, Reset per input: building codecs and metrics per input
	// would make each execution 100x slower.
	dec, err := NewDecoder(cfg, nil)
	if err != nil {
		f.Fatal(err)
	}
	defer dec.Close()
	f.Fuzz(func(t *testing.T, prefix uint8, frame []byte) {
		dec.Reset()
		n := int(prefix) % (len(prefixes) + 1)
		if err := decodeSequence(dec, prefixes[:n]); err != nil {
			t.Fatal(err)
		}
		delivered := 0
		err := dec.DecodeBatch(frame, func(index uint64, data []byte) error {
			if len(data) != cfg.PageSize {
				t.Fatalf("page %d of %d bytes", index, len(data))
			}
			delivered++
			return nil
		})
		if err != nil && delivered > 0 {
			t.Fatalf("delivered %d pages from a frame that failed: %v", delivered, err)
		}
	})
}

// FuzzRoundTrip encodes fuzzer-chosen page contents and requires the
// decoder to reproduce them exactly.
func FuzzRoundTrip(f *testing.F) {
	f.Add([]byte("hello"), uint8(3), uint8(0))
	f.Add(bytes.Repeat([]byte{0}, 600), uint8(7), uint8(1))
	f.Fuzz(func(t *testing.T, seed []byte, npages uint8, mode uint8) {
		cfg := smallConfig()
		if mode%4 == 3 {
			cfg.Mode = ModeBaseline
		}
		enc, dec := newPair(t, cfg)
		m := mirror{}
		for round := 0; round < 3; round++ {
			var pages []Page
			for i := 0; i < int(npages%20)+1; i++ {
				p := make([]byte, cfg.PageSize)
				if len(seed) > 0 {
					for k := range p {
						if (k+i+round)%(int(mode%5)+1) == 0 {
							p[k] = seed[(k*(i+1)+round)%len(seed)]
						}
					}
				}
				pages = append(pages, Page{Index: uint64(i * int(mode%3+1)), Data: p})
			}
			frame, err := enc.EncodeBatch(nil, pages)
			if err != nil {
				t.Fatal(err)
			}
			if err := m.apply(dec, frame); err != nil {
				t.Fatal(err)
			}
			for _, p := range pages {
				if !bytes.Equal(m[p.Index], p.Data) {
					t.Fatalf("round %d page %d differs", round, p.Index)
				}
			}
		}
	})
}
