package amst

import (
	"crypto/tls"
	"fmt"
	"time"
)

// Limits of the configurable values; the handshake enforces the same bounds
// on what a peer announces.
const (
	minFrameSize    = 4 << 10
	maxFrameSize    = 16 << 20
	minWindowFrames = 2
	maxWindowFrames = 1 << 16
	maxStreamsLimit = 4096
)

// StreamHinter is polled by an adaptive session once per MeasureInterval.
// A positive answer different from the previous one moves the session to
// that many streams and restarts the hill climb from there; zero or a
// repeated value leaves the climb alone. The engine implements it from the
// bandwidth forecaster (pba).
type StreamHinter interface {
	StreamHint() int
}

// Config configures Listen and Dial. Zero fields take the value of
// DefaultConfig, so Config{Streams: 1} is a valid single-stream baseline.
type Config struct {
	// Streams fixes the number of TCP connections of a dialled session.
	// Zero means adaptive: start from the mode-based guess below and
	// hill-climb on measured goodput within [MinStreams, MaxStreams].
	Streams int
	// MinStreams and MaxStreams bound the adaptive count (default 1..512).
	MinStreams, MaxStreams int
	// Starting counts of an adaptive session, chosen from the RTT of the
	// first handshake: < 10 ms datacenter, > 50 ms internet, else hybrid.
	DatacenterStreams, HybridStreams, InternetStreams int

	// FrameSize is the largest payload of one frame, in bytes (default
	// 256 KiB). The sender uses the smaller of its own and the peer's value.
	FrameSize int
	// ReceiveWindow bounds, in bytes, what a peer may send ahead of this
	// side's application (default 32 MiB). It is the memory bound of the
	// receive side and must exceed the bandwidth-delay product.
	ReceiveWindow int
	// MaxMessageSize bounds one message of ReceiveMessage (default 256 MiB).
	MaxMessageSize int

	// TLS, when set, wraps every connection in TLS 1.3 (older versions are
	// refused). A listener's config must require and verify client
	// certificates; a dialler's config must carry a client certificate.
	TLS *tls.Config
	// Transport carries the connections; nil means TCP with the socket
	// options below. See SelectTransport for the RDMA fallback.
	Transport Transport

	// Congestion names the TCP congestion control of every socket ("bbr",
	// "cubic", "reno"); empty keeps the system default.
	Congestion string
	// SocketBuffer sets SO_SNDBUF and SO_RCVBUF in bytes; zero keeps the
	// kernel's auto-tuning, which is usually better.
	SocketBuffer int
	// UnsentLimit bounds the bytes waiting unsent in each socket
	// (TCP_NOTSENT_LOWAT). Without it a stream's kernel buffer can hold
	// seconds of data on a slow path, and frames queued there hold up
	// in-order delivery; on a fast short path it only costs wake-ups.
	// Zero means automatic: FrameSize once the session's measured RTT is
	// 10 ms or more, no limit below; -1 disables; a positive value is
	// applied from the start. Automatic mode applies to the built-in TCP
	// transport only.
	UnsentLimit int
	// PacingRate limits the session's aggregate send rate in bytes per
	// second across all streams; zero means unlimited.
	PacingRate float64

	// HandshakeTimeout bounds TLS plus AMST handshake of one connection.
	HandshakeTimeout time.Duration
	// ReconnectTimeout is how long a session survives with no live stream
	// (the dialler keeps redialling) before it fails.
	ReconnectTimeout time.Duration
	// StallTimeout kills a stream whose oldest unacknowledged frame has
	// waited this long (counted as a network_timeout error); its frames go
	// to the other streams.
	StallTimeout time.Duration
	// LingerTimeout bounds how long Close waits for the peer to acknowledge
	// what was sent.
	LingerTimeout time.Duration
	// MeasureInterval is the period of goodput measurement, metrics
	// updates, mode detection and the hill climb.
	MeasureInterval time.Duration
	// TuneInterval is the window over which the hill climb averages
	// goodput before each decision (default 2 s; the first
	// MeasureInterval after a change is left out, as new connections are
	// still in slow start then). Lossy paths need long windows: CUBIC's
	// goodput swings widely within a few RTTs.
	TuneInterval time.Duration
	// TuneGain is the relative goodput gain that justifies more streams
	// (default 0.05 = 5 %).
	TuneGain float64
	// HysteresisSamples is how many consecutive measurements must agree on
	// a new network mode before AMST switches to it.
	HysteresisSamples int
	// Hinter, when set, feeds an external stream-count hint (see StreamHinter).
	Hinter StreamHinter
	// AcceptBacklog bounds the sessions a Listener holds before Accept.
	AcceptBacklog int
}

// DefaultConfig returns the defaults: adaptive streams in 1..512, 256 KiB
// frames, a 32 MiB receive window and no TLS.
func DefaultConfig() Config {
	return Config{
		MinStreams:        1,
		MaxStreams:        512,
		DatacenterStreams: 4,
		HybridStreams:     8,
		InternetStreams:   16,
		FrameSize:         256 << 10,
		ReceiveWindow:     32 << 20,
		MaxMessageSize:    256 << 20,
		HandshakeTimeout:  10 * time.Second,
		ReconnectTimeout:  30 * time.Second,
		StallTimeout:      20 * time.Second,
		LingerTimeout:     10 * time.Second,
		MeasureInterval:   500 * time.Millisecond,
		TuneInterval:      2 * time.Second,
		TuneGain:          0.05,
		HysteresisSamples: 3,
		AcceptBacklog:     64,
	}
}

// withDefaults fills zero fields from DefaultConfig.
func (c Config) withDefaults() Config {
	d := DefaultConfig()
	setInt := func(v *int, def int) {
		if *v == 0 {
			*v = def
		}
	}
	setDur := func(v *time.Duration, def time.Duration) {
		if *v == 0 {
			*v = def
		}
	}
	setInt(&c.MinStreams, d.MinStreams)
	setInt(&c.MaxStreams, d.MaxStreams)
	setInt(&c.DatacenterStreams, d.DatacenterStreams)
	setInt(&c.HybridStreams, d.HybridStreams)
	setInt(&c.InternetStreams, d.InternetStreams)
	setInt(&c.FrameSize, d.FrameSize)
	setInt(&c.ReceiveWindow, d.ReceiveWindow)
	setInt(&c.MaxMessageSize, d.MaxMessageSize)
	setInt(&c.HysteresisSamples, d.HysteresisSamples)
	setInt(&c.AcceptBacklog, d.AcceptBacklog)
	setDur(&c.HandshakeTimeout, d.HandshakeTimeout)
	setDur(&c.ReconnectTimeout, d.ReconnectTimeout)
	setDur(&c.StallTimeout, d.StallTimeout)
	setDur(&c.LingerTimeout, d.LingerTimeout)
	setDur(&c.MeasureInterval, d.MeasureInterval)
	setDur(&c.TuneInterval, d.TuneInterval)
	if c.TuneGain == 0 {
		c.TuneGain = d.TuneGain
	}
	return c
}

// Validate reports the first invalid field, naming it and its value. Zero
// fields are valid (they mean the default).
func (c Config) Validate() error {
	c = c.withDefaults()
	switch {
	case c.Streams < 0 || c.Streams > maxStreamsLimit:
		return fmt.Errorf("amst: Streams %d outside [0, %d]", c.Streams, maxStreamsLimit)
	case c.MinStreams < 1 || c.MinStreams > c.MaxStreams:
		return fmt.Errorf("amst: MinStreams %d outside [1, MaxStreams=%d]", c.MinStreams, c.MaxStreams)
	case c.MaxStreams > maxStreamsLimit:
		return fmt.Errorf("amst: MaxStreams %d above %d", c.MaxStreams, maxStreamsLimit)
	case c.DatacenterStreams < 1 || c.HybridStreams < 1 || c.InternetStreams < 1:
		return fmt.Errorf("amst: mode start counts must be positive (DatacenterStreams %d, HybridStreams %d, InternetStreams %d)", c.DatacenterStreams, c.HybridStreams, c.InternetStreams)
	case c.FrameSize < minFrameSize || c.FrameSize > maxFrameSize:
		return fmt.Errorf("amst: FrameSize %d outside [%d, %d]", c.FrameSize, minFrameSize, maxFrameSize)
	case c.ReceiveWindow/c.FrameSize < minWindowFrames || c.ReceiveWindow/c.FrameSize > maxWindowFrames:
		return fmt.Errorf("amst: ReceiveWindow %d must hold %d..%d frames of FrameSize %d", c.ReceiveWindow, minWindowFrames, maxWindowFrames, c.FrameSize)
	case c.MaxMessageSize < 0:
		return fmt.Errorf("amst: MaxMessageSize %d is negative", c.MaxMessageSize)
	case c.Congestion != "" && !validCongestion(c.Congestion):
		return fmt.Errorf("amst: Congestion %q is not one of bbr, cubic, reno", c.Congestion)
	case c.UnsentLimit < -1:
		return fmt.Errorf("amst: UnsentLimit %d below -1", c.UnsentLimit)
	case c.SocketBuffer < 0:
		return fmt.Errorf("amst: SocketBuffer %d is negative", c.SocketBuffer)
	case c.PacingRate < 0:
		return fmt.Errorf("amst: PacingRate %g is negative", c.PacingRate)
	case c.HandshakeTimeout < 0 || c.ReconnectTimeout < 0 || c.StallTimeout < 0 || c.LingerTimeout < 0:
		return fmt.Errorf("amst: timeouts must not be negative (handshake %v, reconnect %v, stall %v, linger %v)", c.HandshakeTimeout, c.ReconnectTimeout, c.StallTimeout, c.LingerTimeout)
	case c.MeasureInterval < 10*time.Millisecond:
		return fmt.Errorf("amst: MeasureInterval %v below 10ms", c.MeasureInterval)
	case c.TuneInterval < c.MeasureInterval:
		return fmt.Errorf("amst: TuneInterval %v below MeasureInterval %v", c.TuneInterval, c.MeasureInterval)
	case c.TuneGain < 0 || c.TuneGain > 1:
		return fmt.Errorf("amst: TuneGain %g outside [0, 1]", c.TuneGain)
	case c.HysteresisSamples < 1:
		return fmt.Errorf("amst: HysteresisSamples %d below 1", c.HysteresisSamples)
	case c.AcceptBacklog < 1:
		return fmt.Errorf("amst: AcceptBacklog %d below 1", c.AcceptBacklog)
	}
	return nil
}

func validCongestion(s string) bool { return s == "bbr" || s == "cubic" || s == "reno" }

func (c Config) windowFrames() int { return c.ReceiveWindow / c.FrameSize }

func clampInt(v, lo, hi int) int {
	if v < lo {
		return lo
	}
	if v > hi {
		return hi
	}
	return v
}
