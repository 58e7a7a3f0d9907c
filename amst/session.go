package amst

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dwcp/dwcp/metrics"
)

var (
	// ErrClosed is returned by calls on a session after Close.
	ErrClosed = errors.New("amst: session closed")
	// ErrMessagePending is returned by Read when the next item the peer
	// sent is a message: call ReceiveMessage.
	ErrMessagePending = errors.New("amst: next item is a message; call ReceiveMessage")
	// ErrBytesPending is returned by ReceiveMessage when the next item the
	// peer sent is byte-stream data: call Read.
	ErrBytesPending = errors.New("amst: next item is byte-stream data; call Read")
	// ErrMessageTooLarge is returned for a message above MaxMessageSize.
	ErrMessageTooLarge = errors.New("amst: message larger than MaxMessageSize")

	errStall   = fmt.Errorf("amst: stream stalled: %w", os.ErrDeadlineExceeded)
	errRetired = errors.New("amst: stream retired")
	errReplace = errors.New("amst: stream replaced by a new connection")
)

// pooledMin is the payload size from which received frames use pooled
// buffers; smaller ones are allocated exactly (they are often handed to the
// application as messages).
const pooledMin = 32 << 10

type outFrame struct {
	buf *[]byte // pooled; header followed by payload
	n   int     // frame bytes: header plus payload
	// A zero-copy frame has no buf: its payload is ext, a slice of the
	// caller's buffer, and its header is hdr. detach gives it a buf before
	// the caller gets its buffer back.
	hdr   [frameHeaderLen]byte
	ext   []byte
	seq   uint64
	typ   frameType
	flags uint8
	// The header (with the checksum) is written shortly before the frame
	// is written: by the sending goroutine while it waits, for the next
	// frames in the queue (sealAhead), or by the writer that takes the
	// frame. The checksum thus pulls a large caller buffer into the cache
	// just before the kernel copies it, instead of a window earlier.
	sealOnce  sync.Once
	sealTaken bool // a sending goroutine is sealing it (under s.mu)
	sentOn    *stream
	sentAt    time.Time
	queued    bool
	sent      bool
	acked     bool
	writers   int
	dupAt     time.Time // last head-of-line duplicate
}

func (f *outFrame) payloadLen() int { return f.n - frameHeaderLen }

// seal writes the frame's header and checksum, once; safe to call from
// several goroutines (a retransmission may race a stalled first write).
func (f *outFrame) seal() {
	f.sealOnce.Do(func() {
		if f.ext != nil {
			putFrameHeaderSplit(f.hdr[:], f.ext, f.typ, f.flags, f.seq)
		} else {
			putFrameHeader((*f.buf)[:f.n], f.typ, f.flags, f.seq)
		}
	})
}

type inFrame struct {
	typ     frameType
	flags   uint8
	payload []byte
	pooled  *[]byte
	placed  bool // payload was read straight into the waiting Read's buffer
}

// placement is a Read's buffer offered to the connection readers for the
// next in-order data frame: the reader that receives that frame reads its
// payload straight into the buffer (and checks its CRC there), which saves
// copying every byte out of a frame buffer when the application reads at
// least as fast as data arrives. Under s.mu.
type placement struct {
	seq     uint64
	buf     []byte
	claimed *stream       // the connection reading into buf, if any
	done    chan struct{} // closed by the claimer once it no longer touches buf
}

type stream struct {
	idx      int
	conn     net.Conn
	stop     chan struct{}
	stopOnce sync.Once
	dead     bool
	retired  bool
	busy     atomic.Int64 // nanoseconds spent in conn.Write since last measurement
	ctrl     [frameHeaderLen + ackPayloadLen]byte
	urgent   *outFrame // head-of-line duplicate to send next (under s.mu)
	wake     chan struct{}
}

func (st *stream) halt() { st.stopOnce.Do(func() { close(st.stop) }) }

type msgStamp struct {
	lastSeq uint64
	start   time.Time
}

// Session is one AMST session: a reliable, ordered, bidirectional byte
// stream and message channel striped over several connections. All methods
// are safe for concurrent use; concurrent writers (or readers) are
// serialised, so a message is never interleaved with another.
type Session struct {
	cfg       Config
	m         *metrics.Metrics
	id        SessionID
	client    bool
	addr      string
	transport Transport
	trName    string

	sendFrame  int // payload bytes per frame we send
	sendWindow int // frames the peer lets us have outstanding
	recvWindow int // frames we let the peer have outstanding

	pool  sync.Pool
	pacer *pacer

	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{}
	wg     sync.WaitGroup
	workCh chan struct{}

	sendMu sync.Mutex
	recvMu sync.Mutex

	mu sync.Mutex
	// Send side.
	nextSeq     uint64
	ackRecv     uint64 // the peer has received every seq below
	ackConsumed uint64 // the peer's application has consumed every seq below
	unacked     []*outFrame
	retxQ       []*outFrame
	freshQ      []*outFrame
	pendingMsgs []msgStamp
	wake        chan struct{}
	// Receive side.
	recvNext uint64
	consumed uint64
	ring     []*inFrame
	readOff  int
	partial  []byte
	inMsg    bool
	place    *placement
	finSeq   uint64
	finKnown bool
	peerFin  bool
	ackDirty bool
	// Streams.
	streams        []*stream
	live           int
	retiring       int
	dialing        map[int]bool
	target         int
	noStreamsSince time.Time
	targetOut      int
	pingOut        bool
	lowatOn        bool      // automatic UnsentLimit is in force
	pongOut        uint64    // clock of the last ping to echo; 0 = none
	epoch          time.Time // origin of ping clocks
	rttSamples     [64]time.Duration
	rttNext        int
	// State.
	err         error
	finishing   bool
	tearingDown bool
	onGone      func()
	goneOnce    sync.Once
	closeOnce   sync.Once
	closeErr    error
	// Measurement.
	bytesSent, bytesAcked, bytesDelivered uint64
	prevAcked, prevDelivered              uint64
	lastGoodput                           float64
	peakGoodput                           float64
	reconnects                            int
	windowWaits                           uint64
	holDups                               uint64
	placedFrames                          uint64 // frames read straight into a Read's buffer
	detector                              *ModeDetector
	climb                                 *climber
	tuneBytes                             uint64
	tuneTime                              time.Duration
	tuneSkip                              bool
	lastHint                              int
	stats                                 Stats
}

// Stats is a snapshot of a session's counters and measurements.
type Stats struct {
	ID            SessionID
	Streams       int     // live connections
	Target        int     // stream count the session is steering to
	BytesSent     uint64  // payload bytes written at least once
	BytesAcked    uint64  // payload bytes the peer acknowledged
	BytesReceived uint64  // payload bytes received (duplicates excluded)
	Reconnects    int     // streams redialled after a failure
	HOLDuplicates uint64  // head-of-line frames duplicated on another stream
	Goodput       float64 // bytes/s, both directions, last interval
	Utilization   float64 // percent of stream time spent in write, last interval
	RTT           time.Duration
	Mode          Mode
	ModeSwitches  int
}

func newSession(cfg Config, m *metrics.Metrics, id SessionID, client bool, tr Transport, peerMax, peerWindow uint32) *Session {
	ctx, cancel := context.WithCancel(context.Background())
	maxStreams := max(cfg.MaxStreams, cfg.Streams)
	s := &Session{
		cfg:        cfg,
		m:          m,
		id:         id,
		client:     client,
		transport:  tr,
		trName:     tr.Name(),
		sendFrame:  min(cfg.FrameSize, int(peerMax)),
		sendWindow: int(peerWindow),
		recvWindow: cfg.windowFrames(),
		ctx:        ctx,
		cancel:     cancel,
		done:       make(chan struct{}),
		workCh:     make(chan struct{}, 1),
		wake:       make(chan struct{}),
		streams:    make([]*stream, maxStreams),
		dialing:    make(map[int]bool),
		detector:   NewModeDetector(cfg.HysteresisSamples),
		// A session without streams is orphaned after ReconnectTimeout
		// unless its first stream attaches.
		noStreamsSince: time.Now(),
		epoch:          time.Now(),
	}
	s.unacked = make([]*outFrame, s.sendWindow)
	s.ring = make([]*inFrame, s.recvWindow)
	size := frameHeaderLen + cfg.FrameSize
	s.pool.New = func() any { b := make([]byte, size); return &b }
	if cfg.PacingRate > 0 {
		s.pacer = &pacer{rate: cfg.PacingRate}
	}
	return s
}

func (s *Session) start() {
	s.wg.Add(1)
	go s.maintain()
}

// ID returns the session id shared by both ends.
func (s *Session) ID() SessionID { return s.id }

func (s *Session) getBuf() *[]byte  { return s.pool.Get().(*[]byte) }
func (s *Session) putBuf(b *[]byte) { s.pool.Put(b) }

func (s *Session) kick() {
	select {
	case s.workCh <- struct{}{}:
	default:
	}
}

func (s *Session) broadcastLocked() {
	close(s.wake)
	s.wake = make(chan struct{})
}

// waitLocked releases s.mu until the next state change, ctx's end or teardown.
func (s *Session) waitLocked(ctx context.Context) error {
	ch := s.wake
	s.mu.Unlock()
	var err error
	select {
	case <-ch:
	case <-ctx.Done():
		err = ctx.Err()
	case <-s.done:
		err = ErrClosed
	}
	s.mu.Lock()
	return err
}

// ---- Sending ----

func (s *Session) newOutFrame() *outFrame { return &outFrame{buf: s.getBuf()} }

// push assigns the next sequence number to f (whose payload is in place),
// waits for window space and queues it for the writers. It must be called
// with sendMu held, which makes nextSeq stable.
func (s *Session) push(ctx context.Context, f *outFrame, typ frameType, flags uint8, fin bool) error {
	f.seq, f.typ, f.flags = s.nextSeq, typ, flags
	s.mu.Lock()
	for {
		if s.err != nil {
			err := s.err
			s.mu.Unlock()
			s.dropUnsent(f)
			return err
		}
		if s.finishing && !fin {
			s.mu.Unlock()
			s.dropUnsent(f)
			return ErrClosed
		}
		if f.seq < s.ackConsumed+uint64(s.sendWindow) {
			break
		}
		if s.sealAheadLocked() {
			continue
		}
		s.windowWaits++
		if err := s.waitLocked(ctx); err != nil {
			s.mu.Unlock()
			s.dropUnsent(f)
			return err
		}
	}
	s.unacked[f.seq%uint64(s.sendWindow)] = f
	s.nextSeq++
	f.queued = true
	s.freshQ = append(s.freshQ, f)
	s.mu.Unlock()
	s.kick()
	return nil
}

func (s *Session) dropUnsent(f *outFrame) {
	if f.buf != nil {
		s.putBuf(f.buf)
		f.buf = nil
	}
}

// zeroCopyFrames is the write size, in frames, from which Write and
// SendMessage send straight from the caller's buffer instead of copying it
// into frames. Only frames still unacknowledged when the call ends are
// copied (see detach), so large writes save most of a copy.
const zeroCopyFrames = 4

// sendBorrowed queues p as frames that reference p itself, and detaches
// them before returning. The last frame gets lastFlags.
func (s *Session) sendBorrowed(ctx context.Context, p []byte, typ frameType, lastFlags uint8) (int, error) {
	frames := make([]*outFrame, 0, (len(p)+s.sendFrame-1)/s.sendFrame)
	defer func() { s.detach(ctx, frames) }()
	n := 0
	for n < len(p) {
		c := min(s.sendFrame, len(p)-n)
		f := &outFrame{ext: p[n : n+c : n+c], n: frameHeaderLen + c}
		var flags uint8
		if n+c == len(p) {
			flags = lastFlags
		}
		if err := s.push(ctx, f, typ, flags, false); err != nil {
			return n, err
		}
		frames = append(frames, f)
		n += c
	}
	return n, nil
}

// detach makes sure no frame refers to the caller's buffer any more.
//
// First it waits, as a TCP write does, until every frame has been handed to
// a connection (or acknowledged): a frame still queued would otherwise be
// copied only to be written once, and on a fast path that copy is a large
// share of the CPU per byte (up to a window of data per call). It stops
// waiting when ctx ends or the session fails or tears down.
//
// Then acknowledged frames drop the reference, and the others (written but
// not yet acknowledged, kept for retransmission) get a copy of their
// payload in a pooled buffer. A frame being written right now is waited for.
func (s *Session) detach(ctx context.Context, frames []*outFrame) {
	s.awaitHandedOff(ctx, frames)
	for {
		var copyNow []*outFrame
		s.mu.Lock()
		for _, f := range frames {
			switch {
			case f.ext == nil:
			case f.writers > 0:
			case f.acked:
				f.ext = nil
			default:
				copyNow = append(copyNow, f)
			}
		}
		s.mu.Unlock()
		// Copy outside the lock: the payload is immutable, and a writer that
		// picks the frame up meanwhile still reads valid memory, since the
		// caller has not got its buffer back yet.
		bufs := make([]*[]byte, len(copyNow))
		for i, f := range copyNow {
			f.seal()
			bufs[i] = s.getBuf()
			copy((*bufs[i])[:frameHeaderLen], f.hdr[:])
			copy((*bufs[i])[frameHeaderLen:], f.ext)
		}
		s.mu.Lock()
		for i, f := range copyNow {
			if f.writers == 0 && !f.acked {
				f.buf, f.ext = bufs[i], nil
			} else {
				s.putBuf(bufs[i])
			}
		}
		// Decide on the state seen under this lock hold only: a writer may
		// have finished (and broadcast) while the lock was released.
		busy, again := false, false
		for _, f := range frames {
			switch {
			case f.ext == nil:
			case f.writers > 0:
				busy = true
			case f.acked:
				f.ext = nil
			default:
				again = true
			}
		}
		if again || !busy {
			s.mu.Unlock()
			if again {
				continue
			}
			return
		}
		// A writer broadcasts when it finishes with a borrowed frame
		// (also when its connection is closed under it).
		ch := s.wake
		s.mu.Unlock()
		<-ch
	}
}

// sealAhead is how many queued frames a waiting sender seals ahead of the
// writers: enough to keep one writer from computing checksums itself, few
// enough that the payload is still in the cache when it is written.
const sealAhead = 2

// sealAheadLocked seals the next unsealed frames of the fresh queue while
// the sending goroutine would otherwise wait, so that checksums are computed
// in parallel with the writers' system calls. It reports whether it did
// anything (s.mu was released meanwhile).
func (s *Session) sealAheadLocked() bool {
	var todo [sealAhead]*outFrame
	n := 0
	for _, f := range s.freshQ[:min(len(s.freshQ), sealAhead)] {
		if !f.sealTaken {
			f.sealTaken = true
			todo[n] = f
			n++
		}
	}
	if n == 0 {
		return false
	}
	s.mu.Unlock()
	for _, f := range todo[:n] {
		f.seal()
	}
	s.mu.Lock()
	return true
}

// awaitHandedOff waits until no frame of frames is queued, being written or
// waiting to be re-queued after a broken stream, unless ctx ends or the
// session fails or tears down (then detach copies what is left).
func (s *Session) awaitHandedOff(ctx context.Context, frames []*outFrame) {
	pending := func(f *outFrame) bool {
		return f.ext != nil && !f.acked && (f.queued || f.writers > 0 || !f.sent)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	// Frames are handed off roughly in order; one re-queued after first
	// passing the scan is merely copied by detach, which is still correct.
	i := 0
	for s.err == nil && !s.tearingDown {
		for i < len(frames) && !pending(frames[i]) {
			i++
		}
		if i == len(frames) {
			s.awaitAckedLocked(ctx, frames)
			return
		}
		if s.sealAheadLocked() {
			continue
		}
		if s.waitLocked(ctx) != nil {
			return
		}
	}
}

// On a short path (measured RTT below shortPathRTT) the frames handed to
// the kernel are usually acknowledged within about a millisecond, sooner
// than copying them would take on a busy machine; awaitAckedLocked waits up
// to ackWaitMax for that. On longer paths it returns at once: waiting a
// round trip per call would stall a sequential writer.
const (
	shortPathRTT = time.Millisecond
	ackWaitMax   = 2 * time.Millisecond
)

func (s *Session) awaitAckedLocked(ctx context.Context, frames []*outFrame) {
	if rtt := s.minRTTLocked(); rtt <= 0 || rtt >= shortPathRTT {
		return
	}
	tctx, cancel := context.WithTimeout(ctx, ackWaitMax)
	defer cancel()
	i := 0
	for s.err == nil && !s.tearingDown {
		for i < len(frames) && (frames[i].ext == nil || frames[i].acked) {
			i++
		}
		if i == len(frames) || s.waitLocked(tctx) != nil {
			return
		}
	}
}

// Write sends p on the byte stream. It blocks while the peer's window is
// full and returns ErrClosed once Close has started.
func (s *Session) Write(p []byte) (int, error) {
	s.sendMu.Lock()
	defer s.sendMu.Unlock()
	if len(p) >= zeroCopyFrames*s.sendFrame {
		n, err := s.sendBorrowed(s.ctx, p, frameData, 0)
		return n, s.ctxErr(err)
	}
	n := 0
	for n < len(p) {
		f := s.newOutFrame()
		c := copy((*f.buf)[frameHeaderLen:frameHeaderLen+s.sendFrame], p[n:])
		f.n = frameHeaderLen + c
		if err := s.push(s.ctx, f, frameData, 0, false); err != nil {
			return n, s.ctxErr(err)
		}
		n += c
	}
	return n, nil
}

// ReadFrom sends everything r yields on the byte stream, reading straight
// into whole frames (io.Copy uses it). Frames are filled completely before
// they are sent, so use Write for interactive sources.
func (s *Session) ReadFrom(r io.Reader) (int64, error) {
	s.sendMu.Lock()
	defer s.sendMu.Unlock()
	var total int64
	for {
		f := s.newOutFrame()
		n, rerr := io.ReadFull(r, (*f.buf)[frameHeaderLen:frameHeaderLen+s.sendFrame])
		if n > 0 {
			f.n = frameHeaderLen + n
			if err := s.push(s.ctx, f, frameData, 0, false); err != nil {
				return total, s.ctxErr(err)
			}
			total += int64(n)
		} else {
			s.putBuf(f.buf)
		}
		if rerr == io.EOF || rerr == io.ErrUnexpectedEOF {
			return total, nil
		}
		if rerr != nil {
			return total, rerr
		}
	}
}

// SendMessage sends b as one message, fragmented over frames as needed. It
// returns once the message is queued (not when it is delivered; message
// latency is measured until the peer acknowledges it). If ctx ends after
// part of a message was queued, the session fails, because the peer could
// not tell where the next message starts.
func (s *Session) SendMessage(ctx context.Context, b []byte) error {
	if len(b) > s.cfg.MaxMessageSize {
		return fmt.Errorf("%w: %d bytes, limit %d", ErrMessageTooLarge, len(b), s.cfg.MaxMessageSize)
	}
	s.sendMu.Lock()
	defer s.sendMu.Unlock()
	start := time.Now()
	off := 0
	if len(b) >= zeroCopyFrames*s.sendFrame {
		n, err := s.sendBorrowed(ctx, b, frameMsg, flagEnd)
		if err != nil {
			if n > 0 {
				s.fail(fmt.Errorf("amst: message aborted after %d of %d bytes were queued: %w", n, len(b), err))
			}
			return err
		}
		off = len(b)
	}
	for off < len(b) || len(b) == 0 {
		f := s.newOutFrame()
		c := copy((*f.buf)[frameHeaderLen:frameHeaderLen+s.sendFrame], b[off:])
		f.n = frameHeaderLen + c
		end := off+c == len(b)
		var flags uint8
		if end {
			flags = flagEnd
		}
		if err := s.push(ctx, f, frameMsg, flags, false); err != nil {
			if off > 0 {
				s.fail(fmt.Errorf("amst: message aborted after %d of %d bytes were queued: %w", off, len(b), err))
			}
			return err
		}
		off += c
		if end {
			break
		}
	}
	s.mu.Lock()
	last := s.nextSeq - 1
	if s.ackRecv > last {
		s.m.MigrationLatency.WithLabelValues(metrics.ComponentAMST).Observe(time.Since(start).Seconds())
	} else {
		s.pendingMsgs = append(s.pendingMsgs, msgStamp{lastSeq: last, start: start})
	}
	s.mu.Unlock()
	return nil
}

func (s *Session) ctxErr(err error) error {
	if errors.Is(err, context.Canceled) {
		return ErrClosed
	}
	return err
}

func (s *Session) popLocked() *outFrame {
	for _, q := range []*[]*outFrame{&s.retxQ, &s.freshQ} {
		for len(*q) > 0 {
			f := (*q)[0]
			(*q)[0] = nil
			*q = (*q)[1:]
			f.queued = false
			if f.acked {
				s.maybeReleaseLocked(f)
				continue
			}
			return f
		}
	}
	return nil
}

// frameBytes returns what to write for f: the whole frame, or its header
// and its borrowed payload.
func frameBytes(f *outFrame) (out, ext []byte) {
	if f.ext != nil {
		return f.hdr[:], f.ext
	}
	return (*f.buf)[:f.n], nil
}

func (s *Session) maybeReleaseLocked(f *outFrame) {
	if f.acked && f.writers == 0 && !f.queued && f.buf != nil {
		s.putBuf(f.buf)
		f.buf = nil
	}
}

func (s *Session) writeLoop(st *stream) {
	defer s.wg.Done()
	for {
		s.mu.Lock()
		if st.dead || st.retired {
			s.mu.Unlock()
			s.kick() // pass on a wake-up this writer may have taken
			return
		}
		var out, ext []byte
		var f *outFrame
		switch {
		case s.ackDirty:
			out = encodeAck(st.ctrl[:], s.recvNext, s.consumed)
			s.ackDirty = false
			if s.finishing {
				s.broadcastLocked()
			}
		case s.targetOut > 0:
			out = encodeTarget(st.ctrl[:], s.targetOut)
			s.targetOut = 0
		case s.pongOut != 0:
			out = encodePing(st.ctrl[:], framePong, s.pongOut)
			s.pongOut = 0
		case s.pingOut:
			out = encodePing(st.ctrl[:], framePing, uint64(time.Since(s.epoch)))
			s.pingOut = false
		case st.urgent != nil:
			f, st.urgent = st.urgent, nil
			f.queued = false
			if f.acked {
				s.maybeReleaseLocked(f)
				f = nil
				s.mu.Unlock()
				continue
			}
			f.writers++
			f.sentOn = st
			f.sentAt = time.Now()
			out, ext = frameBytes(f)
		default:
			if f = s.popLocked(); f != nil {
				f.writers++
				f.sentOn = st
				f.sentAt = time.Now()
				out, ext = frameBytes(f)
			}
		}
		more := s.ackDirty || s.targetOut > 0 || s.pongOut != 0 || s.pingOut || len(s.retxQ)+len(s.freshQ) > 0
		s.mu.Unlock()
		if more {
			s.kick()
		}
		if out == nil {
			select {
			case <-s.workCh:
				continue
			case <-st.wake:
				continue
			case <-st.stop:
				return
			case <-s.done:
				return
			}
		}
		if f != nil {
			if err := s.pacer.wait(s.ctx, f.n); err != nil {
				s.mu.Lock()
				f.writers--
				if ext != nil {
					s.broadcastLocked()
				}
				s.maybeReleaseLocked(f)
				s.mu.Unlock()
				s.streamDown(st, err)
				return
			}
		}
		if f != nil {
			f.seal()
		}
		t0 := time.Now()
		var err error
		if ext != nil {
			// Header and borrowed payload in one writev on TCP.
			bufs := net.Buffers{out, ext}
			_, err = bufs.WriteTo(st.conn)
		} else {
			_, err = st.conn.Write(out)
		}
		st.busy.Add(int64(time.Since(t0)))
		if f != nil {
			s.mu.Lock()
			f.writers--
			if ext != nil {
				s.broadcastLocked() // detach may be waiting for this frame
			}
			if err == nil {
				// From here the frame waits only in the kernel's (small,
				// see UnsentLimit) send queue and the network.
				f.sentAt = time.Now()
			}
			if err == nil && !f.sent {
				f.sent = true
				n := f.payloadLen()
				s.bytesSent += uint64(n)
				s.m.AMSTBytes.WithLabelValues(metrics.DirectionSent).Add(float64(n))
			}
			s.maybeReleaseLocked(f)
			s.mu.Unlock()
		}
		if err != nil {
			s.streamDown(st, err)
			return
		}
	}
}

// ---- Receiving ----

// readAhead is the read buffer of each connection.
const readAhead = 8 << 10

func (s *Session) readLoop(st *stream) {
	defer s.wg.Done()
	// A small buffer: it batches control frames and headers, but whatever
	// payload it reads ahead is copied once more, so a large one would add
	// up to its size of copying to every big frame.
	br := bufio.NewReaderSize(st.conn, readAhead)
	var hdr [frameHeaderLen]byte
	for {
		var pooled *[]byte
		var claim *placement
		h, payload, err := readFrame(br, hdr[:], s.cfg.FrameSize, func(n int) []byte {
			// The header passed its checks when this is called.
			if n >= pooledMin && frameType(hdr[0]) == frameData {
				if claim = s.claimPlacement(st, binary.BigEndian.Uint64(hdr[8:16]), n); claim != nil {
					return claim.buf
				}
			}
			if n >= pooledMin {
				pooled = s.getBuf()
				return (*pooled)[frameHeaderLen:]
			}
			return make([]byte, n)
		})
		if claim != nil {
			// Deliver (or drop) the frame before letting the Read go, so
			// that a frame pointing into its buffer never outlives it.
			s.mu.Lock()
			if err == nil {
				err = s.onSequencedLocked(h, payload, nil, true)
			}
			close(claim.done)
			s.mu.Unlock()
			if err != nil {
				s.streamDown(st, err)
				return
			}
			continue
		}
		if err == nil {
			switch h.typ {
			case frameAck:
				err = s.onAck(binary.BigEndian.Uint64(payload), binary.BigEndian.Uint64(payload[8:]))
			case frameTarget:
				s.onTarget(int(binary.BigEndian.Uint32(payload)))
			case framePing:
				s.mu.Lock()
				s.pongOut = max(1, binary.BigEndian.Uint64(payload))
				s.mu.Unlock()
				s.kick()
			case framePong:
				s.onPong(binary.BigEndian.Uint64(payload))
			default:
				err = s.onSequenced(h, payload, pooled)
				pooled = nil // owned by the ring now (or released)
			}
		}
		if pooled != nil {
			s.putBuf(pooled)
		}
		if err != nil {
			s.streamDown(st, err)
			return
		}
	}
}

// claimPlacement hands st the waiting Read's buffer if the frame st is
// about to read (data, seq, n payload bytes) is the one that Read waits for.
func (s *Session) claimPlacement(st *stream, seq uint64, n int) *placement {
	s.mu.Lock()
	defer s.mu.Unlock()
	pl := s.place
	if pl == nil || pl.claimed != nil || pl.seq != seq || n > len(pl.buf) || s.ring[seq%uint64(s.recvWindow)] != nil {
		return nil
	}
	pl.claimed = st
	return pl
}

func (s *Session) onSequenced(h frameHeader, payload []byte, pooled *[]byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.onSequencedLocked(h, payload, pooled, false)
}

func (s *Session) onSequencedLocked(h frameHeader, payload []byte, pooled *[]byte, placed bool) error {
	w := uint64(s.recvWindow)
	release := func() {
		if pooled != nil {
			s.putBuf(pooled)
		}
	}
	switch {
	case h.seq >= s.consumed+w:
		release()
		return fmt.Errorf("%w: seq %d beyond the receive window [%d, %d)", ErrBadFrame, h.seq, s.consumed, s.consumed+w)
	case s.finKnown && h.seq > s.finSeq:
		release()
		return fmt.Errorf("%w: seq %d after fin at %d", ErrBadFrame, h.seq, s.finSeq)
	case h.seq < s.consumed || s.ring[h.seq%w] != nil:
		release() // duplicate of a retransmitted frame
		s.ackDirty = true
		s.kick()
		return nil
	}
	if h.typ == frameFin {
		if h.seq < s.recvNext {
			release()
			return fmt.Errorf("%w: fin at %d below received %d", ErrBadFrame, h.seq, s.recvNext)
		}
		s.finSeq, s.finKnown = h.seq, true
	}
	s.ring[h.seq%w] = &inFrame{typ: h.typ, flags: h.flags, payload: payload, pooled: pooled, placed: placed}
	if placed {
		s.placedFrames++
	}
	s.bytesDelivered += uint64(len(payload))
	s.m.AMSTBytes.WithLabelValues(metrics.DirectionReceived).Add(float64(len(payload)))
	advanced := false
	for s.recvNext < s.consumed+w && s.ring[s.recvNext%w] != nil {
		s.recvNext++
		advanced = true
	}
	if s.finKnown && s.recvNext > s.finSeq {
		s.peerFin = true
	}
	s.ackDirty = true
	if advanced {
		s.broadcastLocked()
	}
	s.kick()
	return nil
}

func (s *Session) onAck(received, consumed uint64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if received > s.nextSeq || consumed > received {
		return fmt.Errorf("%w: ack received=%d consumed=%d but only %d frames were sent", ErrBadFrame, received, consumed, s.nextSeq)
	}
	changed := false
	if consumed > s.ackConsumed {
		s.ackConsumed = consumed
		changed = true
	}
	w := uint64(s.sendWindow)
	for s.ackRecv < received {
		if f := s.unacked[s.ackRecv%w]; f != nil {
			s.unacked[s.ackRecv%w] = nil
			f.acked = true
			s.bytesAcked += uint64(f.payloadLen())
			s.maybeReleaseLocked(f)
		}
		s.ackRecv++
		changed = true
	}
	for len(s.pendingMsgs) > 0 && s.pendingMsgs[0].lastSeq < s.ackRecv {
		s.m.MigrationLatency.WithLabelValues(metrics.ComponentAMST).Observe(time.Since(s.pendingMsgs[0].start).Seconds())
		s.pendingMsgs = s.pendingMsgs[1:]
	}
	if changed {
		s.broadcastLocked()
	}
	return nil
}

// onPong records an RTT sample. Pings queue behind data in the socket
// buffers, so the session uses the minimum of the recent samples, which
// filters out that queueing delay as BBR's min_rtt does.
func (s *Session) onPong(clock uint64) {
	rtt := time.Since(s.epoch) - time.Duration(clock)
	if rtt <= 0 {
		return
	}
	s.mu.Lock()
	s.addRTTLocked(rtt)
	s.mu.Unlock()
}

func (s *Session) addRTTLocked(rtt time.Duration) {
	s.rttSamples[s.rttNext%len(s.rttSamples)] = rtt
	s.rttNext++
}

func (s *Session) minRTTLocked() time.Duration {
	var m time.Duration
	for _, r := range s.rttSamples {
		if r > 0 && (m == 0 || r < m) {
			m = r
		}
	}
	return m
}

// headLocked waits for the next in-order frame.
func (s *Session) headLocked(ctx context.Context) (*inFrame, error) {
	for {
		if s.consumed < s.recvNext {
			return s.ring[s.consumed%uint64(s.recvWindow)], nil
		}
		if s.err != nil {
			return nil, s.err
		}
		if s.tearingDown {
			return nil, ErrClosed
		}
		if err := s.waitLocked(ctx); err != nil {
			return nil, s.ctxErr(err)
		}
	}
}

func (s *Session) consumeLocked() {
	i := s.consumed % uint64(s.recvWindow)
	if f := s.ring[i]; f.pooled != nil {
		s.putBuf(f.pooled)
	}
	s.ring[i] = nil
	s.consumed++
	s.readOff = 0
	s.ackDirty = true
	s.kick()
}

// Read reads from the byte stream. It returns io.EOF after the peer closed
// and ErrMessagePending when the next item is a message.
func (s *Session) Read(p []byte) (int, error) {
	s.recvMu.Lock()
	defer s.recvMu.Unlock()
	for {
		s.mu.Lock()
		var pl *placement
		if s.readOff == 0 && s.consumed == s.recvNext && len(p) >= pooledMin && s.err == nil && !s.tearingDown {
			pl = &placement{seq: s.consumed, buf: p, done: make(chan struct{})}
			s.place = pl
		}
		f, err := s.headLocked(s.ctx)
		if pl != nil {
			s.place = nil
			if st := pl.claimed; st != nil {
				// A connection is reading into p: wait until it is done
				// (its frame is then at the head, or was dropped as a
				// duplicate), then look again.
				s.mu.Unlock()
				s.awaitPlacement(pl, st)
				continue
			}
		}
		if err != nil {
			s.mu.Unlock()
			return 0, err
		}
		off := s.readOff
		s.mu.Unlock()
		switch f.typ {
		case frameFin:
			return 0, io.EOF
		case frameMsg:
			return 0, ErrMessagePending
		}
		// Only this goroutine (holding recvMu) consumes, so f stays valid.
		// A placed frame is in p already: a Read returns only after its
		// placement ended, and the placed frame, if accepted, is then at
		// the head, so it always belongs to this call.
		var n int
		if f.placed {
			n = len(f.payload)
		} else {
			n = copy(p, f.payload[off:])
		}
		s.mu.Lock()
		s.readOff += n
		if s.readOff == len(f.payload) {
			s.consumeLocked()
		}
		s.mu.Unlock()
		if n > 0 || len(p) == 0 {
			return n, nil
		}
	}
}

// awaitPlacement waits until the connection st has finished reading into a
// Read's buffer. A slow frame is waited for however long it takes, unless a
// copy of it has meanwhile arrived on another stream (a head-of-line
// duplicate): then st is most likely stuck in a TCP retransmission timeout,
// and if it has still not finished after the head-of-line limit it is taken
// down, which ends its read at once (its frames are sent again).
func (s *Session) awaitPlacement(pl *placement, st *stream) {
	var stuck <-chan time.Time
	for {
		s.mu.Lock()
		changed := s.wake
		if stuck == nil && s.consumed < s.recvNext {
			t := time.NewTimer(3*s.minRTTLocked() + 100*time.Millisecond)
			defer t.Stop()
			stuck = t.C
		}
		s.mu.Unlock()
		select {
		case <-pl.done:
			return
		case <-changed:
		case <-stuck:
			s.streamDown(st, fmt.Errorf("amst: stream %d stuck in the middle of frame %d, which arrived on another stream", st.idx, pl.seq))
			<-pl.done
			return
		}
	}
}

// WriteTo writes the byte stream to w until the peer closes (io.Copy uses
// it); it stops with ErrMessagePending at a message.
func (s *Session) WriteTo(w io.Writer) (int64, error) {
	s.recvMu.Lock()
	defer s.recvMu.Unlock()
	var total int64
	for {
		s.mu.Lock()
		f, err := s.headLocked(s.ctx)
		if err != nil {
			s.mu.Unlock()
			return total, err
		}
		off := s.readOff
		s.mu.Unlock()
		switch f.typ {
		case frameFin:
			return total, nil
		case frameMsg:
			return total, ErrMessagePending
		}
		n, werr := w.Write(f.payload[off:])
		total += int64(n)
		s.mu.Lock()
		s.readOff += n
		if s.readOff == len(f.payload) {
			s.consumeLocked()
		}
		s.mu.Unlock()
		if werr != nil {
			return total, werr
		}
	}
}

// ReceiveMessage returns the next message. It returns io.EOF after the peer
// closed and ErrBytesPending when the next item is byte-stream data. If ctx
// ends in the middle of a message, the part received so far is kept and the
// next call continues it.
func (s *Session) ReceiveMessage(ctx context.Context) ([]byte, error) {
	s.recvMu.Lock()
	defer s.recvMu.Unlock()
	for {
		s.mu.Lock()
		f, err := s.headLocked(ctx)
		if err != nil {
			s.mu.Unlock()
			return nil, err
		}
		s.mu.Unlock()
		switch f.typ {
		case frameFin:
			if s.inMsg {
				return nil, fmt.Errorf("%w: peer closed in the middle of a message", ErrBadFrame)
			}
			return nil, io.EOF
		case frameData:
			if s.inMsg {
				return nil, fmt.Errorf("%w: byte-stream data in the middle of a message", ErrBadFrame)
			}
			return nil, ErrBytesPending
		}
		end := f.flags&flagEnd != 0
		if !s.inMsg && end && f.pooled == nil {
			msg := f.payload
			f.payload = nil
			s.mu.Lock()
			s.consumeLocked()
			s.mu.Unlock()
			if msg == nil {
				msg = []byte{}
			}
			return msg, nil
		}
		if len(s.partial)+len(f.payload) > s.cfg.MaxMessageSize {
			err := fmt.Errorf("%w: incoming message exceeds %d bytes", ErrMessageTooLarge, s.cfg.MaxMessageSize)
			s.fail(err)
			return nil, err
		}
		if need := len(s.partial) + len(f.payload); need > cap(s.partial) {
			// Double rather than let append grow large slices by 1.25x,
			// which would copy a big message several times over.
			grown := make([]byte, len(s.partial), min(max(2*cap(s.partial), need, 4*len(f.payload)), s.cfg.MaxMessageSize))
			copy(grown, s.partial)
			s.partial = grown
		}
		s.partial = append(s.partial, f.payload...)
		s.inMsg = true
		s.mu.Lock()
		s.consumeLocked()
		s.mu.Unlock()
		if end {
			msg := s.partial
			s.partial, s.inMsg = nil, false
			return msg, nil
		}
	}
}

// ---- Streams ----

func (s *Session) attach(conn net.Conn, idx int) bool {
	s.mu.Lock()
	old := s.streams[idx]
	s.mu.Unlock()
	if old != nil {
		s.streamDown(old, errReplace)
	}
	s.mu.Lock()
	if s.tearingDown || s.err != nil || s.streams[idx] != nil {
		s.mu.Unlock()
		conn.Close()
		return false
	}
	if s.lowatOn {
		if tc, ok := underlyingTCP(conn); ok {
			setUnsentLimit(tc, s.sendFrame)
		}
	}
	st := &stream{idx: idx, conn: conn, stop: make(chan struct{}), wake: make(chan struct{}, 1)}
	s.streams[idx] = st
	s.live++
	s.noStreamsSince = time.Time{}
	s.m.AMSTActiveStreams.Inc()
	s.ackDirty = true
	s.wg.Add(2)
	go s.readLoop(st)
	go s.writeLoop(st)
	s.broadcastLocked()
	s.mu.Unlock()
	s.kick()
	return true
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout())
}

// streamDown retires a broken (or retired) stream: every unacknowledged
// frame last sent on it is queued again for the live streams, and the
// dialling side redials.
func (s *Session) streamDown(st *stream, cause error) {
	s.mu.Lock()
	if st.dead {
		s.mu.Unlock()
		return
	}
	st.dead = true
	st.halt()
	if s.streams[st.idx] == st {
		s.streams[st.idx] = nil
	}
	s.live--
	if st.retired {
		s.retiring--
	}
	s.m.AMSTActiveStreams.Dec()
	if f := st.urgent; f != nil {
		st.urgent = nil
		s.retxQ = append(s.retxQ, f) // still marked queued
	}
	w := uint64(s.sendWindow)
	for seq := s.ackRecv; seq < s.nextSeq; seq++ {
		if f := s.unacked[seq%w]; f != nil && f.sentOn == st && !f.queued && !f.acked {
			f.queued = true
			s.retxQ = append(s.retxQ, f)
		}
	}
	s.ackDirty = true // the last ack may have been lost with the stream
	if s.live == 0 {
		s.noStreamsSince = time.Now()
	}
	unexpected := !st.retired && !s.tearingDown && s.err == nil
	if unexpected && isTimeout(cause) {
		s.m.Errors.WithLabelValues(metrics.ComponentAMST, metrics.ErrorNetworkTimeout).Inc()
	}
	peerDone := s.peerFin && s.ackRecv == s.nextSeq
	if s.client && unexpected && !peerDone && !s.dialing[st.idx] {
		s.dialing[st.idx] = true
		s.wg.Add(1)
		go s.redial(st.idx)
	}
	s.broadcastLocked()
	s.mu.Unlock()
	st.conn.Close()
	s.kick()
}

func (s *Session) dialJoin(ctx context.Context, idx int) (net.Conn, error) {
	conn, _, rtt, err := dialStream(ctx, s.cfg, s.m, s.transport, s.addr, handshakeRequest{
		version: ProtocolVersion, kind: kindJoin, session: s.id, index: uint32(idx),
		maxPayload: uint32(s.cfg.FrameSize), window: uint32(s.recvWindow),
	})
	if err == nil {
		// A handshake on a fresh connection is not queued behind data:
		// the best RTT sample there is.
		s.mu.Lock()
		s.addRTTLocked(rtt)
		s.mu.Unlock()
	}
	return conn, err
}

func (s *Session) redial(idx int) {
	defer s.wg.Done()
	deadline := time.Now().Add(s.cfg.ReconnectTimeout)
	backoff := 10 * time.Millisecond
	for {
		conn, err := s.dialJoin(s.ctx, idx)
		if err == nil {
			s.mu.Lock()
			delete(s.dialing, idx)
			s.mu.Unlock()
			if s.attach(conn, idx) {
				s.m.AMSTStreamReconnects.Inc()
				s.mu.Lock()
				s.reconnects++
				s.mu.Unlock()
			}
			return
		}
		var refused *RefusedError
		if errors.As(err, &refused) || s.ctx.Err() != nil || time.Now().After(deadline) {
			s.mu.Lock()
			delete(s.dialing, idx)
			noneLeft := s.live == 0 && len(s.dialing) == 0
			s.mu.Unlock()
			if noneLeft && s.ctx.Err() == nil {
				s.fail(fmt.Errorf("amst: all streams lost; redial of stream %d failed: %w", idx, err))
			}
			return
		}
		t := time.NewTimer(backoff)
		select {
		case <-t.C:
		case <-s.done:
			t.Stop()
		}
		backoff = min(2*backoff, time.Second)
	}
}

// grow dials one more stream for the adaptive count.
func (s *Session) grow(idx int) {
	defer s.wg.Done()
	conn, err := s.dialJoin(s.ctx, idx)
	s.mu.Lock()
	delete(s.dialing, idx)
	s.mu.Unlock()
	if err == nil {
		s.attach(conn, idx)
	}
}

func (s *Session) retireLocked(st *stream) {
	st.retired = true
	s.retiring++
	st.halt()
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		// Give frames already written on st time to be acknowledged, so
		// that retiring a stream rarely causes a retransmission.
		ctx, cancel := context.WithTimeout(s.ctx, 2*time.Second)
		defer cancel()
		s.mu.Lock()
		for s.unackedOnLocked(st) {
			if s.waitLocked(ctx) != nil {
				break
			}
		}
		s.mu.Unlock()
		s.streamDown(st, errRetired)
	}()
}

func (s *Session) unackedOnLocked(st *stream) bool {
	w := uint64(s.sendWindow)
	for seq := s.ackRecv; seq < s.nextSeq; seq++ {
		if f := s.unacked[seq%w]; f != nil && f.sentOn == st && !f.acked {
			return true
		}
	}
	return false
}

// reconcileLocked dials or retires streams until the count matches target.
func (s *Session) reconcileLocked() {
	if !s.client || s.tearingDown || s.err != nil || s.finishing {
		return
	}
	count := s.live - s.retiring + len(s.dialing)
	for i := 0; count < s.target && i < len(s.streams); i++ {
		if s.streams[i] == nil && !s.dialing[i] {
			s.dialing[i] = true
			s.wg.Add(1)
			go s.grow(i)
			count++
		}
	}
	for i := len(s.streams) - 1; count > s.target && i > 0; i-- {
		if st := s.streams[i]; st != nil && !st.retired && !st.dead {
			s.retireLocked(st)
			count--
		}
	}
}

// SetTargetStreams steers the session to n streams (clamped to
// [MinStreams, MaxStreams]); an adaptive session restarts its hill climb
// from n. On the accepting side the request is sent to the dialler, which
// owns the connections.
func (s *Session) SetTargetStreams(n int) {
	if !s.client {
		s.mu.Lock()
		s.targetOut = clampInt(n, 1, maxStreamsLimit)
		s.mu.Unlock()
		s.kick()
		return
	}
	s.setTarget(n, true)
}

func (s *Session) setTarget(n int, restart bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	lo, hi := s.cfg.MinStreams, len(s.streams)
	if s.cfg.Streams > 0 {
		lo = 1
	}
	n = clampInt(n, lo, hi)
	if restart && s.climb != nil {
		s.climb.reset(n)
		s.tuneBytes, s.tuneTime, s.tuneSkip = 0, 0, true
	}
	s.target = n
	s.reconcileLocked()
}

func (s *Session) onTarget(n int) {
	if s.client {
		s.setTarget(n, true)
	}
}

// fail puts the session in a failed state: every blocked or later call
// returns err (data already received stays readable), and all connections
// are closed. Close must still be called.
func (s *Session) fail(err error) {
	s.mu.Lock()
	if s.err != nil || s.tearingDown {
		s.mu.Unlock()
		return
	}
	s.err = err
	var sts []*stream
	for _, st := range s.streams {
		if st != nil {
			sts = append(sts, st)
		}
	}
	s.broadcastLocked()
	s.mu.Unlock()
	for _, st := range sts {
		s.streamDown(st, err)
	}
	s.goneOnce.Do(func() {
		if s.onGone != nil {
			s.onGone()
		}
	})
}

// Err returns the error that failed the session, or nil.
func (s *Session) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// Close sends the end of stream, waits up to LingerTimeout for the peer to
// acknowledge everything sent, then closes every connection and waits for
// the session's goroutines. It returns an error if data was left
// unacknowledged. Safe to call more than once.
func (s *Session) Close() error {
	s.closeOnce.Do(func() { s.closeErr = s.shutdown() })
	return s.closeErr
}

func (s *Session) shutdown() error {
	s.mu.Lock()
	s.finishing = true
	s.broadcastLocked()
	s.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.LingerTimeout)
	defer cancel()

	var lingerErr error
	s.sendMu.Lock()
	if s.Err() == nil {
		f := s.newOutFrame()
		f.n = frameHeaderLen
		if err := s.push(ctx, f, frameFin, 0, true); err != nil && !errors.Is(err, ErrClosed) {
			lingerErr = fmt.Errorf("amst: close: could not queue end of stream: %w", err)
		}
	}
	s.sendMu.Unlock()
	s.mu.Lock()
	for lingerErr == nil && s.err == nil && s.ackRecv < s.nextSeq && !(s.live == 0 && s.peerFin) {
		if err := s.waitLocked(ctx); err != nil {
			lingerErr = fmt.Errorf("amst: close: %d frames not acknowledged within %v", s.nextSeq-s.ackRecv, s.cfg.LingerTimeout)
		}
	}
	// Send a last ack so that the peer's Close need not wait for it.
	if s.live > 0 && s.err == nil {
		s.ackDirty = true
		s.kick()
		actx, acancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		for s.ackDirty && s.live > 0 {
			if s.waitLocked(actx) != nil {
				break
			}
		}
		acancel()
	}
	s.tearingDown = true
	var sts []*stream
	for _, st := range s.streams {
		if st != nil {
			sts = append(sts, st)
		}
	}
	s.broadcastLocked()
	s.mu.Unlock()

	s.cancel()
	close(s.done)
	for _, st := range sts {
		st.conn.Close()
	}
	s.wg.Wait()

	// Readers blocked in Read or ReceiveMessage have returned ErrClosed;
	// holding recvMu keeps a late one from using frames being released.
	s.recvMu.Lock()
	defer s.recvMu.Unlock()
	s.mu.Lock()
	for i, f := range s.unacked {
		if f != nil && f.buf != nil {
			s.putBuf(f.buf)
		}
		s.unacked[i] = nil
	}
	for i, f := range s.ring {
		if f != nil && f.pooled != nil {
			s.putBuf(f.pooled)
		}
		s.ring[i] = nil
	}
	s.recvNext = s.consumed
	s.retxQ, s.freshQ = nil, nil
	s.m.Throughput.WithLabelValues(s.trName).Sub(s.lastGoodput)
	s.m.AMSTThroughputGbps.Sub(s.lastGoodput * 8 / 1e9)
	s.lastGoodput = 0
	if s.err == nil {
		s.err = ErrClosed
	}
	s.mu.Unlock()
	s.goneOnce.Do(func() {
		if s.onGone != nil {
			s.onGone()
		}
	})
	return lingerErr
}

// ---- Measurement ----

func (s *Session) maintain() {
	defer s.wg.Done()
	t := time.NewTicker(s.cfg.MeasureInterval)
	defer t.Stop()
	hol := time.NewTicker(min(s.cfg.MeasureInterval, 50*time.Millisecond))
	defer hol.Stop()
	last := time.Now()
	for {
		select {
		case <-s.done:
			return
		case now := <-t.C:
			s.measure(now, now.Sub(last))
			last = now
		case now := <-hol.C:
			s.unblockHead(now)
		}
	}
}

// unblockHead duplicates the oldest unacknowledged frame on another stream
// when it has been in its stream's kernel queue much longer than a round
// trip: that stream is most likely waiting for a TCP retransmission timeout
// after a loss, and every later frame waits for this one at the receiver.
// The receiver drops whichever copy arrives second.
func (s *Session) unblockHead(now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ackRecv >= s.nextSeq || s.live < 2 {
		return
	}
	// A frame handed to the kernel still waits behind up to UnsentLimit
	// bytes of its stream, which drain at about the stream's share of the
	// goodput; only a frame much later than that is stuck.
	limit := 3*s.minRTTLocked() + 100*time.Millisecond
	if rate := max(s.lastGoodput, s.peakGoodput/2) / float64(s.live); rate > 0 {
		unsent := s.cfg.UnsentLimit
		switch {
		case s.lowatOn:
			unsent = s.sendFrame
		case unsent <= 0:
			unsent = 8 * s.sendFrame // kernel auto-tuned buffer: a rough guess
		}
		queued := float64(unsent + s.sendFrame)
		limit += time.Duration(2 * queued / rate * float64(time.Second))
	}
	w := uint64(s.sendWindow)
	// Look at the oldest few frames: with many streams, several can be
	// stuck in recovery at once, and each holds up everything behind it.
	for seq := s.ackRecv; seq < s.nextSeq && seq < s.ackRecv+holScan; seq++ {
		f := s.unacked[seq%w]
		if f == nil || !f.sent || f.queued || f.acked || f.writers > 0 || f.sentOn == nil {
			continue
		}
		if now.Sub(f.sentAt) < limit || now.Sub(f.dupAt) < limit {
			continue
		}
		var best *stream
		for _, st := range s.streams {
			if st == nil || st == f.sentOn || st.dead || st.retired || st.urgent != nil {
				continue
			}
			if best == nil || st.busy.Load() < best.busy.Load() {
				best = st
			}
		}
		if best == nil {
			return
		}
		f.dupAt = now
		f.queued = true
		best.urgent = f
		s.holDups++
		select {
		case best.wake <- struct{}{}:
		default:
		}
	}
}

// holScan is how many of the oldest unacknowledged frames unblockHead checks.
const holScan = 16

func (s *Session) measure(now time.Time, dt time.Duration) {
	s.mu.Lock()
	acked, delivered := s.bytesAcked-s.prevAcked, s.bytesDelivered-s.prevDelivered
	s.prevAcked, s.prevDelivered = s.bytesAcked, s.bytesDelivered
	moved := acked + delivered
	goodput := float64(moved) / dt.Seconds()
	var sts []*stream
	for _, st := range s.streams {
		if st != nil && !st.dead {
			sts = append(sts, st)
		}
	}
	var stalled *stream
	if s.ackRecv < s.nextSeq {
		f := s.unacked[s.ackRecv%uint64(s.sendWindow)]
		if f != nil && f.sentOn != nil && !f.queued && !f.sentOn.dead && now.Sub(f.sentAt) > s.cfg.StallTimeout {
			stalled = f.sentOn
		}
	}
	orphaned := !s.client && s.live == 0 && !s.noStreamsSince.IsZero() && now.Sub(s.noStreamsSince) > s.cfg.ReconnectTimeout
	s.m.Throughput.WithLabelValues(s.trName).Add(goodput - s.lastGoodput)
	s.m.AMSTThroughputGbps.Add((goodput - s.lastGoodput) * 8 / 1e9)
	s.lastGoodput = goodput
	// The peak decays by half every 10 s so that it follows a slower path.
	s.peakGoodput = max(goodput, s.peakGoodput*math.Pow(0.5, dt.Seconds()/10))
	s.mu.Unlock()

	if stalled != nil {
		s.streamDown(stalled, errStall)
	}
	if orphaned {
		s.fail(fmt.Errorf("amst: no stream for %v: peer gone", s.cfg.ReconnectTimeout))
	}

	var busy time.Duration
	for _, st := range sts {
		busy += time.Duration(st.busy.Swap(0))
	}
	util := 0.0
	if len(sts) > 0 {
		util = min(100, 100*busy.Seconds()/(dt.Seconds()*float64(len(sts))))
	}
	if moved > 0 && len(sts) > 0 {
		s.m.AMSTStreamUtilization.Set(util)
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	s.stats.Goodput, s.stats.Utilization = goodput, util
	rtt := s.minRTTLocked()
	s.stats.RTT = rtt
	if s.cfg.UnsentLimit == 0 && s.cfg.Transport == nil && !s.lowatOn && rtt >= 10*time.Millisecond {
		// A long path: bound each socket's unsent queue (see UnsentLimit).
		s.lowatOn = true
		for _, st := range s.streams {
			if st == nil || st.dead {
				continue
			}
			if tc, ok := underlyingTCP(st.conn); ok {
				setUnsentLimit(tc, s.sendFrame)
			}
		}
	}
	if s.live > 0 {
		s.pingOut = true
		s.kick()
	}
	if moved > 0 && rtt > 0 {
		mode, from := s.detector.Observe(rtt, goodput*8)
		if from != ModeUnknown {
			s.m.AMSTModeSwitches.WithLabelValues(string(from), string(mode)).Inc()
		}
		for _, md := range []Mode{ModeDatacenter, ModeHybrid, ModeInternet} {
			v := 0.0
			if md == mode {
				v = 1
			}
			s.m.AMSTMode.WithLabelValues(string(md)).Set(v)
		}
	}
	if !s.client || s.tearingDown || s.err != nil {
		return
	}
	if s.cfg.Hinter != nil {
		if h := s.cfg.Hinter.StreamHint(); h > 0 && h != s.lastHint {
			s.lastHint = h
			s.target = clampInt(h, s.cfg.MinStreams, len(s.streams))
			if s.climb != nil {
				s.climb.reset(s.target)
				s.tuneBytes, s.tuneTime, s.tuneSkip = 0, 0, true
			}
			s.reconcileLocked()
			return
		}
	}
	if s.climb != nil {
		s.tuneLocked(moved, dt)
	}
	s.reconcileLocked()
}

// tuneLocked accumulates goodput over a tune window and lets the climber
// decide at its end. Intervals that carried nothing (the application had
// nothing to send) say nothing about the path and are left out, and so is
// the first interval after a change of count.
func (s *Session) tuneLocked(moved uint64, dt time.Duration) {
	if moved == 0 {
		return
	}
	if s.tuneSkip {
		s.tuneSkip = false
		return
	}
	s.tuneBytes += moved
	s.tuneTime += dt
	if s.tuneTime < s.cfg.TuneInterval {
		return
	}
	g := float64(s.tuneBytes) / s.tuneTime.Seconds()
	s.tuneBytes, s.tuneTime = 0, 0
	if n := s.climb.next(g); n != s.target {
		s.target = n
		s.tuneSkip = true
	}
}

// Stats returns a snapshot of the session's counters.
func (s *Session) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.stats
	st.ID = s.id
	st.Streams = s.live
	st.Target = s.target
	st.BytesSent = s.bytesSent
	st.BytesAcked = s.bytesAcked
	st.BytesReceived = s.bytesDelivered
	st.Reconnects = s.reconnects
	st.HOLDuplicates = s.holDups
	st.Mode = s.detector.Mode()
	st.ModeSwitches = s.detector.Switches()
	return st
}
