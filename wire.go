package dwcp

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
)

// Engine wire format, version 1. Every engine message travels as one
// transport message (a Session message) holding one frame:
//
//	offset size
//	0      2    magic "DW"
//	2      1    format version (1)
//	3      1    message type
//	4      8    sequence number (per direction, from 1)
//	12     4    payload length n (<= maxPayload)
//	16     n    payload
//	16+n   4    CRC-32C of bytes [0, 16+n)
//
// The sequence number lets the receiver process messages in the order they
// were sent even when a multi-stream transport delivers them out of order.
// Integers are little-endian; strings are a uint16 length and UTF-8 bytes.
const (
	frameMagic0   = 'D'
	frameMagic1   = 'W'
	formatVersion = 1
	frameHeader   = 16
	frameTrailer  = 4
	// maxPayload bounds what a peer can make us allocate per message.
	maxPayload = 64 << 20
	maxString  = 1024
)

type msgType uint8

const (
	msgHello      msgType = 1 // source -> destination
	msgHelloAck   msgType = 2 // destination -> source
	msgPages      msgType = 3 // source -> destination
	msgRoundEnd   msgType = 4 // source -> destination
	msgRoundAck   msgType = 5 // destination -> source
	msgSwitchover msgType = 6 // source -> destination
	msgVerified   msgType = 7 // destination -> source
	msgCommit     msgType = 8 // source -> destination
	msgDone       msgType = 9 // destination -> source
	msgAbort      msgType = 10
)

func (t msgType) String() string {
	switch t {
	case msgHello:
		return "hello"
	case msgHelloAck:
		return "hello-ack"
	case msgPages:
		return "pages"
	case msgRoundEnd:
		return "round-end"
	case msgRoundAck:
		return "round-ack"
	case msgSwitchover:
		return "switchover"
	case msgVerified:
		return "verified"
	case msgCommit:
		return "commit"
	case msgDone:
		return "done"
	case msgAbort:
		return "abort"
	}
	return fmt.Sprintf("msgType(%d)", uint8(t))
}

// ErrProtocol wraps every malformed or unexpected message from a peer.
var ErrProtocol = errors.New("dwcp: protocol error")

func protoErr(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrProtocol, fmt.Sprintf(format, args...))
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// appendFrame appends a complete frame holding payload to dst.
func appendFrame(dst []byte, t msgType, seq uint64, payload []byte) []byte {
	start := len(dst)
	dst = append(dst, frameMagic0, frameMagic1, formatVersion, byte(t))
	dst = binary.LittleEndian.AppendUint64(dst, seq)
	dst = binary.LittleEndian.AppendUint32(dst, uint32(len(payload)))
	dst = append(dst, payload...)
	return binary.LittleEndian.AppendUint32(dst, crc32.Checksum(dst[start:], castagnoli))
}

// frame is a decoded frame; payload aliases the input buffer.
type frame struct {
	typ     msgType
	seq     uint64
	payload []byte
}

// parseFrame checks and splits one frame. It never allocates.
func parseFrame(b []byte) (frame, error) {
	if len(b) < frameHeader+frameTrailer {
		return frame{}, protoErr("frame of %d bytes is shorter than the %d-byte minimum", len(b), frameHeader+frameTrailer)
	}
	if b[0] != frameMagic0 || b[1] != frameMagic1 {
		return frame{}, protoErr("bad magic %q: the peer does not speak the DWCP engine protocol", b[:2])
	}
	if b[2] != formatVersion {
		return frame{}, protoErr("frame format version %d, this build speaks %d", b[2], formatVersion)
	}
	n := binary.LittleEndian.Uint32(b[12:16])
	if n > maxPayload {
		return frame{}, protoErr("payload length %d exceeds the %d limit", n, maxPayload)
	}
	if len(b) != frameHeader+int(n)+frameTrailer {
		return frame{}, protoErr("frame length %d does not match payload length %d", len(b), n)
	}
	body := b[:frameHeader+int(n)]
	if want, got := binary.LittleEndian.Uint32(b[len(body):]), crc32.Checksum(body, castagnoli); want != got {
		return frame{}, protoErr("checksum mismatch (frame says %08x, computed %08x)", want, got)
	}
	t := msgType(b[3])
	if t < msgHello || t > msgAbort {
		return frame{}, protoErr("unknown message type %d", b[3])
	}
	seq := binary.LittleEndian.Uint64(b[4:12])
	if seq == 0 {
		return frame{}, protoErr("sequence number 0")
	}
	return frame{typ: t, seq: seq, payload: body[frameHeader:]}, nil
}

// reader decodes a payload; the first error sticks and later reads return
// zero values.
type reader struct {
	b   []byte
	err error
}

func (r *reader) fail(what string, need int) {
	if r.err == nil {
		r.err = protoErr("truncated payload: %s needs %d bytes, %d left", what, need, len(r.b))
	}
	r.b = nil
}

func (r *reader) u8(what string) uint8 {
	if len(r.b) < 1 {
		r.fail(what, 1)
		return 0
	}
	v := r.b[0]
	r.b = r.b[1:]
	return v
}

func (r *reader) u32(what string) uint32 {
	if len(r.b) < 4 {
		r.fail(what, 4)
		return 0
	}
	v := binary.LittleEndian.Uint32(r.b)
	r.b = r.b[4:]
	return v
}

func (r *reader) u64(what string) uint64 {
	if len(r.b) < 8 {
		r.fail(what, 8)
		return 0
	}
	v := binary.LittleEndian.Uint64(r.b)
	r.b = r.b[8:]
	return v
}

func (r *reader) str(what string) string {
	if len(r.b) < 2 {
		r.fail(what, 2)
		return ""
	}
	n := int(binary.LittleEndian.Uint16(r.b))
	if n > maxString {
		if r.err == nil {
			r.err = protoErr("%s of %d bytes exceeds the %d limit", what, n, maxString)
		}
		r.b = nil
		return ""
	}
	if len(r.b) < 2+n {
		r.fail(what, 2+n)
		return ""
	}
	s := string(r.b[2 : 2+n])
	r.b = r.b[2+n:]
	return s
}

// done reports an error if bytes are left over or a read failed.
func (r *reader) done(msg string) error {
	if r.err != nil {
		return fmt.Errorf("%s: %w", msg, r.err)
	}
	if len(r.b) != 0 {
		return protoErr("%s: %d unexpected trailing bytes", msg, len(r.b))
	}
	return nil
}

func appendString(b []byte, s string) []byte {
	if len(s) > maxString {
		s = s[:maxString]
	}
	b = binary.LittleEndian.AppendUint16(b, uint16(len(s)))
	return append(b, s...)
}

// Codec identifiers carried in hello.
const (
	codecRaw         uint8 = 0 // pages as they are (no component codec available)
	codecHDEBaseline uint8 = 1 // hde fixed zstd, no dedup or delta (v1)
	codecHDEAdaptive uint8 = 2 // hde adaptive (v3)
)

type helloMsg struct {
	MigrationID string
	VMID        string
	SourceNode  string
	Version     Version
	Codec       uint8
	PageSize    uint32
	PageCount   uint32
	OwnerEpoch  uint64
	Lanes       uint8
}

func (m helloMsg) append(b []byte) []byte {
	b = appendString(b, m.MigrationID)
	b = appendString(b, m.VMID)
	b = appendString(b, m.SourceNode)
	b = append(b, byte(m.Version), m.Codec)
	b = binary.LittleEndian.AppendUint32(b, m.PageSize)
	b = binary.LittleEndian.AppendUint32(b, m.PageCount)
	b = binary.LittleEndian.AppendUint64(b, m.OwnerEpoch)
	return append(b, m.Lanes)
}

func decodeHello(p []byte) (helloMsg, error) {
	r := reader{b: p}
	m := helloMsg{
		MigrationID: r.str("migration id"),
		VMID:        r.str("vm id"),
		SourceNode:  r.str("source node"),
		Version:     Version(r.u8("version")),
		Codec:       r.u8("codec"),
		PageSize:    r.u32("page size"),
		PageCount:   r.u32("page count"),
		OwnerEpoch:  r.u64("owner epoch"),
		Lanes:       r.u8("lanes"),
	}
	if err := r.done("hello"); err != nil {
		return m, err
	}
	if m.Version != V1 && m.Version != V3 {
		return m, protoErr("hello: unknown protocol version %d", m.Version)
	}
	if m.Codec > codecHDEAdaptive {
		return m, protoErr("hello: unknown codec %d", m.Codec)
	}
	if err := validPageSize(int(m.PageSize)); err != nil {
		return m, protoErr("hello: %v", err)
	}
	if m.PageCount == 0 {
		return m, protoErr("hello: zero pages")
	}
	if m.Lanes == 0 || m.Lanes > maxLanes {
		return m, protoErr("hello: %d lanes, want 1..%d", m.Lanes, maxLanes)
	}
	if m.VMID == "" || m.MigrationID == "" {
		return m, protoErr("hello: empty vm or migration id")
	}
	return m, nil
}

type helloAckMsg struct {
	OK       bool
	Reason   string
	DestNode string
}

func (m helloAckMsg) append(b []byte) []byte {
	b = append(b, boolByte(m.OK))
	b = appendString(b, m.Reason)
	return appendString(b, m.DestNode)
}

func decodeHelloAck(p []byte) (helloAckMsg, error) {
	r := reader{b: p}
	m := helloAckMsg{OK: r.u8("ok") == 1, Reason: r.str("reason"), DestNode: r.str("destination node")}
	return m, r.done("hello-ack")
}

// maxLanes bounds the parallel codec lanes of a migration.
const maxLanes = 16

// pagesMsg carries one codec frame of one lane with the index and xxhash64
// of every page in it, in frame order. pageEntry is 12 bytes on the wire.
type pagesMsg struct {
	Round   uint32
	Lane    uint8
	Entries []pageEntry
	Frame   []byte // aliases the input on decode
}

type pageEntry struct {
	Index uint32
	Hash  uint64
}

const pageEntrySize = 12

func appendPagesHeader(b []byte, round uint32, lane uint8, entries []pageEntry) []byte {
	b = binary.LittleEndian.AppendUint32(b, round)
	b = append(b, lane)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(entries)))
	for _, e := range entries {
		b = binary.LittleEndian.AppendUint32(b, e.Index)
		b = binary.LittleEndian.AppendUint64(b, e.Hash)
	}
	return b
}

// decodePages parses a pages payload, reusing entries' storage. pageCount
// bounds the indices; every page must belong to the frame's lane.
func decodePages(p []byte, pageCount uint32, lanes int, entries []pageEntry) (pagesMsg, error) {
	r := reader{b: p}
	m := pagesMsg{Round: r.u32("round"), Lane: r.u8("lane")}
	n := r.u32("page count")
	if r.err != nil {
		return m, fmt.Errorf("pages: %w", r.err)
	}
	if uint64(n)*pageEntrySize > uint64(len(r.b)) {
		return m, protoErr("pages: %d entries need %d bytes, %d left", n, uint64(n)*pageEntrySize, len(r.b))
	}
	if n == 0 {
		return m, protoErr("pages: empty batch")
	}
	if int(m.Lane) >= lanes {
		return m, protoErr("pages: lane %d of %d", m.Lane, lanes)
	}
	entries = entries[:0]
	for range n {
		e := pageEntry{Index: r.u32("index"), Hash: r.u64("hash")}
		if e.Index >= pageCount {
			return m, protoErr("pages: page index %d out of range [0, %d)", e.Index, pageCount)
		}
		if laneOf(int(e.Index), lanes) != int(m.Lane) {
			return m, protoErr("pages: page %d does not belong to lane %d of %d", e.Index, m.Lane, lanes)
		}
		entries = append(entries, e)
	}
	m.Entries = entries
	m.Frame = r.b
	return m, nil
}

type roundEndMsg struct {
	Round uint32
	Pages uint64
}

func (m roundEndMsg) append(b []byte) []byte {
	b = binary.LittleEndian.AppendUint32(b, m.Round)
	return binary.LittleEndian.AppendUint64(b, m.Pages)
}

func decodeRoundEnd(p []byte) (roundEndMsg, error) {
	r := reader{b: p}
	m := roundEndMsg{Round: r.u32("round"), Pages: r.u64("pages")}
	return m, r.done("round-end")
}

type roundAckMsg struct {
	Round   uint32
	Pages   uint64 // pages applied in this round
	Missing uint64 // pages never received so far
}

func (m roundAckMsg) append(b []byte) []byte {
	b = binary.LittleEndian.AppendUint32(b, m.Round)
	b = binary.LittleEndian.AppendUint64(b, m.Pages)
	return binary.LittleEndian.AppendUint64(b, m.Missing)
}

func decodeRoundAck(p []byte) (roundAckMsg, error) {
	r := reader{b: p}
	m := roundAckMsg{Round: r.u32("round"), Pages: r.u64("pages"), Missing: r.u64("missing")}
	return m, r.done("round-ack")
}

type switchoverMsg struct {
	Round      uint32
	MemoryHash uint64 // xxhash64 of the little-endian per-page hashes, in page order
}

func (m switchoverMsg) append(b []byte) []byte {
	b = binary.LittleEndian.AppendUint32(b, m.Round)
	return binary.LittleEndian.AppendUint64(b, m.MemoryHash)
}

func decodeSwitchover(p []byte) (switchoverMsg, error) {
	r := reader{b: p}
	m := switchoverMsg{Round: r.u32("round"), MemoryHash: r.u64("memory hash")}
	return m, r.done("switchover")
}

type verifiedMsg struct {
	OK         bool
	MemoryHash uint64
	Reason     string
}

func (m verifiedMsg) append(b []byte) []byte {
	b = append(b, boolByte(m.OK))
	b = binary.LittleEndian.AppendUint64(b, m.MemoryHash)
	return appendString(b, m.Reason)
}

func decodeVerified(p []byte) (verifiedMsg, error) {
	r := reader{b: p}
	m := verifiedMsg{OK: r.u8("ok") == 1, MemoryHash: r.u64("memory hash"), Reason: r.str("reason")}
	return m, r.done("verified")
}

type commitMsg struct{ Epoch uint64 }

func (m commitMsg) append(b []byte) []byte { return binary.LittleEndian.AppendUint64(b, m.Epoch) }

func decodeCommit(p []byte) (commitMsg, error) {
	r := reader{b: p}
	m := commitMsg{Epoch: r.u64("epoch")}
	return m, r.done("commit")
}

type doneMsg struct {
	OK     bool
	Reason string
}

func (m doneMsg) append(b []byte) []byte {
	b = append(b, boolByte(m.OK))
	return appendString(b, m.Reason)
}

func decodeDone(p []byte) (doneMsg, error) {
	r := reader{b: p}
	m := doneMsg{OK: r.u8("ok") == 1, Reason: r.str("reason")}
	return m, r.done("done")
}

type abortMsg struct{ Reason string }

func (m abortMsg) append(b []byte) []byte { return appendString(b, m.Reason) }

func decodeAbort(p []byte) (abortMsg, error) {
	r := reader{b: p}
	m := abortMsg{Reason: r.str("reason")}
	return m, r.done("abort")
}

func boolByte(v bool) byte {
	if v {
		return 1
	}
	return 0
}
