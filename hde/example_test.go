package hde_test

import (
	"bytes"
	"fmt"

	"github.com/dwcp/dwcp/hde"
	"github.com/dwcp/dwcp/metrics"
)

// Two pre-copy rounds over a small guest: the first sends every page, the
// second only the pages the guest wrote meanwhile, mostly as small deltas.
func Example() {
	cfg := hde.DefaultConfig()
	enc, _ := hde.NewEncoder(cfg, nil)
	defer enc.Close()
	dec, _ := hde.NewDecoder(cfg, nil)
	defer dec.Close()

	cc := hde.DefaultCorpusConfig(42)
	cc.Pages = 512
	guest, _ := hde.NewCorpus(cc)
	dest := make([]byte, len(guest.Memory()))
	receive := func(index uint64, data []byte) error {
		copy(dest[index*uint64(cfg.PageSize):], data)
		return nil
	}

	var frame []byte
	frame, _ = enc.EncodeBatch(frame[:0], guest.Pages())
	if err := dec.DecodeBatch(frame, receive); err != nil {
		fmt.Println(err)
	}
	dirty := guest.NextRound()
	frame, _ = enc.EncodeBatch(frame[:0], guest.PagesOf(dirty))
	if err := dec.DecodeBatch(frame, receive); err != nil {
		fmt.Println(err)
	}

	st := enc.Stats()
	fmt.Println("identical:", bytes.Equal(dest, guest.Memory()))
	fmt.Println("dirty pages:", len(dirty), "sent as deltas:", st.DeltaPages > 0)
	// Output:
	// identical: true
	// dirty pages: 26 sent as deltas: true
}

// The v1 protocol: every page raw, one fixed codec, stateless frames.
func ExampleConfig_baseline() {
	cfg := hde.DefaultConfig()
	cfg.Mode = hde.ModeBaseline
	cfg.BaselineCodec = hde.CodecZstdFastest
	enc, _ := hde.NewEncoder(cfg, nil)
	defer enc.Close()
	page := bytes.Repeat([]byte("v1 page "), cfg.PageSize/8)
	frame, _ := enc.EncodeBatch(nil, []hde.Page{{Index: 7, Data: page}})

	dec, _ := hde.NewDecoder(cfg, nil)
	defer dec.Close()
	_ = dec.DecodeBatch(frame, func(index uint64, data []byte) error {
		fmt.Println(index, bytes.Equal(data, page), len(frame) < 100)
		return nil
	})
	// Output: 7 true true
}

// A foreign byte stream (for example QEMU's migration stream) carried in
// checksummed, adaptively compressed chunks.
func ExampleNewWriter() {
	cfg := hde.DefaultConfig()
	cfg.DataClass = metrics.DataClassBinary
	enc, _ := hde.NewStreamEncoder(cfg, nil)
	defer enc.Close()
	dec, _ := hde.NewStreamDecoder(cfg, nil)
	defer dec.Close()

	stream := bytes.Repeat([]byte("QEVM\x00\x00\x00\x03 device state "), 50000)
	var wire bytes.Buffer
	w := hde.NewWriter(&wire, enc)
	w.Write(stream)
	w.Close()

	wireBytes := wire.Len()

	var got bytes.Buffer
	got.ReadFrom(hde.NewReader(&wire, dec))
	fmt.Println(bytes.Equal(got.Bytes(), stream), wireBytes < len(stream)/10)
	// Output: true true
}
