package dwcp

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cespare/xxhash/v2"

	"github.com/dwcp/dwcp/metrics"
)

// Serve accepts sessions on l and receives one migration on each, until ctx
// ends or the engine is closed; onResult (may be nil) is called with every
// migration's outcome. It returns nil when stopped, else the accept error.
func (e *Engine) Serve(ctx context.Context, l Listener, onResult func(*Result, error)) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return ErrClosed
	}
	e.wg.Add(1)
	e.mu.Unlock()
	defer e.wg.Done()
	go func() {
		select {
		case <-e.stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		sess, err := l.Accept(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			e.m.Errors.WithLabelValues(metrics.ComponentEngine, metrics.ErrorNetworkTimeout).Inc()
			// A failed handshake of one peer (TLS, garbage) is that peer's
			// problem; a closed listener ends the loop.
			if errors.Is(err, net.ErrClosed) || errors.Is(err, ErrSessionClosed) {
				return err
			}
			select { // back off so a persistent accept error does not spin
			case <-time.After(10 * time.Millisecond):
			case <-ctx.Done():
				return nil
			}
			continue
		}
		wg.Go(func() {
			defer sess.Close()
			res, err := e.Receive(ctx, sess)
			if onResult != nil {
				onResult(res, err)
			}
		})
	}
}

// Receive runs the destination side of one migration over sess: it builds
// the incoming memory (Config.Incoming), applies and verifies every page,
// and resumes the guest only after the source commits. On error the incoming
// memory is discarded. The caller closes sess.
func (e *Engine) Receive(ctx context.Context, sess Session) (*Result, error) {
	d := &dest{e: e, cfg: e.cfg, mc: newMsgConn(sess), res: &Result{Destination: e.cfg.NodeID}}
	start := time.Now()
	err := d.run(ctx)
	d.res.Duration = time.Since(start)
	d.res.WireBytes = d.mc.wireSent.Load() + d.mc.wireRecv.Load()
	if err != nil {
		e.m.Errors.WithLabelValues(metrics.ComponentEngine, errorType(err)).Inc()
	}
	return d.res, err
}

type dest struct {
	e   *Engine
	cfg Config
	mc  *msgConn
	res *Result

	hello    helloMsg
	incoming IncomingMemory
	lanes    []*destLane
	laneWG   sync.WaitGroup // lane goroutines
	pending  sync.WaitGroup // frames handed to lanes, not yet applied
	laneMu   sync.Mutex
	laneErr  error
	hashes   []uint64
	have     []uint64 // bitmap of pages received at least once
	missing  atomic.Int64
	applied  atomic.Int64 // pages applied, all rounds
	verified bool
	resumed  bool
	peerDone bool // the source aborted or said why: no abort back
	closers  []io.Closer
}

func (d *dest) run(ctx context.Context) (err error) {
	runCtx, cancel := context.WithCancel(ctx)
	replies := make(chan reply, 8)
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			f, err := d.mc.recv(runCtx)
			select {
			case replies <- reply{f, err}:
			case <-runCtx.Done():
				return
			}
			if err != nil {
				return
			}
		}
	})
	defer func() {
		cancel()
		wg.Wait()
		for _, l := range d.lanes {
			close(l.in)
		}
		d.laneWG.Wait()
		d.res.PagesSent = d.applied.Load()
		d.res.LogicalBytes = d.applied.Load() * int64(d.hello.PageSize)
		if err != nil {
			err = d.cleanup(ctx, err)
		}
		for _, c := range d.closers {
			c.Close()
		}
	}()

	next := func(timeout time.Duration) (frame, error) {
		var timer <-chan time.Time
		if timeout > 0 {
			t := time.NewTimer(timeout)
			defer t.Stop()
			timer = t.C
		}
		select {
		case r := <-replies:
			if r.err != nil {
				return frame{}, classify(metrics.ErrorNetworkTimeout, fmt.Errorf("dwcp: receive: %w", r.err))
			}
			return r.f, nil
		case <-runCtx.Done():
			return frame{}, runCtx.Err()
		case <-timer:
			return frame{}, classify(metrics.ErrorNetworkTimeout, fmt.Errorf("dwcp: source silent for %v", timeout))
		}
	}

	f, err := next(d.cfg.HandshakeTimeout)
	if err != nil {
		return err
	}
	if f.typ != msgHello {
		return protoErr("expected hello, got %s", f.typ)
	}
	if err := d.accept(ctx, f.payload); err != nil {
		return err
	}
	roundStart := int64(0)
	for {
		// Between messages the source may be reading and encoding, or the
		// link may be slow; a whole ReplyTimeout of silence means it is gone.
		f, err := next(d.cfg.ReplyTimeout)
		if err != nil {
			return err
		}
		switch f.typ {
		case msgPages:
			if err := d.dispatch(f.payload); err != nil {
				return err
			}
		case msgRoundEnd:
			m, err := decodeRoundEnd(f.payload)
			if err != nil {
				return err
			}
			if err := d.barrier(); err != nil {
				return err
			}
			roundPages := uint64(d.applied.Load() - roundStart)
			roundStart = d.applied.Load()
			if m.Pages != roundPages {
				return protoErr("round %d announced %d pages, %d arrived", m.Round, m.Pages, roundPages)
			}
			d.res.Rounds = int(m.Round)
			if err := d.mc.send(ctx, msgRoundAck, roundAckMsg{Round: m.Round, Pages: roundPages, Missing: uint64(d.missing.Load())}.append); err != nil {
				return classify(metrics.ErrorNetworkTimeout, err)
			}
		case msgSwitchover:
			m, err := decodeSwitchover(f.payload)
			if err != nil {
				return err
			}
			d.res.Rounds = int(m.Round)
			if err := d.barrier(); err != nil {
				return err
			}
			hash := memoryHash(d.hashes)
			d.res.MemoryHash = hash
			v := verifiedMsg{OK: true, MemoryHash: hash}
			switch {
			case d.missing.Load() > 0:
				v = verifiedMsg{MemoryHash: hash, Reason: fmt.Sprintf("%d pages never arrived", d.missing.Load())}
			case hash != m.MemoryHash:
				v = verifiedMsg{MemoryHash: hash, Reason: "whole-memory hash differs"}
			}
			if err := d.mc.send(ctx, msgVerified, v.append); err != nil {
				return classify(metrics.ErrorNetworkTimeout, err)
			}
			if !v.OK {
				d.peerDone = true
				return classify(metrics.ErrorMemory, fmt.Errorf("%w: %s", ErrVerification, v.Reason))
			}
			d.verified = true
			d.res.Verified = true
		case msgCommit:
			if !d.verified {
				return protoErr("commit before verification")
			}
			m, err := decodeCommit(f.payload)
			if err != nil {
				return err
			}
			d.res.Epoch = m.Epoch
			done := doneMsg{OK: true}
			if own := d.cfg.Ownership; own != nil {
				if err := own.ConfirmResume(ctx, d.hello.VMID, d.cfg.NodeID, m.Epoch); err != nil {
					done = doneMsg{Reason: fmt.Sprintf("ownership registry does not confirm %s at epoch %d: %v", d.cfg.NodeID, m.Epoch, err)}
				}
			}
			if done.OK {
				if err := d.incoming.Resume(ctx); err != nil {
					done = doneMsg{Reason: err.Error()}
				} else {
					d.resumed = true
				}
			}
			serr := d.mc.send(ctx, msgDone, done.append)
			if !done.OK {
				d.peerDone = true
				return classify(metrics.ErrorMemory, fmt.Errorf("dwcp: resume guest: %s", done.Reason))
			}
			if serr != nil {
				// The guest runs here and the source committed; it learns
				// the outcome from the registry or stays paused.
				return nil
			}
			return nil
		case msgAbort:
			m, err := decodeAbort(f.payload)
			if err != nil {
				return err
			}
			d.peerDone = true
			return fmt.Errorf("%w: %s", ErrAborted, m.Reason)
		default:
			return protoErr("unexpected %s from the source", f.typ)
		}
	}
}

func (d *dest) accept(ctx context.Context, payload []byte) error {
	h, err := decodeHello(payload)
	if err != nil {
		return err
	}
	d.hello = h
	d.res.MigrationID, d.res.VMID, d.res.Version, d.res.Source = h.MigrationID, h.VMID, h.Version, h.SourceNode
	d.res.MemoryBytes = int64(h.PageSize) * int64(h.PageCount)
	reject := func(reason string) error {
		d.peerDone = true
		_ = d.mc.send(ctx, msgHelloAck, helloAckMsg{Reason: reason, DestNode: d.cfg.NodeID}.append)
		return fmt.Errorf("%w: %s", ErrRejected, reason)
	}
	if d.cfg.Incoming == nil {
		return reject("this engine does not receive migrations (no Incoming configured)")
	}
	var decs []PageDecoder
	for range h.Lanes {
		dec, err := d.cfg.Codecs.NewDecoder(h.Codec, int(h.PageSize))
		if err != nil {
			return reject(fmt.Sprintf("codec %d: %v", h.Codec, err))
		}
		if c, ok := dec.(io.Closer); ok {
			d.closers = append(d.closers, c)
		}
		decs = append(decs, dec)
	}
	spec := IncomingSpec{MigrationID: h.MigrationID, VMID: h.VMID, SourceNode: h.SourceNode,
		PageSize: int(h.PageSize), PageCount: int(h.PageCount), Version: h.Version}
	in, err := d.cfg.Incoming(ctx, spec)
	if err != nil {
		return reject(fmt.Sprintf("cannot host %s: %v", h.VMID, err))
	}
	if in.PageSize() != spec.PageSize || in.PageCount() != spec.PageCount {
		_ = in.Discard()
		return reject(fmt.Sprintf("incoming memory has %d pages of %d bytes, source has %d of %d", in.PageCount(), in.PageSize(), spec.PageCount, spec.PageSize))
	}
	d.incoming = in
	d.hashes = make([]uint64, spec.PageCount)
	d.have = make([]uint64, (spec.PageCount+63)/64)
	d.missing.Store(int64(spec.PageCount))
	for i, dec := range decs {
		l := &destLane{id: i, dec: dec, in: make(chan []byte, 4)}
		d.lanes = append(d.lanes, l)
		d.laneWG.Go(func() { d.runLane(l) })
	}
	if err := d.mc.send(ctx, msgHelloAck, helloAckMsg{OK: true, DestNode: d.cfg.NodeID}.append); err != nil {
		return classify(metrics.ErrorNetworkTimeout, err)
	}
	return nil
}

// destLane decodes the frames of one source lane, in order, on its own
// goroutine. Lanes own disjoint pages (laneOf), so they write disjoint
// entries of hashes and words of have.
type destLane struct {
	id      int
	dec     PageDecoder
	in      chan []byte
	entries []pageEntry
}

// dispatch hands a pages payload to its lane.
func (d *dest) dispatch(payload []byte) error {
	if err := d.laneError(); err != nil {
		return err
	}
	if len(payload) < 5 {
		return protoErr("pages: truncated payload of %d bytes", len(payload))
	}
	lane := int(payload[4])
	if lane >= len(d.lanes) {
		return protoErr("pages: lane %d of %d", lane, len(d.lanes))
	}
	d.pending.Add(1)
	d.lanes[lane].in <- payload
	return nil
}

// barrier waits until every dispatched frame is applied.
func (d *dest) barrier() error {
	d.pending.Wait()
	return d.laneError()
}

func (d *dest) laneError() error {
	d.laneMu.Lock()
	defer d.laneMu.Unlock()
	return d.laneErr
}

func (d *dest) runLane(l *destLane) {
	for payload := range l.in {
		if d.laneError() == nil {
			if err := d.applyPages(l, payload); err != nil {
				d.laneMu.Lock()
				if d.laneErr == nil {
					d.laneErr = err
				}
				d.laneMu.Unlock()
			}
		}
		d.pending.Done()
	}
}

// applyPages decodes one batch, checks every page against the source's
// hash and writes it.
func (d *dest) applyPages(l *destLane, payload []byte) error {
	m, err := decodePages(payload, d.hello.PageCount, len(d.lanes), l.entries)
	if err != nil {
		return err
	}
	l.entries = m.Entries[:0]
	ps := int(d.hello.PageSize)
	i := 0
	err = l.dec.DecodeBatch(m.Frame, func(index int, data []byte) error {
		if i >= len(m.Entries) {
			return protoErr("codec frame holds more pages than the %d announced", len(m.Entries))
		}
		e := m.Entries[i]
		if index != int(e.Index) {
			return protoErr("codec frame page %d is %d, announced %d", i, index, e.Index)
		}
		if len(data) != ps {
			return protoErr("page %d decoded to %d bytes, want %d", index, len(data), ps)
		}
		h := xxhash.Sum64(data)
		if h != e.Hash {
			return classify(metrics.ErrorMemory, fmt.Errorf("%w: page %d decoded with hash %016x, source sent %016x", ErrVerification, index, h, e.Hash))
		}
		if err := d.incoming.WritePage(index, data); err != nil {
			return classify(metrics.ErrorMemory, fmt.Errorf("dwcp: write page %d: %w", index, err))
		}
		d.hashes[index] = h
		if w, bit := &d.have[index/64], uint64(1)<<(index%64); *w&bit == 0 {
			*w |= bit
			d.missing.Add(-1)
		}
		i++
		return nil
	})
	if err != nil {
		var ce *classifiedError
		if !errors.As(err, &ce) && !errors.Is(err, ErrProtocol) {
			err = classify(metrics.ErrorCompression, fmt.Errorf("dwcp: decode batch: %w", err))
		}
		return err
	}
	if i != len(m.Entries) {
		return protoErr("codec frame holds %d pages, %d announced", i, len(m.Entries))
	}
	d.applied.Add(int64(i))
	return nil
}

// cleanup runs when the migration failed here: tell the source (unless it
// told us), and discard the copy, unless the registry says ownership has
// already moved to this node, in which case the guest must run here.
func (d *dest) cleanup(ctx context.Context, cause error) error {
	if d.incoming == nil {
		if !d.peerDone {
			d.abort(ctx, cause)
		}
		return cause
	}
	if d.resumed {
		return cause
	}
	if d.verified && d.cfg.Ownership != nil {
		octx, cancel := context.WithTimeout(context.WithoutCancel(ctx), d.cfg.ReplyTimeout)
		defer cancel()
		owner, epoch, err := d.cfg.Ownership.Owner(octx, d.hello.VMID)
		if err == nil && owner == d.cfg.NodeID && epoch > d.hello.OwnerEpoch &&
			d.cfg.Ownership.ConfirmResume(octx, d.hello.VMID, d.cfg.NodeID, epoch) == nil {
			if d.incoming.Resume(octx) == nil {
				d.resumed = true
				d.res.Epoch = epoch
				return nil
			}
		}
	}
	if !d.peerDone {
		d.abort(ctx, cause)
	}
	_ = d.incoming.Discard()
	return cause
}

func (d *dest) abort(ctx context.Context, cause error) {
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
	defer cancel()
	_ = d.mc.send(actx, msgAbort, abortMsg{Reason: cause.Error()}.append)
}
