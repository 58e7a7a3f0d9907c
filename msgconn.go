package dwcp

import (
	"context"
	"encoding/binary"
	"hash/crc32"
	"sync"
	"sync/atomic"
)

// Reorder limits: a peer (or a transport) that makes us hold more than this
// many early messages is treated as broken rather than trusted with memory.
const (
	maxReorderMessages = 4096
	maxReorderBytes    = 512 << 20
)

// msgConn frames engine messages over a Session: it numbers what it sends
// and hands received messages to the caller strictly in the sender's order.
type msgConn struct {
	s Session

	sendMu  sync.Mutex
	sendSeq uint64

	recvNext     uint64
	pending      map[uint64][]byte
	pendingBytes int

	wireSent atomic.Int64
	wireRecv atomic.Int64
}

func newMsgConn(s Session) *msgConn {
	return &msgConn{s: s, recvNext: 1, pending: make(map[uint64][]byte)}
}

// startFrame returns buf with room for the frame header; append the
// payload, then pass it to sendFrame.
func startFrame(buf []byte) []byte {
	return append(buf[:0], make([]byte, frameHeader)...)
}

// sendFrame completes a frame begun with startFrame (numbering it) and
// sends it. buf gains the 4-byte trailer; the caller may reuse it after.
func (c *msgConn) sendFrame(ctx context.Context, t msgType, buf []byte) ([]byte, error) {
	n := len(buf) - frameHeader
	if n > maxPayload {
		return buf, protoErr("outgoing %s payload of %d bytes exceeds the %d limit", t, n, maxPayload)
	}
	c.sendMu.Lock()
	defer c.sendMu.Unlock()
	c.sendSeq++
	buf[0], buf[1], buf[2], buf[3] = frameMagic0, frameMagic1, formatVersion, byte(t)
	binary.LittleEndian.PutUint64(buf[4:], c.sendSeq)
	binary.LittleEndian.PutUint32(buf[12:], uint32(n))
	buf = binary.LittleEndian.AppendUint32(buf, crc32.Checksum(buf, castagnoli))
	if err := c.s.SendMessage(ctx, buf); err != nil {
		return buf, err
	}
	c.wireSent.Add(int64(len(buf)))
	return buf, nil
}

// send frames a small control message.
func (c *msgConn) send(ctx context.Context, t msgType, appendPayload func([]byte) []byte) error {
	buf := appendPayload(startFrame(nil))
	_, err := c.sendFrame(ctx, t, buf)
	return err
}

// recv returns the next message in sequence. Not safe for concurrent use.
func (c *msgConn) recv(ctx context.Context) (frame, error) {
	for {
		if b, ok := c.pending[c.recvNext]; ok {
			delete(c.pending, c.recvNext)
			c.pendingBytes -= len(b)
			f, err := parseFrame(b)
			if err != nil {
				return frame{}, err
			}
			c.recvNext++
			return f, nil
		}
		b, err := c.s.ReceiveMessage(ctx)
		if err != nil {
			return frame{}, err
		}
		c.wireRecv.Add(int64(len(b)))
		f, err := parseFrame(b)
		if err != nil {
			return frame{}, err
		}
		switch {
		case f.seq == c.recvNext:
			c.recvNext++
			return f, nil
		case f.seq < c.recvNext:
			return frame{}, protoErr("duplicate message %d (%s), expected %d", f.seq, f.typ, c.recvNext)
		default:
			if _, dup := c.pending[f.seq]; dup {
				return frame{}, protoErr("duplicate message %d (%s)", f.seq, f.typ)
			}
			if len(c.pending) >= maxReorderMessages || c.pendingBytes+len(b) > maxReorderBytes {
				return frame{}, protoErr("message %d is missing while %d later ones (%d bytes) wait", c.recvNext, len(c.pending), c.pendingBytes)
			}
			c.pending[f.seq] = b
			c.pendingBytes += len(b)
		}
	}
}
