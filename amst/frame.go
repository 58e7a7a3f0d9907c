package amst

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
)

// Frame layout (all integers big-endian), frameHeaderLen bytes then payload:
//
//	0      type    uint8
//	1      flags   uint8
//	2..3   reserved, must be zero
//	4..7   payload length
//	8..15  sequence number (zero for control frames)
//	16..19 CRC32C (Castagnoli) of bytes 0..15 followed by the payload
//
// Sequenced frames (data, message, fin) share one sequence space per
// direction; control frames (ack, target) are not sequenced and are never
// retransmitted because each one carries the latest absolute state.
const frameHeaderLen = 20

type frameType uint8

const (
	frameData   frameType = 1 // byte-stream payload
	frameMsg    frameType = 2 // message fragment; flagEnd on the last one
	frameFin    frameType = 3 // sender will send no more sequenced frames
	frameAck    frameType = 4 // payload: received (u64), consumed (u64)
	frameTarget frameType = 5 // payload: requested stream count (u32)
	framePing   frameType = 6 // payload: sender's clock in ns (u64)
	framePong   frameType = 7 // payload: the ping's clock, echoed (u64)
)

const flagEnd uint8 = 1 // last fragment of a message

const (
	ackPayloadLen    = 16
	targetPayloadLen = 4
	pingPayloadLen   = 8
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// ErrBadFrame is wrapped by every error caused by malformed frame bytes.
var ErrBadFrame = errors.New("amst: bad frame")

type frameHeader struct {
	typ    frameType
	flags  uint8
	length uint32
	seq    uint64
	crc    uint32
}

func (t frameType) sequenced() bool { return t == frameData || t == frameMsg || t == frameFin }

func (t frameType) String() string {
	switch t {
	case frameData:
		return "data"
	case frameMsg:
		return "msg"
	case frameFin:
		return "fin"
	case frameAck:
		return "ack"
	case frameTarget:
		return "target"
	case framePing:
		return "ping"
	case framePong:
		return "pong"
	}
	return fmt.Sprintf("type(%d)", uint8(t))
}

// putFrameHeader writes the header of a frame whose payload already sits in
// buf[frameHeaderLen:], computing the checksum over header and payload.
func putFrameHeader(buf []byte, typ frameType, flags uint8, seq uint64) {
	putFrameHeaderSplit(buf[:frameHeaderLen], buf[frameHeaderLen:], typ, flags, seq)
}

// putFrameHeaderSplit writes into hdr the header of a frame whose payload
// lives elsewhere (zero-copy sends).
func putFrameHeaderSplit(hdr, payload []byte, typ frameType, flags uint8, seq uint64) {
	hdr[0] = byte(typ)
	hdr[1] = flags
	hdr[2], hdr[3] = 0, 0
	binary.BigEndian.PutUint32(hdr[4:8], uint32(len(payload)))
	binary.BigEndian.PutUint64(hdr[8:16], seq)
	crc := crc32.Update(0, castagnoli, hdr[:16])
	crc = crc32.Update(crc, castagnoli, payload)
	binary.BigEndian.PutUint32(hdr[16:20], crc)
}

// parseFrameHeader checks everything that can be checked before the payload
// is read, so that a hostile length never causes an allocation.
func parseFrameHeader(b []byte, maxPayload int) (frameHeader, error) {
	if len(b) < frameHeaderLen {
		return frameHeader{}, fmt.Errorf("%w: header is %d bytes, want %d", ErrBadFrame, len(b), frameHeaderLen)
	}
	h := frameHeader{
		typ:    frameType(b[0]),
		flags:  b[1],
		length: binary.BigEndian.Uint32(b[4:8]),
		seq:    binary.BigEndian.Uint64(b[8:16]),
		crc:    binary.BigEndian.Uint32(b[16:20]),
	}
	if b[2] != 0 || b[3] != 0 {
		return h, fmt.Errorf("%w: reserved bytes %#x %#x are not zero", ErrBadFrame, b[2], b[3])
	}
	switch h.typ {
	case frameData, frameMsg:
		if int64(h.length) > int64(maxPayload) {
			return h, fmt.Errorf("%w: %s payload of %d bytes exceeds the limit %d", ErrBadFrame, h.typ, h.length, maxPayload)
		}
	case frameFin:
		if h.length != 0 {
			return h, fmt.Errorf("%w: fin frame with %d payload bytes", ErrBadFrame, h.length)
		}
	case frameAck:
		if h.length != ackPayloadLen {
			return h, fmt.Errorf("%w: ack payload is %d bytes, want %d", ErrBadFrame, h.length, ackPayloadLen)
		}
	case frameTarget:
		if h.length != targetPayloadLen {
			return h, fmt.Errorf("%w: target payload is %d bytes, want %d", ErrBadFrame, h.length, targetPayloadLen)
		}
	case framePing, framePong:
		if h.length != pingPayloadLen {
			return h, fmt.Errorf("%w: %s payload is %d bytes, want %d", ErrBadFrame, h.typ, h.length, pingPayloadLen)
		}
	default:
		return h, fmt.Errorf("%w: unknown frame type %d", ErrBadFrame, b[0])
	}
	if h.flags&^flagEnd != 0 || (h.flags != 0 && h.typ != frameMsg) {
		return h, fmt.Errorf("%w: flags %#x not valid on a %s frame", ErrBadFrame, h.flags, h.typ)
	}
	if !h.typ.sequenced() && h.seq != 0 {
		return h, fmt.Errorf("%w: %s frame carries sequence number %d", ErrBadFrame, h.typ, h.seq)
	}
	return h, nil
}

// verifyFrame checks the checksum of a header and its payload.
func verifyFrame(hdr []byte, h frameHeader, payload []byte) error {
	crc := crc32.Update(0, castagnoli, hdr[:16])
	crc = crc32.Update(crc, castagnoli, payload)
	if crc != h.crc {
		return fmt.Errorf("%w: checksum %#08x, computed %#08x (%s frame, seq %d, %d bytes)", ErrBadFrame, h.crc, crc, h.typ, h.seq, h.length)
	}
	return nil
}

// readFrame reads one complete frame. getBuf returns a buffer of at least n
// bytes for the payload; it is called only after the header passed its checks.
func readFrame(r io.Reader, hdr []byte, maxPayload int, getBuf func(n int) []byte) (frameHeader, []byte, error) {
	if _, err := io.ReadFull(r, hdr[:frameHeaderLen]); err != nil {
		return frameHeader{}, nil, err
	}
	h, err := parseFrameHeader(hdr, maxPayload)
	if err != nil {
		return h, nil, err
	}
	payload := getBuf(int(h.length))[:h.length]
	if _, err := io.ReadFull(r, payload); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return h, payload, err
	}
	if err := verifyFrame(hdr, h, payload); err != nil {
		return h, payload, err
	}
	return h, payload, nil
}

func encodeAck(buf []byte, received, consumed uint64) []byte {
	buf = buf[:frameHeaderLen+ackPayloadLen]
	binary.BigEndian.PutUint64(buf[frameHeaderLen:], received)
	binary.BigEndian.PutUint64(buf[frameHeaderLen+8:], consumed)
	putFrameHeader(buf, frameAck, 0, 0)
	return buf
}

func encodeTarget(buf []byte, n int) []byte {
	buf = buf[:frameHeaderLen+targetPayloadLen]
	binary.BigEndian.PutUint32(buf[frameHeaderLen:], uint32(n))
	putFrameHeader(buf, frameTarget, 0, 0)
	return buf
}

func encodePing(buf []byte, typ frameType, clock uint64) []byte {
	buf = buf[:frameHeaderLen+pingPayloadLen]
	binary.BigEndian.PutUint64(buf[frameHeaderLen:], clock)
	putFrameHeader(buf, typ, 0, 0)
	return buf
}
