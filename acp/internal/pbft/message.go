package pbft

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
)

// MsgType is a PBFT message's kind.
type MsgType uint8

// Message kinds (Castro and Liskov, OSDI 1999, section 4), plus the state
// transfer pair a lagging replica uses to fetch a stable checkpoint.
const (
	msgInvalid MsgType = iota
	MsgRequest
	MsgPrePrepare
	MsgPrepare
	MsgCommit
	MsgReply
	MsgCheckpoint
	MsgViewChange
	MsgNewView
	MsgFetchState
	MsgState
	msgTypeCount
)

var msgNames = [...]string{"invalid", "request", "pre-prepare", "prepare", "commit", "reply",
	"checkpoint", "view-change", "new-view", "fetch-state", "state"}

func (t MsgType) String() string {
	if t < msgTypeCount {
		return msgNames[t]
	}
	return fmt.Sprintf("MsgType(%d)", uint8(t))
}

// Digest identifies a request (SHA-256 of its encoding) or a checkpointed
// state. The zero Digest is the null request of a new view.
type Digest [32]byte

// Message is every PBFT message; each kind uses a subset of the fields.
// Sig is the sender's ed25519 signature over everything except Sig and
// Batch (a pre-prepare binds its requests through Digest, which lets a
// prepare carry the primary's signature as a proof of what it was sent).
type Message struct {
	Type MsgType
	From uint32
	View uint64
	Seq  uint64
	// Digest: request digest (pre-prepare, prepare, commit) or state
	// digest (checkpoint).
	Digest Digest
	// Client and Timestamp identify a request (request, reply).
	Client    uint32
	Timestamp uint64
	Op        []byte // request
	Result    []byte // reply
	// PrimarySig is, in a prepare, the primary's signature of the
	// pre-prepare it answers: two prepares carrying valid primary
	// signatures over different digests prove equivocation.
	PrimarySig []byte
	Snapshot   []byte // state
	// Batch holds a pre-prepare's requests, ordered at one sequence
	// number; empty for the null request of a new view.
	Batch []*Message
	// View change: the stable checkpoint's proof and the prepared
	// certificates above it. New view: the 2f+1 view changes and the
	// pre-prepares the new primary derived from them.
	Checkpoints []*Message
	Prepared    []Cert
	ViewChanges []*Message
	PrePrepares []*Message

	Sig []byte
}

// Cert is a prepared certificate: a pre-prepare and 2f matching prepares.
type Cert struct {
	PrePrepare *Message
	Prepares   []*Message
}

// Wire format of one message (all integers big endian):
//
//	'P' 'B' | version u8 | type u8 | body length u32 | body | sig [64] | crc32c u32
//
// The CRC covers everything before it and catches corruption; the
// signature authenticates. Nested messages (request, proofs) are complete
// frames inside the body. Decoding bounds every count by the bytes left, so
// a hostile length can not force a large allocation.
const (
	WireVersion     = 1
	frameHeaderLen  = 8
	frameTrailerLen = ed25519.SignatureSize + 4
	minFrameLen     = frameHeaderLen + frameTrailerLen
	maxNesting      = 4
)

// DefaultMaxMessageBytes bounds one frame unless configured otherwise.
const DefaultMaxMessageBytes = 4 << 20

var (
	castagnoli = crc32.MakeTable(crc32.Castagnoli)
	domain     = []byte("dwcp-acp-pbft-v1")
	// ErrMalformed wraps every decoding error.
	ErrMalformed = errors.New("pbft: malformed message")
)

// Encode returns m's frame. m must be signed.
func (m *Message) Encode() []byte {
	body := m.appendBody(nil, true)
	b := make([]byte, 0, frameHeaderLen+len(body)+frameTrailerLen)
	b = append(b, 'P', 'B', WireVersion, byte(m.Type))
	b = binary.BigEndian.AppendUint32(b, uint32(len(body)))
	b = append(b, body...)
	sig := m.Sig
	if len(sig) != ed25519.SignatureSize {
		sig = make([]byte, ed25519.SignatureSize)
	}
	b = append(b, sig...)
	return binary.BigEndian.AppendUint32(b, crc32.Checksum(b, castagnoli))
}

// signingBytes is what Sig signs.
func (m *Message) signingBytes() []byte {
	b := append([]byte(nil), domain...)
	b = append(b, byte(m.Type))
	return m.appendBody(b, false)
}

// Sign sets m.Sig.
func (m *Message) Sign(key ed25519.PrivateKey) {
	m.Sig = ed25519.Sign(key, m.signingBytes())
}

// Verify reports whether m.Sig is pub's signature of m.
func (m *Message) Verify(pub ed25519.PublicKey) bool {
	return len(m.Sig) == ed25519.SignatureSize && len(pub) == ed25519.PublicKeySize &&
		ed25519.Verify(pub, m.signingBytes(), m.Sig)
}

// BatchDigest is the digest a pre-prepare carries for its batch: SHA-256
// over the length-prefixed encodings, zero for the empty (null) batch.
func BatchDigest(batch []*Message) Digest {
	if len(batch) == 0 {
		return Digest{}
	}
	h := sha256.New()
	for _, r := range batch {
		enc := r.Encode()
		h.Write(binary.BigEndian.AppendUint32(nil, uint32(len(enc))))
		h.Write(enc)
	}
	var d Digest
	h.Sum(d[:0])
	return d
}

func (m *Message) appendBody(b []byte, withBatch bool) []byte {
	b = binary.BigEndian.AppendUint32(b, m.From)
	b = binary.BigEndian.AppendUint64(b, m.View)
	b = binary.BigEndian.AppendUint64(b, m.Seq)
	b = append(b, m.Digest[:]...)
	b = binary.BigEndian.AppendUint32(b, m.Client)
	b = binary.BigEndian.AppendUint64(b, m.Timestamp)
	b = appendBytes32(b, m.Op)
	b = appendBytes32(b, m.Result)
	b = appendBytes32(b, m.PrimarySig)
	b = appendBytes32(b, m.Snapshot)
	if withBatch {
		b = appendList(b, m.Batch)
	} else {
		b = appendList(b, nil)
	}
	b = appendList(b, m.Checkpoints)
	b = binary.BigEndian.AppendUint16(b, uint16(len(m.Prepared)))
	for _, c := range m.Prepared {
		b = appendBytes32(b, c.PrePrepare.Encode())
		b = appendList(b, c.Prepares)
	}
	b = appendList(b, m.ViewChanges)
	return appendList(b, m.PrePrepares)
}

func appendBytes32(b, v []byte) []byte {
	b = binary.BigEndian.AppendUint32(b, uint32(len(v)))
	return append(b, v...)
}

func appendList(b []byte, ms []*Message) []byte {
	b = binary.BigEndian.AppendUint16(b, uint16(len(ms)))
	for _, m := range ms {
		b = appendBytes32(b, m.Encode())
	}
	return b
}

// Decode parses one frame of at most maxBytes bytes. It never panics and
// allocates at most O(len(b)).
func Decode(b []byte, maxBytes int) (*Message, error) {
	if len(b) > maxBytes {
		return nil, fmt.Errorf("%w: %d bytes exceeds the %d-byte limit", ErrMalformed, len(b), maxBytes)
	}
	return decode(b, 0)
}

func decode(b []byte, depth int) (*Message, error) {
	if depth > maxNesting {
		return nil, fmt.Errorf("%w: nesting deeper than %d", ErrMalformed, maxNesting)
	}
	if len(b) < minFrameLen {
		return nil, fmt.Errorf("%w: %d bytes is shorter than the %d-byte minimum", ErrMalformed, len(b), minFrameLen)
	}
	if b[0] != 'P' || b[1] != 'B' {
		return nil, fmt.Errorf("%w: bad magic %q", ErrMalformed, b[:2])
	}
	if b[2] != WireVersion {
		return nil, fmt.Errorf("%w: version %d, want %d", ErrMalformed, b[2], WireVersion)
	}
	t := MsgType(b[3])
	if t == msgInvalid || t >= msgTypeCount {
		return nil, fmt.Errorf("%w: type %d", ErrMalformed, b[3])
	}
	n := binary.BigEndian.Uint32(b[4:8])
	if uint64(n) != uint64(len(b)-minFrameLen) {
		return nil, fmt.Errorf("%w: body length %d in a %d-byte frame", ErrMalformed, n, len(b))
	}
	end := len(b) - 4
	if got, want := crc32.Checksum(b[:end], castagnoli), binary.BigEndian.Uint32(b[end:]); got != want {
		return nil, fmt.Errorf("%w: checksum %08x, want %08x", ErrMalformed, got, want)
	}
	m := &Message{Type: t}
	d := reader{b: b[frameHeaderLen : frameHeaderLen+int(n)], depth: depth}
	m.From, m.View, m.Seq = d.u32(), d.u64(), d.u64()
	copy(m.Digest[:], d.take(32))
	m.Client, m.Timestamp = d.u32(), d.u64()
	m.Op, m.Result, m.PrimarySig, m.Snapshot = d.bytes(), d.bytes(), d.bytes(), d.bytes()
	m.Batch = d.list()
	m.Checkpoints = d.list()
	if np := d.u16(); np > 0 {
		if int(np)*(8+minFrameLen) > len(d.b) {
			d.fail(fmt.Errorf("%d certificates in %d bytes", np, len(d.b)))
		} else {
			m.Prepared = make([]Cert, 0, np)
			for i := 0; i < int(np) && d.err == nil; i++ {
				c := Cert{PrePrepare: d.msg(d.bytes())}
				c.Prepares = d.list()
				m.Prepared = append(m.Prepared, c)
			}
		}
	}
	m.ViewChanges = d.list()
	m.PrePrepares = d.list()
	if d.err == nil && len(d.b) != 0 {
		d.fail(fmt.Errorf("%d trailing body bytes", len(d.b)))
	}
	if d.err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrMalformed, t, d.err)
	}
	m.Sig = append([]byte(nil), b[end-ed25519.SignatureSize:end]...)
	return m, nil
}

type reader struct {
	b     []byte
	depth int
	err   error
}

func (d *reader) fail(err error) {
	if d.err == nil {
		d.err = err
	}
}

func (d *reader) take(n int) []byte {
	if d.err != nil {
		return nil
	}
	if n < 0 || len(d.b) < n {
		d.fail(errors.New("truncated"))
		return nil
	}
	v := d.b[:n:n]
	d.b = d.b[n:]
	return v
}

func (d *reader) u16() uint16 {
	if v := d.take(2); v != nil {
		return binary.BigEndian.Uint16(v)
	}
	return 0
}

func (d *reader) u32() uint32 {
	if v := d.take(4); v != nil {
		return binary.BigEndian.Uint32(v)
	}
	return 0
}

func (d *reader) u64() uint64 {
	if v := d.take(8); v != nil {
		return binary.BigEndian.Uint64(v)
	}
	return 0
}

func (d *reader) bytes() []byte {
	n := d.u32()
	if d.err != nil {
		return nil
	}
	if uint64(n) > uint64(len(d.b)) {
		d.fail(fmt.Errorf("field of %d bytes with %d left", n, len(d.b)))
		return nil
	}
	v := d.take(int(n))
	if len(v) == 0 {
		return nil
	}
	return append([]byte(nil), v...)
}

func (d *reader) msg(b []byte) *Message {
	if d.err != nil {
		return nil
	}
	m, err := decode(b, d.depth+1)
	if err != nil {
		d.fail(err)
		return nil
	}
	return m
}

func (d *reader) list() []*Message {
	n := d.u16()
	if d.err != nil || n == 0 {
		return nil
	}
	if int(n)*(4+minFrameLen) > len(d.b) {
		d.fail(fmt.Errorf("%d messages in %d bytes", n, len(d.b)))
		return nil
	}
	ms := make([]*Message, 0, n)
	for i := 0; i < int(n) && d.err == nil; i++ {
		ms = append(ms, d.msg(d.bytes()))
	}
	return ms
}
