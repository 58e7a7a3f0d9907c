package dwcp

import (
	"encoding/binary"
	"fmt"
)

// Page is one guest page handed to a codec. Data is only valid during the
// call that receives it.
type Page struct {
	Index int
	Data  []byte
}

// PageEncoder turns a batch of pages into one frame. EncodeBatch appends the
// frame to dst and returns the extended slice; it must not retain the pages'
// Data. An encoder is used by one goroutine at a time, and frames must be
// decoded in the order they were encoded (encoders may refer to earlier
// pages).
type PageEncoder interface {
	EncodeBatch(dst []byte, pages []Page) ([]byte, error)
}

// PageDecoder applies frames made by the matching encoder, in order. It calls
// fn for every page of the frame, in the encoder's order; data is valid only
// during the call.
type PageDecoder interface {
	DecodeBatch(frame []byte, fn func(index int, data []byte) error) error
}

// LinkBandwidthSetter is implemented by encoders that choose their
// compression from the link's speed (hde's adaptive mode).
type LinkBandwidthSetter interface {
	SetLinkBandwidth(bytesPerSecond float64)
}

// CodecProvider builds the page codecs of each protocol version.
type CodecProvider interface {
	// NewEncoder returns the encoder a source uses for version v, with the
	// codec identifier it announces to the destination.
	NewEncoder(v Version, pageSize int) (PageEncoder, uint8, error)
	// NewDecoder returns the decoder for an announced codec identifier.
	NewDecoder(codec uint8, pageSize int) (PageDecoder, error)
}

// RawCodecs sends pages as they are, with no compression, for both
// versions. It is what the engine uses when no component codec is
// configured; it is not v1's baseline (fixed zstd, see HDECodecs).
type RawCodecs struct{}

// NewEncoder implements CodecProvider.
func (RawCodecs) NewEncoder(v Version, pageSize int) (PageEncoder, uint8, error) {
	return rawCodec{pageSize: pageSize}, codecRaw, nil
}

// NewDecoder implements CodecProvider.
func (RawCodecs) NewDecoder(codec uint8, pageSize int) (PageDecoder, error) {
	if codec != codecRaw {
		return nil, fmt.Errorf("dwcp: codec %d is not available in this build (raw codecs only)", codec)
	}
	return rawCodec{pageSize: pageSize}, nil
}

// rawCodec frame: for each page a uint32 index and the page's bytes.
type rawCodec struct{ pageSize int }

func (c rawCodec) EncodeBatch(dst []byte, pages []Page) ([]byte, error) {
	for _, p := range pages {
		if len(p.Data) != c.pageSize {
			return dst, fmt.Errorf("dwcp: raw codec: page %d has %d bytes, want %d", p.Index, len(p.Data), c.pageSize)
		}
		dst = binary.LittleEndian.AppendUint32(dst, uint32(p.Index))
		dst = append(dst, p.Data...)
	}
	return dst, nil
}

func (c rawCodec) DecodeBatch(frame []byte, fn func(int, []byte) error) error {
	rec := 4 + c.pageSize
	if len(frame)%rec != 0 {
		return fmt.Errorf("dwcp: raw frame of %d bytes is not a whole number of %d-byte records", len(frame), rec)
	}
	for off := 0; off < len(frame); off += rec {
		idx := binary.LittleEndian.Uint32(frame[off:])
		if err := fn(int(idx), frame[off+4:off+rec]); err != nil {
			return err
		}
	}
	return nil
}
