package amst

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/dwcp/dwcp/metrics"
)

func transportFor(cfg Config) Transport {
	if cfg.Transport != nil {
		return cfg.Transport
	}
	return &TCPTransport{Congestion: cfg.Congestion, SocketBuffer: cfg.SocketBuffer, UnsentLimit: max(0, cfg.UnsentLimit)}
}

func tlsFor(cfg Config, server bool) (*tls.Config, error) {
	if cfg.TLS == nil {
		return nil, nil
	}
	t := cfg.TLS.Clone()
	t.MinVersion = tls.VersionTLS13
	if server {
		if t.ClientAuth != tls.RequireAndVerifyClientCert {
			return nil, fmt.Errorf("amst: listener TLS config has ClientAuth %v; mutual authentication needs RequireAndVerifyClientCert", t.ClientAuth)
		}
		if len(t.Certificates) == 0 && t.GetCertificate == nil && t.GetConfigForClient == nil {
			return nil, errors.New("amst: listener TLS config has no certificate")
		}
	} else if len(t.Certificates) == 0 && t.GetClientCertificate == nil {
		return nil, errors.New("amst: dialler TLS config has no client certificate; mutual authentication needs one")
	}
	return t, nil
}

// dialStream opens one connection and runs the TLS and AMST handshakes on it.
func dialStream(ctx context.Context, cfg Config, m *metrics.Metrics, tr Transport, addr string, req handshakeRequest) (net.Conn, handshakeReply, time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, cfg.HandshakeTimeout)
	defer cancel()
	conn, err := tr.Dial(ctx, addr)
	if err != nil {
		if isTimeout(err) {
			m.Errors.WithLabelValues(metrics.ComponentAMST, metrics.ErrorNetworkTimeout).Inc()
		}
		return nil, handshakeReply{}, 0, err
	}
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	fail := func(err error) (net.Conn, handshakeReply, time.Duration, error) {
		conn.Close()
		if isTimeout(err) {
			m.Errors.WithLabelValues(metrics.ComponentAMST, metrics.ErrorNetworkTimeout).Inc()
		}
		if ctx.Err() != nil && !isTimeout(err) {
			err = fmt.Errorf("%w (%v)", ctx.Err(), err)
		}
		return nil, handshakeReply{}, 0, err
	}
	if cfg.TLS != nil {
		tc, err := tlsFor(cfg, false)
		if err != nil {
			return fail(err)
		}
		t := tls.Client(conn, tc)
		if err := t.HandshakeContext(ctx); err != nil {
			return fail(fmt.Errorf("amst: TLS handshake: %w", err))
		}
		conn = t
	}
	start := time.Now()
	if _, err := conn.Write(req.encode()); err != nil {
		return fail(fmt.Errorf("amst: handshake: %w", err))
	}
	var rb [handshakeReplyLen]byte
	if _, err := io.ReadFull(conn, rb[:]); err != nil {
		return fail(fmt.Errorf("amst: handshake reply: %w", err))
	}
	rtt := time.Since(start)
	rep, err := decodeHandshakeReply(rb[:])
	if err != nil {
		return fail(err)
	}
	if !stop() {
		return fail(ctx.Err())
	}
	conn.SetDeadline(time.Time{})
	return conn, rep, rtt, nil
}

// Dial opens a session to a Listener at addr: the first connection creates
// the session, the others join it. With cfg.Streams > 0 the session keeps
// that many connections; with 0 it starts from a guess based on the first
// handshake's RTT and adapts. m may be nil.
func Dial(ctx context.Context, addr string, cfg Config, m *metrics.Metrics) (*Session, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	if _, err := tlsFor(cfg, false); err != nil {
		return nil, err
	}
	if m == nil {
		m = metrics.New(nil)
	}
	id, err := newSessionID()
	if err != nil {
		return nil, err
	}
	tr := transportFor(cfg)
	req := handshakeRequest{
		version: ProtocolVersion, kind: kindNew, session: id,
		maxPayload: uint32(cfg.FrameSize), window: uint32(cfg.windowFrames()),
	}
	conn, rep, rtt, err := dialStream(ctx, cfg, m, tr, addr, req)
	if err != nil {
		return nil, err
	}
	s := newSession(cfg, m, id, true, tr, rep.maxPayload, rep.window)
	s.addr = addr
	s.addRTTLocked(rtt) // not shared yet: no lock needed
	n := cfg.Streams
	if n == 0 {
		switch {
		case rtt < 10*time.Millisecond:
			n = cfg.DatacenterStreams
		case rtt > 50*time.Millisecond:
			n = cfg.InternetStreams
		default:
			n = cfg.HybridStreams
		}
		n = clampInt(n, cfg.MinStreams, cfg.MaxStreams)
		s.climb = newClimber(cfg.MinStreams, cfg.MaxStreams, n, cfg.TuneGain)
	}
	s.target = n
	s.attach(conn, 0)
	// The remaining streams join in parallel; the session is usable once
	// all of them are up, so Dial fails if any of them cannot be opened.
	errs := make(chan error, n)
	for i := 1; i < n; i++ {
		go func(i int) {
			c, err := s.dialJoin(ctx, i)
			if err == nil && !s.attach(c, i) {
				err = ErrClosed
			}
			if err != nil {
				err = fmt.Errorf("amst: stream %d of %d: %w", i, n, err)
			}
			errs <- err
		}(i)
	}
	var first error
	for i := 1; i < n; i++ {
		if err := <-errs; err != nil && first == nil {
			first = err
		}
	}
	if first != nil {
		s.fail(first)
		s.Close()
		return nil, first
	}
	s.start()
	return s, nil
}

// Listener accepts AMST sessions. Keep it open while its sessions are in
// use: broken streams rejoin through it.
type Listener struct {
	cfg     Config
	m       *metrics.Metrics
	tr      Transport
	tlsConf *tls.Config
	ln      net.Listener

	mu       sync.Mutex
	sessions map[SessionID]*Session
	acceptQ  chan *Session
	closed   bool
	done     chan struct{}
	wg       sync.WaitGroup
	once     sync.Once
}

// Listen opens a Listener on addr ("127.0.0.1:0" picks a port). m may be nil.
func Listen(ctx context.Context, addr string, cfg Config, m *metrics.Metrics) (*Listener, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	tc, err := tlsFor(cfg, true)
	if err != nil {
		return nil, err
	}
	if m == nil {
		m = metrics.New(nil)
	}
	tr := transportFor(cfg)
	ln, err := tr.Listen(ctx, addr)
	if err != nil {
		return nil, err
	}
	m.AMSTRDMAUtilization.Set(0) // no RDMA path exists in this package
	l := &Listener{
		cfg: cfg, m: m, tr: tr, tlsConf: tc, ln: ln,
		sessions: make(map[SessionID]*Session),
		acceptQ:  make(chan *Session, cfg.AcceptBacklog),
		done:     make(chan struct{}),
	}
	l.wg.Add(1)
	go l.acceptLoop()
	return l, nil
}

// Addr returns the address the listener is bound to.
func (l *Listener) Addr() net.Addr { return l.ln.Addr() }

// Accept waits for the next new session.
func (l *Listener) Accept(ctx context.Context) (*Session, error) {
	select {
	case s := <-l.acceptQ:
		return s, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-l.done:
		return nil, ErrClosed
	}
}

// Close stops accepting, closes sessions not yet accepted and waits for the
// listener's goroutines. Accepted sessions stay open. Safe to call twice.
func (l *Listener) Close() error {
	var err error
	l.once.Do(func() {
		l.mu.Lock()
		l.closed = true
		l.mu.Unlock()
		close(l.done)
		err = l.ln.Close()
		l.wg.Wait()
		for {
			select {
			case s := <-l.acceptQ:
				s.fail(ErrClosed)
				s.Close()
				continue
			default:
			}
			break
		}
	})
	return err
}

func (l *Listener) acceptLoop() {
	defer l.wg.Done()
	backoff := 5 * time.Millisecond
	for {
		conn, err := l.ln.Accept()
		if err != nil {
			select {
			case <-l.done:
				return
			default:
			}
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// Temporary failure such as EMFILE: back off instead of spinning.
			t := time.NewTimer(backoff)
			select {
			case <-t.C:
			case <-l.done:
				t.Stop()
				return
			}
			backoff = min(2*backoff, time.Second)
			continue
		}
		backoff = 5 * time.Millisecond
		l.wg.Add(1)
		go l.handle(conn)
	}
}

// handle runs the server side of the handshake and binds conn to a session.
// Garbage, strangers and version mismatches get a closed connection.
func (l *Listener) handle(conn net.Conn) {
	defer l.wg.Done()
	ctx, cancel := context.WithTimeout(context.Background(), l.cfg.HandshakeTimeout)
	defer cancel()
	stopWatch := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	go func() {
		select {
		case <-l.done:
			cancel()
		case <-ctx.Done():
		}
	}()
	conn.SetDeadline(time.Now().Add(l.cfg.HandshakeTimeout))
	drop := func(err error) {
		conn.Close()
		if isTimeout(err) {
			l.m.Errors.WithLabelValues(metrics.ComponentAMST, metrics.ErrorNetworkTimeout).Inc()
		}
	}
	if l.tlsConf != nil {
		t := tls.Server(conn, l.tlsConf)
		if err := t.HandshakeContext(ctx); err != nil {
			drop(err)
			return
		}
		conn = t
	}
	var b [handshakeRequestLen]byte
	if _, err := io.ReadFull(conn, b[:]); err != nil {
		drop(err)
		return
	}
	reply := handshakeReply{version: ProtocolVersion, maxPayload: uint32(l.cfg.FrameSize), window: uint32(l.cfg.windowFrames())}
	req, err := decodeHandshakeRequest(b[:])
	if err != nil {
		if !bytes.Equal(b[:4], handshakeMagic[:]) {
			drop(err) // a stranger: say nothing
			return
		}
		var ve *versionError
		if errors.As(err, &ve) {
			reply.status = statusBadVersion
		} else {
			reply.status = statusBadRequest
		}
		conn.Write(reply.encode())
		drop(err)
		return
	}
	var s *Session
	fresh := false
	l.mu.Lock()
	switch {
	case l.closed:
		reply.status = statusBusy
	case int(req.index) >= l.cfg.MaxStreams:
		reply.status = statusBadIndex
	case req.kind == kindNew && req.index != 0:
		reply.status = statusBadIndex
	case req.kind == kindNew:
		if _, dup := l.sessions[req.session]; dup {
			reply.status = statusDuplicate
			break
		}
		s = newSession(l.cfg, l.m, req.session, false, l.tr, req.maxPayload, req.window)
		fresh = true
	default:
		if s = l.sessions[req.session]; s == nil {
			reply.status = statusUnknownSession
		}
	}
	if fresh {
		select {
		case l.acceptQ <- s:
			l.sessions[req.session] = s
			id := req.session
			s.onGone = func() {
				l.mu.Lock()
				if l.sessions[id] == s {
					delete(l.sessions, id)
				}
				l.mu.Unlock()
			}
			s.start()
		default:
			reply.status = statusBusy
			s = nil
		}
	}
	l.mu.Unlock()
	if _, err := conn.Write(reply.encode()); err != nil || s == nil {
		drop(err)
		return
	}
	if !stopWatch() {
		drop(ctx.Err())
		return
	}
	conn.SetDeadline(time.Time{})
	s.attach(conn, int(req.index))
}
