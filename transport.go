package dwcp

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"
)

// Session is a message channel between a source and a destination: what the
// engine needs from a transport. Messages are delivered whole, possibly out
// of order (the engine re-sequences them), and a broken session returns an
// error from every later call.
//
// SendMessage must not retain msg after it returns; ReceiveMessage returns a
// message the caller owns. SendMessage may be called by one goroutine while
// another calls ReceiveMessage. Close unblocks both and is safe to call twice.
type Session interface {
	SendMessage(ctx context.Context, msg []byte) error
	ReceiveMessage(ctx context.Context) ([]byte, error)
	Close() error
}

// StreamHinter is implemented by sessions that stripe over several streams
// and accept advice on how many to use.
type StreamHinter interface {
	SetStreamHint(n int)
}

// Transport dials destinations and listens for sources.
type Transport interface {
	// Dial opens a session to addr. streams is 0 for "choose adaptively"
	// or the exact number of parallel streams to use.
	Dial(ctx context.Context, addr string, streams int) (Session, error)
	Listen(addr string) (Listener, error)
}

// Listener accepts sessions from sources.
type Listener interface {
	Accept(ctx context.Context) (Session, error)
	Addr() string
	Close() error
}

// ErrSessionClosed is returned by a session after Close.
var ErrSessionClosed = errors.New("dwcp: session closed")

// NewPipe returns the two ends of an in-memory session, for tests and for a
// source and destination in one process. buffer is how many messages may be
// in flight in each direction (at least 1).
func NewPipe(buffer int) (Session, Session) {
	buffer = max(buffer, 1)
	ab := make(chan []byte, buffer)
	ba := make(chan []byte, buffer)
	done := make(chan struct{})
	shared := &pipeShared{done: done}
	return &pipeEnd{send: ab, recv: ba, shared: shared}, &pipeEnd{send: ba, recv: ab, shared: shared}
}

type pipeShared struct {
	once sync.Once
	done chan struct{}
}

type pipeEnd struct {
	send   chan<- []byte
	recv   <-chan []byte
	shared *pipeShared
}

func (p *pipeEnd) SendMessage(ctx context.Context, msg []byte) error {
	select {
	case <-p.shared.done:
		return ErrSessionClosed
	default:
	}
	c := append([]byte(nil), msg...)
	select {
	case p.send <- c:
		return nil
	case <-p.shared.done:
		return ErrSessionClosed
	case <-ctx.Done():
		return ctx.Err()
	}
}

// ReceiveMessage delivers what was sent before the pipe closed, as a
// connection delivers data before its end of stream.
func (p *pipeEnd) ReceiveMessage(ctx context.Context) ([]byte, error) {
	select {
	case m := <-p.recv:
		return m, nil
	case <-p.shared.done:
		select {
		case m := <-p.recv:
			return m, nil
		default:
			return nil, ErrSessionClosed
		}
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// Close closes both ends: an in-memory pipe breaks as a whole, like a
// connection.
func (p *pipeEnd) Close() error {
	p.shared.once.Do(func() { close(p.shared.done) })
	return nil
}

// ConnSession carries messages over one stream connection (a net.Conn, TLS
// or not) as a uint32 length followed by the bytes. It is the engine's own
// single-stream transport, used when no multi-stream transport is
// configured.
type ConnSession struct {
	conn   net.Conn
	br     *bufio.Reader
	sendMu sync.Mutex
	bw     *bufio.Writer
	recvMu sync.Mutex
	once   sync.Once
}

// maxConnMessage bounds a length prefix before allocating for it.
const maxConnMessage = maxPayload + frameHeader + frameTrailer

// NewConnSession wraps conn; the session owns it.
func NewConnSession(conn net.Conn) *ConnSession {
	return &ConnSession{conn: conn, br: bufio.NewReaderSize(conn, 256<<10), bw: bufio.NewWriterSize(conn, 256<<10)}
}

// SendMessage implements Session.
func (s *ConnSession) SendMessage(ctx context.Context, msg []byte) error {
	if len(msg) > maxConnMessage {
		return fmt.Errorf("dwcp: message of %d bytes exceeds the %d limit", len(msg), maxConnMessage)
	}
	s.sendMu.Lock()
	defer s.sendMu.Unlock()
	stop := context.AfterFunc(ctx, func() { s.conn.SetWriteDeadline(time.Unix(1, 0)) })
	defer stop()
	var hdr [4]byte
	binary.LittleEndian.PutUint32(hdr[:], uint32(len(msg)))
	if _, err := s.bw.Write(hdr[:]); err != nil {
		return s.ioErr(ctx, err)
	}
	if _, err := s.bw.Write(msg); err != nil {
		return s.ioErr(ctx, err)
	}
	if err := s.bw.Flush(); err != nil {
		return s.ioErr(ctx, err)
	}
	return nil
}

// ReceiveMessage implements Session.
func (s *ConnSession) ReceiveMessage(ctx context.Context) ([]byte, error) {
	s.recvMu.Lock()
	defer s.recvMu.Unlock()
	stop := context.AfterFunc(ctx, func() { s.conn.SetReadDeadline(time.Unix(1, 0)) })
	defer stop()
	var hdr [4]byte
	if _, err := io.ReadFull(s.br, hdr[:]); err != nil {
		return nil, s.ioErr(ctx, err)
	}
	n := binary.LittleEndian.Uint32(hdr[:])
	if n > maxConnMessage {
		return nil, protoErr("peer announced a %d-byte message, the limit is %d", n, maxConnMessage)
	}
	msg := make([]byte, n)
	if _, err := io.ReadFull(s.br, msg); err != nil {
		return nil, s.ioErr(ctx, err)
	}
	return msg, nil
}

func (s *ConnSession) ioErr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if errors.Is(err, net.ErrClosed) {
		return ErrSessionClosed
	}
	return err
}

// Close implements Session.
func (s *ConnSession) Close() error {
	var err error
	s.once.Do(func() { err = s.conn.Close() })
	return err
}

// TCPTransport is the engine's single-stream transport: one TCP connection
// per session, optionally TLS. It ignores the stream count it is asked for
// (always one stream); the multi-stream transport is amst (see AMSTTransport).
type TCPTransport struct {
	// ServerTLS, when set, makes Listen serve TLS; ClientTLS makes Dial use it.
	ServerTLS *tls.Config
	ClientTLS *tls.Config
}

// Dial implements Transport.
func (t *TCPTransport) Dial(ctx context.Context, addr string, streams int) (Session, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	if t.ClientTLS != nil {
		tc := tls.Client(c, t.ClientTLS)
		if err := tc.HandshakeContext(ctx); err != nil {
			c.Close()
			return nil, fmt.Errorf("dwcp: tls handshake with %s: %w", addr, err)
		}
		c = tc
	}
	return NewConnSession(c), nil
}

// Listen implements Transport.
func (t *TCPTransport) Listen(addr string) (Listener, error) {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	return &tcpListener{l: l, tls: t.ServerTLS}, nil
}

type tcpListener struct {
	l   net.Listener
	tls *tls.Config
}

func (l *tcpListener) Accept(ctx context.Context) (Session, error) {
	stop := context.AfterFunc(ctx, func() { l.l.Close() })
	defer stop()
	c, err := l.l.Accept()
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, err
	}
	if l.tls != nil {
		tc := tls.Server(c, l.tls)
		hctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		if err := tc.HandshakeContext(hctx); err != nil {
			c.Close()
			return nil, fmt.Errorf("dwcp: tls handshake from %s: %w", c.RemoteAddr(), err)
		}
		c = tc
	}
	return NewConnSession(c), nil
}

func (l *tcpListener) Addr() string { return l.l.Addr().String() }
func (l *tcpListener) Close() error { return l.l.Close() }

// StreamCounter is implemented by sessions that report their live streams.
type StreamCounter interface {
	Streams() int
}
