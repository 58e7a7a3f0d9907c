package hde

import (
	"encoding/binary"
)

// Batch frame, format version 1 (all integers little-endian or uvarint):
//
//	magic      "HDEB"
//	version    u8  = 1
//	flags      u8  bit 0: stateless (no references, no deltas, decoder state untouched)
//	codec      u8  Codec of the compressed section
//	pageShift  u8  log2(page size)
//	seq        uvarint  batch number of the encoder, from 0
//	pages      uvarint  number of page records
//	recLen     uvarint  bytes of page records at the end of the body
//	bodyLen    uvarint  uncompressed size of the body = page data + records
//	payloadLen uvarint  size of the compressed body in the frame
//	storedLen  uvarint  size of the stored section (whole incompressible pages)
//	checksum   u64      xxhash64 over (index u64, xxhash64(page) u64) of every page, in order
//	payload    payloadLen bytes: the body compressed with codec
//	stored     storedLen bytes
//
// A page record is uvarint(zigzag(index - (previous index + 1)) << 3 | kind)
// followed by, for kind dup, uvarint(zigzag(reference - index)); for kind
// delta, uvarint(delta length). Raw and delta bytes are taken in order from
// the body's page data, stored pages from the stored section.
const (
	batchMagic    = "HDEB"
	formatVersion = 1

	flagStateless = 1 << 0
	knownFlags    = flagStateless

	fixedHeaderLen = 8 // magic, version, flags, codec, pageShift
	maxHeaderLen   = fixedHeaderLen + 6*binary.MaxVarintLen64 + 8

	// maxPageIndex bounds page indices so that record arithmetic cannot overflow.
	maxPageIndex = 1<<56 - 1
)

// Page kinds in a record.
const (
	kindZero = iota
	kindDup
	kindDelta
	kindRaw    // in the compressed body
	kindStored // in the stored section
	numKinds
)

type batchHeader struct {
	flags      uint8
	codec      Codec
	pageShift  uint8
	seq        uint64
	pages      uint64
	recLen     uint64
	bodyLen    uint64
	payloadLen uint64
	storedLen  uint64
	checksum   uint64
}

func appendBatchHeader(dst []byte, h *batchHeader) []byte {
	dst = append(dst, batchMagic...)
	dst = append(dst, formatVersion, h.flags, uint8(h.codec), h.pageShift)
	dst = binary.AppendUvarint(dst, h.seq)
	dst = binary.AppendUvarint(dst, h.pages)
	dst = binary.AppendUvarint(dst, h.recLen)
	dst = binary.AppendUvarint(dst, h.bodyLen)
	dst = binary.AppendUvarint(dst, h.payloadLen)
	dst = binary.AppendUvarint(dst, h.storedLen)
	return binary.LittleEndian.AppendUint64(dst, h.checksum)
}

// parseBatchHeader reads the header of frame and returns it with its length.
// It checks only the syntax; limits are the decoder's business.
func parseBatchHeader(frame []byte, h *batchHeader) (int, error) {
	if len(frame) < fixedHeaderLen {
		if len(frame) >= 4 && string(frame[:4]) != batchMagic {
			return 0, wrapf(ErrMalformed, "bad magic %q", frame[:4])
		}
		return 0, wrapf(ErrTruncated, "frame of %d bytes is shorter than the %d-byte header", len(frame), fixedHeaderLen)
	}
	if string(frame[:4]) != batchMagic {
		return 0, wrapf(ErrMalformed, "bad magic %q", frame[:4])
	}
	if frame[4] != formatVersion {
		return 0, wrapf(ErrVersion, "version %d, this decoder reads %d", frame[4], formatVersion)
	}
	h.flags, h.codec, h.pageShift = frame[5], Codec(frame[6]), frame[7]
	if h.flags&^knownFlags != 0 {
		return 0, wrapf(ErrMalformed, "unknown flags %#x", h.flags)
	}
	if !h.codec.valid() {
		return 0, wrapf(ErrCorruptPayload, "codec byte %d unknown", uint8(h.codec))
	}
	off := fixedHeaderLen
	for _, f := range []*uint64{&h.seq, &h.pages, &h.recLen, &h.bodyLen, &h.payloadLen, &h.storedLen} {
		v, n := binary.Uvarint(frame[off:])
		if n == 0 {
			return 0, wrapf(ErrTruncated, "header ends at byte %d", len(frame))
		}
		if n < 0 {
			return 0, wrapf(ErrMalformed, "header varint at byte %d overflows", off)
		}
		*f = v
		off += n
	}
	if len(frame)-off < 8 {
		return 0, wrapf(ErrTruncated, "header ends at byte %d before the checksum", len(frame))
	}
	h.checksum = binary.LittleEndian.Uint64(frame[off:])
	return off + 8, nil
}

func zigzag(v int64) uint64   { return uint64(v<<1) ^ uint64(v>>63) }
func unzigzag(u uint64) int64 { return int64(u>>1) ^ -int64(u&1) }
