package ass

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"
)

// TCPConfig configures a TCPTransport.
type TCPConfig struct {
	// ListenAddr is the address to listen on, e.g. "127.0.0.1:7946"; port 0
	// picks a free port (Addr then reports the real one).
	ListenAddr string
	// TLS, when set, wraps both directions in TLS with this configuration
	// (it needs Certificates for the listener and RootCAs/ServerName or
	// InsecureSkipVerify for dialling, as usual). Nil means plain TCP.
	TLS *tls.Config
	// DialTimeout bounds one connection attempt. Default 2 s.
	DialTimeout time.Duration
	// WriteTimeout bounds one write of queued frames. Default 5 s.
	WriteTimeout time.Duration
	// RedialBackoff is how long frames to an unreachable peer are dropped
	// before the next connection attempt. Default 200 ms.
	RedialBackoff time.Duration
	// QueueFrames is how many frames may wait per peer; more are dropped.
	// Default 1024.
	QueueFrames int
	// MaxFrameBytes is the largest frame accepted from a peer. Default 64 MiB.
	MaxFrameBytes int
}

// DefaultTCPConfig returns the defaults for listenAddr.
func DefaultTCPConfig(listenAddr string) TCPConfig {
	return TCPConfig{
		ListenAddr:    listenAddr,
		DialTimeout:   2 * time.Second,
		WriteTimeout:  5 * time.Second,
		RedialBackoff: 200 * time.Millisecond,
		QueueFrames:   1024,
		MaxFrameBytes: 64 << 20,
	}
}

// Validate reports the first invalid field.
func (c TCPConfig) Validate() error {
	switch {
	case c.ListenAddr == "":
		return errors.New("ass: TCPConfig.ListenAddr is empty")
	case c.DialTimeout <= 0:
		return fmt.Errorf("ass: TCPConfig.DialTimeout %v must be positive", c.DialTimeout)
	case c.WriteTimeout <= 0:
		return fmt.Errorf("ass: TCPConfig.WriteTimeout %v must be positive", c.WriteTimeout)
	case c.RedialBackoff < 0:
		return fmt.Errorf("ass: TCPConfig.RedialBackoff %v is negative", c.RedialBackoff)
	case c.QueueFrames <= 0:
		return fmt.Errorf("ass: TCPConfig.QueueFrames %d must be positive", c.QueueFrames)
	case c.MaxFrameBytes < frameHeaderSize:
		return fmt.Errorf("ass: TCPConfig.MaxFrameBytes %d is below the %d-byte frame header", c.MaxFrameBytes, frameHeaderSize)
	}
	return nil
}

// TCPTransport carries frames over TCP (optionally TLS). Each endpoint dials
// one outbound connection per peer, written by one goroutine from a bounded
// queue, and reads inbound connections with one goroutine each.
type TCPTransport struct {
	cfg      TCPConfig
	listener net.Listener

	mu      sync.Mutex
	peers   map[string]*tcpPeer
	inbound map[net.Conn]struct{}
	closed  bool
	handle  func([]byte)

	closing chan struct{}
	wg      sync.WaitGroup
}

type tcpPeer struct {
	addr  string
	queue chan []byte
	conn  net.Conn // guarded by TCPTransport.mu; closed by Close to unblock a write
}

// NewTCPTransport listens on cfg.ListenAddr.
func NewTCPTransport(cfg TCPConfig) (*TCPTransport, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", cfg.ListenAddr)
	if err != nil {
		return nil, fmt.Errorf("ass: listen on %s: %w", cfg.ListenAddr, err)
	}
	if cfg.TLS != nil {
		ln = tls.NewListener(ln, cfg.TLS)
	}
	return &TCPTransport{
		cfg: cfg, listener: ln,
		peers: map[string]*tcpPeer{}, inbound: map[net.Conn]struct{}{},
		closing: make(chan struct{}),
	}, nil
}

// Addr implements Transport: the address the listener is bound to.
func (t *TCPTransport) Addr() string { return t.listener.Addr().String() }

// Start implements Transport.
func (t *TCPTransport) Start(handle func([]byte)) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return ErrClosed
	}
	if t.handle != nil {
		return errors.New("ass: TCPTransport started twice")
	}
	t.handle = handle
	t.wg.Add(1)
	go t.accept()
	return nil
}

func (t *TCPTransport) accept() {
	defer t.wg.Done()
	for {
		conn, err := t.listener.Accept()
		if err != nil {
			return // closed; transient accept errors on loopback are not expected
		}
		t.mu.Lock()
		if t.closed {
			t.mu.Unlock()
			conn.Close()
			return
		}
		t.inbound[conn] = struct{}{}
		t.wg.Add(1)
		t.mu.Unlock()
		go t.read(conn)
	}
}

func (t *TCPTransport) read(conn net.Conn) {
	defer t.wg.Done()
	defer func() {
		conn.Close()
		t.mu.Lock()
		delete(t.inbound, conn)
		t.mu.Unlock()
	}()
	br := bufio.NewReaderSize(conn, 256<<10)
	for {
		frame, err := readFrame(br, t.cfg.MaxFrameBytes)
		if err != nil {
			return // EOF, a closed connection or a corrupt stream: drop the connection
		}
		t.handle(frame)
	}
}

// Send implements Transport. It queues the frame for the peer's writer and
// returns an error if the queue is full or the transport is closed.
func (t *TCPTransport) Send(_ context.Context, addr string, frame []byte) error {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return ErrClosed
	}
	p := t.peers[addr]
	if p == nil {
		p = &tcpPeer{addr: addr, queue: make(chan []byte, t.cfg.QueueFrames)}
		t.peers[addr] = p
		t.wg.Add(1)
		go t.write(p)
	}
	t.mu.Unlock()
	select {
	case p.queue <- frame:
		return nil
	default:
		return fmt.Errorf("ass: send queue to %s is full (%d frames)", addr, cap(p.queue))
	}
}

func (t *TCPTransport) dial(addr string) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), t.cfg.DialTimeout)
	defer cancel()
	go func() {
		select {
		case <-t.closing:
			cancel()
		case <-ctx.Done():
		}
	}()
	if t.cfg.TLS != nil {
		d := tls.Dialer{Config: t.cfg.TLS}
		return d.DialContext(ctx, "tcp", addr)
	}
	var d net.Dialer
	return d.DialContext(ctx, "tcp", addr)
}

// write owns the outbound connection to one peer.
func (t *TCPTransport) write(p *tcpPeer) {
	defer t.wg.Done()
	var conn net.Conn
	var bw *bufio.Writer
	var retryAt time.Time
	defer func() {
		if conn != nil {
			conn.Close()
		}
	}()
	for {
		var frame []byte
		select {
		case <-t.closing:
			return
		case frame = <-p.queue:
		}
		if conn == nil {
			if time.Now().Before(retryAt) {
				continue // peer unreachable: drop, the replica retransmits
			}
			c, err := t.dial(p.addr)
			if err != nil {
				retryAt = time.Now().Add(t.cfg.RedialBackoff)
				continue
			}
			t.mu.Lock()
			if t.closed {
				t.mu.Unlock()
				c.Close()
				return
			}
			p.conn = c
			t.mu.Unlock()
			conn, bw = c, bufio.NewWriterSize(c, 256<<10)
		}
		conn.SetWriteDeadline(time.Now().Add(t.cfg.WriteTimeout))
		_, err := bw.Write(frame)
		// Write whatever else is queued before flushing: one syscall per burst.
		for err == nil && len(p.queue) > 0 {
			_, err = bw.Write(<-p.queue)
		}
		if err == nil {
			err = bw.Flush()
		}
		if err != nil {
			conn.Close()
			conn, bw = nil, nil
		}
	}
}

// Close implements Transport: it closes the listener and every connection
// and waits for the transport's goroutines.
func (t *TCPTransport) Close() error {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return nil
	}
	t.closed = true
	close(t.closing)
	err := t.listener.Close()
	for c := range t.inbound {
		c.Close()
	}
	for _, p := range t.peers {
		if p.conn != nil {
			p.conn.Close()
		}
	}
	t.mu.Unlock()
	t.wg.Wait()
	return err
}
