package ass

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"io"
)

// Wire format, version 1. Every message travels in one frame:
//
//	magic "AS" | version (1 byte) | kind (1 byte) | payload length (uint32 BE) |
//	CRC-32C of the payload (uint32 BE) | payload
//
// The payload starts with the sender's header (node id, reply address,
// incarnation) followed by the kind's fields, all as varints and
// length-prefixed strings; CRDT states use the canonical encoding of codec.go.
// A decoder rejects a frame whose declared length exceeds its limit before
// reading the payload.
const (
	wireVersion     = 1
	frameHeaderSize = 12
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

type msgKind uint8

const (
	kindDelta      msgKind = 1 // a delta interval [from, to) of the sender's buffer
	kindAck        msgKind = 2 // the receiver holds (durably) every delta below seq
	kindDigest     msgKind = 3 // bucket sums of the sender's per-key hashes
	kindDigestKeys msgKind = 4 // per-key hashes of the buckets that differed
	kindKeyStates  msgKind = 5 // key states pushed, and keys wanted back
)

func (k msgKind) String() string {
	switch k {
	case kindDelta:
		return "delta"
	case kindAck:
		return "ack"
	case kindDigest:
		return "digest"
	case kindDigestKeys:
		return "digest-keys"
	case kindKeyStates:
		return "key-states"
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

type keyHash struct {
	key  string
	hash uint64
}

// message is the decoded form of every frame; fields unused by a kind are zero.
type message struct {
	kind        msgKind
	node        string // sender's node id
	addr        string // sender's address, where replies go
	incarnation uint64 // sender's incarnation: changes on every start

	// kindDelta and kindAck.
	from, to uint64 // delta interval; for an ack, to is the acknowledged seq
	baseline bool   // delta: from is the acknowledged point, or a gap repaired by digest
	ackInc   uint64 // ack: the incarnation of the delta sender being acknowledged
	// delta: the interval's deltas, each the canonical encoding of an
	// OR-Map value, back to back; decoded into deltas. raw is the whole
	// section, which a receiver appends to its log as one record.
	encoded [][]byte
	deltas  []*ORMap
	raw     []byte
	delta   *ORMap // key-states: the pushed states

	// Digest exchange.
	session uint64
	level   uint8     // digest: log2 of the bucket count
	sums    []uint64  // digest: one sum per bucket
	buckets []uint32  // digest-keys: the buckets whose sums differed
	hashes  []keyHash // digest-keys: the responder's keys in those buckets
	want    []string  // key-states: keys the sender asks for
	reply   bool      // key-states: the answer to a want list, ending the session
}

func encodeFrame(m *message) []byte { return encodeFrameSized(m, 256) }

// encodeFrameSized encodes m into a buffer of capacity sizeHint to start with.
func encodeFrameSized(m *message, sizeHint int) []byte {
	e := encoder{buf: make([]byte, frameHeaderSize, frameHeaderSize+sizeHint)}
	e.string(m.node)
	e.string(m.addr)
	e.uvarint(m.incarnation)
	switch m.kind {
	case kindDelta:
		e.uvarint(m.from)
		e.uvarint(m.to)
		e.byte(boolByte(m.baseline))
		e.uvarint(uint64(len(m.encoded)))
		for _, b := range m.encoded {
			e.buf = append(e.buf, b...)
		}
	case kindAck:
		e.uvarint(m.ackInc)
		e.uvarint(m.to)
	case kindDigest:
		e.uvarint(m.session)
		e.byte(m.level)
		for _, s := range m.sums {
			e.buf = binary.LittleEndian.AppendUint64(e.buf, s)
		}
	case kindDigestKeys:
		e.uvarint(m.session)
		e.uvarint(uint64(len(m.buckets)))
		for _, b := range m.buckets {
			e.uvarint(uint64(b))
		}
		e.uvarint(uint64(len(m.hashes)))
		for _, h := range m.hashes {
			e.string(h.key)
			e.buf = binary.LittleEndian.AppendUint64(e.buf, h.hash)
		}
	case kindKeyStates:
		e.uvarint(m.session)
		e.byte(boolByte(m.reply))
		e.uvarint(uint64(len(m.want)))
		for _, k := range m.want {
			e.string(k)
		}
		e.value(m.delta)
	}
	b := e.buf
	b[0], b[1], b[2], b[3] = 'A', 'S', wireVersion, byte(m.kind)
	payload := b[frameHeaderSize:]
	binary.BigEndian.PutUint32(b[4:], uint32(len(payload)))
	binary.BigEndian.PutUint32(b[8:], crc32.Checksum(payload, castagnoli))
	return b
}

func boolByte(v bool) byte {
	if v {
		return 1
	}
	return 0
}

// checkFrameHeader validates a frame header and returns the payload length.
func checkFrameHeader(h []byte, maxFrame int) (int, error) {
	if h[0] != 'A' || h[1] != 'S' {
		return 0, fmt.Errorf("%w: bad magic %q", ErrCorrupt, h[:2])
	}
	if h[2] != wireVersion {
		return 0, fmt.Errorf("%w: wire version %d, want %d", ErrCorrupt, h[2], wireVersion)
	}
	if k := msgKind(h[3]); k < kindDelta || k > kindKeyStates {
		return 0, fmt.Errorf("%w: unknown message kind %d", ErrCorrupt, h[3])
	}
	n := binary.BigEndian.Uint32(h[4:])
	if uint64(n) > uint64(maxFrame) {
		return 0, fmt.Errorf("%w: frame of %d bytes exceeds limit %d", ErrCorrupt, n, maxFrame)
	}
	return int(n), nil
}

// readFrame reads one whole frame from r into a new buffer.
func readFrame(r io.Reader, maxFrame int) ([]byte, error) {
	var h [frameHeaderSize]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return nil, err
	}
	n, err := checkFrameHeader(h[:], maxFrame)
	if err != nil {
		return nil, err
	}
	b := make([]byte, frameHeaderSize+n)
	copy(b, h[:])
	if _, err := io.ReadFull(r, b[frameHeaderSize:]); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	return b, nil
}

// decodeFrame decodes one frame. The message's byte fields alias b, which the
// caller must not reuse.
func decodeFrame(b []byte, maxFrame int) (*message, error) {
	if len(b) < frameHeaderSize {
		return nil, fmt.Errorf("%w: frame of %d bytes is shorter than its header", ErrCorrupt, len(b))
	}
	n, err := checkFrameHeader(b, maxFrame)
	if err != nil {
		return nil, err
	}
	if len(b) != frameHeaderSize+n {
		return nil, fmt.Errorf("%w: frame says %d payload bytes, has %d", ErrCorrupt, n, len(b)-frameHeaderSize)
	}
	payload := b[frameHeaderSize:]
	if got, want := crc32.Checksum(payload, castagnoli), binary.BigEndian.Uint32(b[8:]); got != want {
		return nil, fmt.Errorf("%w: checksum %08x, frame says %08x", ErrCorrupt, got, want)
	}
	m := &message{kind: msgKind(b[3])}
	d := decoder{buf: payload}
	m.node, m.addr, m.incarnation = d.string(), d.string(), d.uvarint()
	switch m.kind {
	case kindDelta:
		m.from, m.to = d.uvarint(), d.uvarint()
		m.baseline = d.flag()
		n := d.count(2)
		start := d.off
		m.deltas = make([]*ORMap, 0, n)
		m.encoded = make([][]byte, 0, n)
		for i := 0; i < n && d.err == nil; i++ {
			at := d.off
			m.deltas = append(m.deltas, d.mapValue())
			m.encoded = append(m.encoded, payload[at:d.off:d.off])
		}
		m.raw = payload[start:d.off:d.off]
		if d.err == nil && m.to < m.from {
			d.fail("delta interval [%d, %d) is reversed", m.from, m.to)
		}
	case kindAck:
		m.ackInc, m.to = d.uvarint(), d.uvarint()
	case kindDigest:
		m.session = d.uvarint()
		m.level = d.byte()
		if d.err == nil && m.level > maxDigestLevel {
			d.fail("digest level %d exceeds %d", m.level, maxDigestLevel)
		}
		if d.err == nil {
			count := 1 << m.level
			if len(payload)-d.off != 8*count {
				d.fail("digest of level %d needs %d bytes, has %d", m.level, 8*count, len(payload)-d.off)
			} else {
				m.sums = make([]uint64, count)
				for i := range m.sums {
					m.sums[i] = binary.LittleEndian.Uint64(payload[d.off:])
					d.off += 8
				}
			}
		}
	case kindDigestKeys:
		m.session = d.uvarint()
		nb := d.count(1)
		m.buckets = make([]uint32, 0, nb)
		for i := 0; i < nb && d.err == nil; i++ {
			b := d.uvarint()
			if b >= 1<<maxDigestLevel {
				d.fail("bucket %d out of range", b)
			}
			m.buckets = append(m.buckets, uint32(b))
		}
		n := d.count(9)
		m.hashes = make([]keyHash, 0, n)
		for i := 0; i < n && d.err == nil; i++ {
			k := d.string()
			if d.err == nil && len(payload)-d.off < 8 {
				d.fail("truncated key hash")
			}
			if d.err == nil {
				m.hashes = append(m.hashes, keyHash{key: k, hash: binary.LittleEndian.Uint64(payload[d.off:])})
				d.off += 8
			}
		}
	case kindKeyStates:
		m.session = d.uvarint()
		m.reply = d.flag()
		n := d.count(1)
		m.want = make([]string, 0, n)
		for i := 0; i < n && d.err == nil; i++ {
			m.want = append(m.want, d.string())
		}
		m.delta = d.mapValue()
	}
	d.end()
	if d.err != nil {
		return nil, fmt.Errorf("%v message: %w", m.kind, d.err)
	}
	return m, nil
}

func (d *decoder) flag() bool {
	switch b := d.byte(); b {
	case 0:
		return false
	case 1:
		return true
	default:
		d.fail("flag byte %d", b)
		return false
	}
}

// mapValue reads a value that must be an OR-Map.
func (d *decoder) mapValue() *ORMap {
	v := d.value(0)
	if d.err != nil {
		return nil
	}
	m, ok := v.(*ORMap)
	if !ok {
		d.fail("state is not an OR-Map")
		return nil
	}
	return m
}
