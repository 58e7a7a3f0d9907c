package dwcp

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/dwcp/dwcp/amst"
	"github.com/dwcp/dwcp/metrics"
)

// AMSTTransport carries engine sessions over amst: a v3 dial (streams 0)
// lets amst adapt the stream count, steered by the engine's forecast; a v1
// dial asks for exactly one stream.
type AMSTTransport struct {
	// Config is the base amst configuration (zero value: amst defaults);
	// Streams is set per dial.
	Config  amst.Config
	Metrics *metrics.Metrics
}

// Dial implements Transport.
func (t *AMSTTransport) Dial(ctx context.Context, addr string, streams int) (Session, error) {
	cfg := t.Config
	cfg.Streams = streams
	s, err := amst.Dial(ctx, addr, cfg, t.Metrics)
	if err != nil {
		return nil, err
	}
	return &amstSession{s: s}, nil
}

// Listen implements Transport.
func (t *AMSTTransport) Listen(addr string) (Listener, error) {
	l, err := amst.Listen(context.Background(), addr, t.Config, t.Metrics)
	if err != nil {
		return nil, err
	}
	return &amstListener{l: l}, nil
}

type amstListener struct{ l *amst.Listener }

func (l *amstListener) Accept(ctx context.Context) (Session, error) {
	s, err := l.l.Accept(ctx)
	if err != nil {
		if errors.Is(err, amst.ErrClosed) {
			return nil, fmt.Errorf("%w: %w", ErrSessionClosed, err)
		}
		return nil, err
	}
	return &amstSession{s: s}, nil
}

func (l *amstListener) Addr() string { return l.l.Addr().String() }
func (l *amstListener) Close() error { return l.l.Close() }

type amstSession struct {
	s        *amst.Session
	mu       sync.Mutex
	lastHint int
}

func (a *amstSession) SendMessage(ctx context.Context, b []byte) error {
	return a.s.SendMessage(ctx, b)
}

func (a *amstSession) ReceiveMessage(ctx context.Context) ([]byte, error) {
	b, err := a.s.ReceiveMessage(ctx)
	if err == io.EOF {
		return nil, fmt.Errorf("%w: peer closed the amst session", ErrSessionClosed)
	}
	return b, err
}

func (a *amstSession) Close() error { return a.s.Close() }

// SetStreamHint implements StreamHinter as a floor: amst's own hill climb
// (started from its RTT-based mode guess) knows more about loss than a
// bandwidth forecast does, so the hint only raises the stream count when
// the session has fewer streams than the forecast needs, and only changes
// are passed on (amst restarts its climb from a hint).
func (a *amstSession) SetStreamHint(n int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if n <= 0 || n == a.lastHint || n <= a.s.Stats().Target {
		return
	}
	a.lastHint = n
	a.s.SetTargetStreams(n)
}

// Streams implements StreamCounter: the session's live TCP connections.
func (a *amstSession) Streams() int { return a.s.Stats().Streams }
