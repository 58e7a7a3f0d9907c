package amst

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/crc32"
)

// ProtocolVersion is the wire version this package speaks. A peer speaking
// another version is refused during the handshake.
const ProtocolVersion = 1

var handshakeMagic = [4]byte{'A', 'M', 'S', 'T'}

// Handshake request, sent by the dialer on every new connection (40 bytes):
//
//	0..3   magic "AMST"
//	4..5   protocol version
//	6      kind: 1 = new session, 2 = join existing session
//	7      reserved, zero
//	8..23  session id
//	24..27 stream index
//	28..31 largest frame payload the dialer accepts
//	32..35 dialer's receive window, in frames
//	36..39 CRC32C of bytes 0..35
//
// Handshake reply (20 bytes): magic, version, status, reserved, the
// listener's largest payload and window, CRC32C of bytes 0..15.
const (
	handshakeRequestLen = 40
	handshakeReplyLen   = 20
)

type handshakeKind uint8

const (
	kindNew  handshakeKind = 1
	kindJoin handshakeKind = 2
)

// Handshake status codes sent in the reply.
const (
	statusOK             uint8 = 0
	statusBadVersion     uint8 = 1
	statusUnknownSession uint8 = 2
	statusDuplicate      uint8 = 3
	statusBadRequest     uint8 = 4
	statusBusy           uint8 = 5
	statusBadIndex       uint8 = 6
)

// ErrBadHandshake is wrapped by every error caused by malformed handshake bytes.
var ErrBadHandshake = errors.New("amst: bad handshake")

// SessionID names a session; every connection of the session carries it.
type SessionID [16]byte

func (id SessionID) String() string { return hex.EncodeToString(id[:]) }

func newSessionID() (SessionID, error) {
	var id SessionID
	_, err := rand.Read(id[:])
	return id, err
}

type handshakeRequest struct {
	version    uint16
	kind       handshakeKind
	session    SessionID
	index      uint32
	maxPayload uint32
	window     uint32
}

type handshakeReply struct {
	version    uint16
	status     uint8
	maxPayload uint32
	window     uint32
}

// RefusedError is returned by Dial (and by redials) when the listener
// refuses a connection.
type RefusedError struct {
	Status uint8
	// PeerVersion is the protocol version the listener speaks.
	PeerVersion uint16
}

func (e *RefusedError) Error() string {
	switch e.Status {
	case statusBadVersion:
		return fmt.Sprintf("amst: listener refused the connection: it speaks protocol version %d, we speak %d", e.PeerVersion, ProtocolVersion)
	case statusUnknownSession:
		return "amst: listener refused the connection: unknown session (expired or never created)"
	case statusDuplicate:
		return "amst: listener refused the connection: session id already in use"
	case statusBadRequest:
		return "amst: listener refused the connection: malformed handshake"
	case statusBusy:
		return "amst: listener refused the connection: accept backlog full"
	case statusBadIndex:
		return "amst: listener refused the connection: stream index out of range"
	}
	return fmt.Sprintf("amst: listener refused the connection: status %d", e.Status)
}

func (r *handshakeRequest) encode() []byte {
	b := make([]byte, handshakeRequestLen)
	copy(b[0:4], handshakeMagic[:])
	binary.BigEndian.PutUint16(b[4:6], r.version)
	b[6] = byte(r.kind)
	copy(b[8:24], r.session[:])
	binary.BigEndian.PutUint32(b[24:28], r.index)
	binary.BigEndian.PutUint32(b[28:32], r.maxPayload)
	binary.BigEndian.PutUint32(b[32:36], r.window)
	binary.BigEndian.PutUint32(b[36:40], crc32.Checksum(b[:36], castagnoli))
	return b
}

// decodeHandshakeRequest parses a request. A version mismatch is reported
// with the decoded request so that the listener can answer it.
func decodeHandshakeRequest(b []byte) (handshakeRequest, error) {
	var r handshakeRequest
	if len(b) != handshakeRequestLen {
		return r, fmt.Errorf("%w: request is %d bytes, want %d", ErrBadHandshake, len(b), handshakeRequestLen)
	}
	if [4]byte(b[0:4]) != handshakeMagic {
		return r, fmt.Errorf("%w: magic %q is not %q", ErrBadHandshake, b[0:4], handshakeMagic[:])
	}
	if got, want := binary.BigEndian.Uint32(b[36:40]), crc32.Checksum(b[:36], castagnoli); got != want {
		return r, fmt.Errorf("%w: request checksum %#08x, computed %#08x", ErrBadHandshake, got, want)
	}
	r.version = binary.BigEndian.Uint16(b[4:6])
	r.kind = handshakeKind(b[6])
	copy(r.session[:], b[8:24])
	r.index = binary.BigEndian.Uint32(b[24:28])
	r.maxPayload = binary.BigEndian.Uint32(b[28:32])
	r.window = binary.BigEndian.Uint32(b[32:36])
	if r.version != ProtocolVersion {
		return r, &versionError{peer: r.version}
	}
	if b[7] != 0 {
		return r, fmt.Errorf("%w: reserved byte %#x is not zero", ErrBadHandshake, b[7])
	}
	if r.kind != kindNew && r.kind != kindJoin {
		return r, fmt.Errorf("%w: unknown kind %d", ErrBadHandshake, r.kind)
	}
	if err := checkPeerLimits(r.maxPayload, r.window); err != nil {
		return r, err
	}
	return r, nil
}

type versionError struct{ peer uint16 }

func (e *versionError) Error() string {
	return fmt.Sprintf("%v: peer speaks protocol version %d, we speak %d", ErrBadHandshake, e.peer, ProtocolVersion)
}
func (e *versionError) Unwrap() error { return ErrBadHandshake }

func checkPeerLimits(maxPayload, window uint32) error {
	if maxPayload < minFrameSize || maxPayload > maxFrameSize {
		return fmt.Errorf("%w: peer frame size %d outside [%d, %d]", ErrBadHandshake, maxPayload, minFrameSize, maxFrameSize)
	}
	if window < minWindowFrames || window > maxWindowFrames {
		return fmt.Errorf("%w: peer window of %d frames outside [%d, %d]", ErrBadHandshake, window, minWindowFrames, maxWindowFrames)
	}
	return nil
}

func (r *handshakeReply) encode() []byte {
	b := make([]byte, handshakeReplyLen)
	copy(b[0:4], handshakeMagic[:])
	binary.BigEndian.PutUint16(b[4:6], r.version)
	b[6] = r.status
	binary.BigEndian.PutUint32(b[8:12], r.maxPayload)
	binary.BigEndian.PutUint32(b[12:16], r.window)
	binary.BigEndian.PutUint32(b[16:20], crc32.Checksum(b[:16], castagnoli))
	return b
}

func decodeHandshakeReply(b []byte) (handshakeReply, error) {
	var r handshakeReply
	if len(b) != handshakeReplyLen {
		return r, fmt.Errorf("%w: reply is %d bytes, want %d", ErrBadHandshake, len(b), handshakeReplyLen)
	}
	if [4]byte(b[0:4]) != handshakeMagic {
		return r, fmt.Errorf("%w: reply magic %q is not %q", ErrBadHandshake, b[0:4], handshakeMagic[:])
	}
	if got, want := binary.BigEndian.Uint32(b[16:20]), crc32.Checksum(b[:16], castagnoli); got != want {
		return r, fmt.Errorf("%w: reply checksum %#08x, computed %#08x", ErrBadHandshake, got, want)
	}
	r.version = binary.BigEndian.Uint16(b[4:6])
	r.status = b[6]
	r.maxPayload = binary.BigEndian.Uint32(b[8:12])
	r.window = binary.BigEndian.Uint32(b[12:16])
	if b[7] != 0 {
		return r, fmt.Errorf("%w: reply reserved byte %#x is not zero", ErrBadHandshake, b[7])
	}
	if r.status != statusOK {
		return r, &RefusedError{Status: r.status, PeerVersion: r.version}
	}
	if r.version != ProtocolVersion {
		return r, &RefusedError{Status: statusBadVersion, PeerVersion: r.version}
	}
	if err := checkPeerLimits(r.maxPayload, r.window); err != nil {
		return r, err
	}
	return r, nil
}
