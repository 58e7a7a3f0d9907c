package amst

import (
	"bytes"
	"errors"
	"testing"
)

func encodeTestFrame(typ frameType, flags uint8, seq uint64, payload []byte) []byte {
	buf := make([]byte, frameHeaderLen+len(payload))
	copy(buf[frameHeaderLen:], payload)
	putFrameHeader(buf, typ, flags, seq)
	return buf
}

// FuzzReadFrame feeds arbitrary bytes to the frame decoder: it must return
// a frame that re-encodes to the same bytes, or an error; never panic and
// never allocate more than the payload limit.
func FuzzReadFrame(f *testing.F) {
	f.Add(encodeTestFrame(frameData, 0, 7, []byte("hello")))
	f.Add(encodeTestFrame(frameMsg, flagEnd, 1, nil))
	f.Add(encodeTestFrame(frameFin, 0, 9, nil))
	f.Add(encodeAck(make([]byte, 64), 10, 4))
	f.Add(encodeTarget(make([]byte, 64), 12))
	f.Add(encodePing(make([]byte, 64), framePing, 12345))
	f.Add([]byte("GET / HTTP/1.1\r\n\r\n"))
	const limit = 1 << 10
	f.Fuzz(func(t *testing.T, data []byte) {
		hdr := make([]byte, frameHeaderLen)
		h, payload, err := readFrame(bytes.NewReader(data), hdr, limit, func(n int) []byte {
			if n > limit {
				t.Fatalf("asked for a %d-byte buffer, limit %d", n, limit)
			}
			return make([]byte, n)
		})
		if err != nil {
			return
		}
		again := encodeTestFrame(h.typ, h.flags, h.seq, payload)
		if !bytes.Equal(again, data[:len(again)]) {
			t.Fatalf("decoded frame re-encodes differently:\n%x\n%x", again, data[:len(again)])
		}
	})
}

// FuzzHandshakeRequest checks the listener's decoder of untrusted bytes.
func FuzzHandshakeRequest(f *testing.F) {
	good := handshakeRequest{version: ProtocolVersion, kind: kindNew, index: 0, maxPayload: 256 << 10, window: 128}
	f.Add(good.encode())
	join := handshakeRequest{version: ProtocolVersion, kind: kindJoin, index: 5, maxPayload: minFrameSize, window: minWindowFrames}
	f.Add(join.encode())
	old := good
	old.version = 9
	f.Add(old.encode())
	f.Add(make([]byte, handshakeRequestLen))
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := decodeHandshakeRequest(data)
		if err != nil {
			if !errors.Is(err, ErrBadHandshake) {
				t.Fatalf("error %v does not wrap ErrBadHandshake", err)
			}
			return
		}
		if !bytes.Equal(r.encode(), data) {
			t.Fatal("accepted request re-encodes differently")
		}
	})
}

// FuzzHandshakeReply checks the dialler's decoder of untrusted bytes.
func FuzzHandshakeReply(f *testing.F) {
	ok := handshakeReply{version: ProtocolVersion, maxPayload: 1 << 20, window: 64}
	f.Add(ok.encode())
	refused := handshakeReply{version: 2, status: statusBadVersion, maxPayload: 1 << 20, window: 64}
	f.Add(refused.encode())
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := decodeHandshakeReply(data)
		if err != nil {
			var re *RefusedError
			if !errors.Is(err, ErrBadHandshake) && !errors.As(err, &re) {
				t.Fatalf("error %v is neither ErrBadHandshake nor RefusedError", err)
			}
			return
		}
		if !bytes.Equal(r.encode(), data) {
			t.Fatal("accepted reply re-encodes differently")
		}
	})
}
