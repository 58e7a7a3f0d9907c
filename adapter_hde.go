package dwcp

import (
	"fmt"

	"github.com/dwcp/dwcp/hde"
	"github.com/dwcp/dwcp/metrics"
)

// HDECodecs builds hde encoders and decoders: v3 gets hde's adaptive mode
// (zero pages, duplicates, XOR deltas, adaptive compression steered by the
// link bandwidth), v1 the baseline mode (every page raw, batch compressed
// with fixed zstd, no state).
type HDECodecs struct {
	Metrics *metrics.Metrics
	// CacheBytes bounds each side's page cache for deltas and duplicates
	// (0: hde's default, 256 MiB).
	CacheBytes int64
}

func (h *HDECodecs) config(pageSize int, mode hde.Mode) hde.Config {
	c := hde.DefaultConfig()
	c.PageSize = pageSize
	c.Mode = mode
	if h.CacheBytes > 0 {
		c.CacheBytes = h.CacheBytes
	}
	return c
}

// NewEncoder implements CodecProvider.
func (h *HDECodecs) NewEncoder(v Version, pageSize int) (PageEncoder, uint8, error) {
	mode, id := hde.ModeAdaptive, codecHDEAdaptive
	if v == V1 {
		mode, id = hde.ModeBaseline, codecHDEBaseline
	}
	e, err := hde.NewEncoder(h.config(pageSize, mode), h.Metrics)
	if err != nil {
		return nil, 0, err
	}
	return &hdeEncoder{e: e}, id, nil
}

// NewDecoder implements CodecProvider.
func (h *HDECodecs) NewDecoder(codec uint8, pageSize int) (PageDecoder, error) {
	if codec != codecHDEAdaptive && codec != codecHDEBaseline {
		return nil, fmt.Errorf("dwcp: codec %d is not an hde codec", codec)
	}
	d, err := hde.NewDecoder(h.config(pageSize, hde.ModeAdaptive), h.Metrics)
	if err != nil {
		return nil, err
	}
	return &hdeDecoder{d: d}, nil
}

type hdeEncoder struct {
	e     *hde.Encoder
	pages []hde.Page
}

func (h *hdeEncoder) EncodeBatch(dst []byte, pages []Page) ([]byte, error) {
	h.pages = h.pages[:0]
	for _, p := range pages {
		h.pages = append(h.pages, hde.Page{Index: uint64(p.Index), Data: p.Data})
	}
	return h.e.EncodeBatch(dst, h.pages)
}

func (h *hdeEncoder) SetLinkBandwidth(bps float64) { h.e.SetLinkBandwidth(bps) }
func (h *hdeEncoder) Close() error                 { return h.e.Close() }

type hdeDecoder struct{ d *hde.Decoder }

func (h *hdeDecoder) DecodeBatch(frame []byte, fn func(int, []byte) error) error {
	return h.d.DecodeBatch(frame, func(index uint64, data []byte) error {
		if index > maxPageCount {
			return fmt.Errorf("dwcp: hde delivered page index %d beyond the engine's range", index)
		}
		return fn(int(index), data)
	})
}

func (h *hdeDecoder) Close() error { return h.d.Close() }
