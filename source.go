package dwcp

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cespare/xxhash/v2"

	"github.com/dwcp/dwcp/metrics"
)

// MigrationRequest asks the engine to migrate one guest.
type MigrationRequest struct {
	VMID   string
	Memory GuestMemory
	// Destination is the transport address of the destination engine; ""
	// asks the configured Placer.
	Destination string
	// DestinationNode is the destination's node id for the ownership
	// registry; "" takes the id the destination announces.
	DestinationNode string
	// Version is V1, V3 or VersionAuto (the rollout decides).
	Version Version
	// Scenario labels dwcp_v3_migration_duration_seconds; "" classifies by
	// round-trip time and size.
	Scenario string
	// Streams: 0 lets v3 adapt; v1 always uses one.
	Streams int
	// Progress, when set, is called from the migrating goroutine about
	// every 100 ms and at phase changes; it must return quickly.
	Progress func(Progress)
}

func (r MigrationRequest) validate() error {
	switch {
	case r.VMID == "" || len(r.VMID) > maxString:
		return fmt.Errorf("dwcp: vm id %q must have 1..%d bytes", r.VMID, maxString)
	case r.Memory == nil:
		return errors.New("dwcp: migration request without memory")
	case r.Version != VersionAuto && r.Version != V1 && r.Version != V3:
		return fmt.Errorf("dwcp: unknown version %d", r.Version)
	case r.Scenario != "" && !validScenario(r.Scenario):
		return fmt.Errorf("dwcp: scenario %q is not one of the catalogue's", r.Scenario)
	case r.Streams < 0 || r.Streams > 256:
		return fmt.Errorf("dwcp: streams %d is outside [0, 256]", r.Streams)
	}
	if err := validPageSize(r.Memory.PageSize()); err != nil {
		return err
	}
	if n := r.Memory.PageCount(); n <= 0 || n > maxPageCount {
		return fmt.Errorf("dwcp: page count %d is outside [1, %d]", n, int64(maxPageCount))
	}
	return nil
}

// Migrate migrates req.Memory to the destination: it dials (or asks the
// Placer where to go), runs pre-copy rounds, stops the guest for the final
// copy, has the destination verify every page, hands ownership over and
// lets the destination resume. On error the guest still runs here and this
// node still owns it (except ErrCommitUnknown, see there).
func (e *Engine) Migrate(ctx context.Context, req MigrationRequest) (*Result, error) {
	if err := req.validate(); err != nil {
		return nil, err
	}
	req.Version = e.Rollout().Choose(req.VMID, req.Version)
	if req.Destination == "" {
		if e.cfg.Placer == nil {
			return nil, errors.New("dwcp: no destination given and no placer configured")
		}
		node, addr, err := e.cfg.Placer.Place(ctx, e.vmInfo(req), e.cfg.NodeID)
		if err != nil {
			return nil, fmt.Errorf("dwcp: placement: %w", err)
		}
		req.Destination, req.DestinationNode = addr, node
	}
	streams := req.Streams
	if req.Version == V1 {
		streams = 1
	}
	dctx, cancel := waitCtx(ctx, e.cfg.HandshakeTimeout)
	sess, err := e.cfg.Transport.Dial(dctx, req.Destination, streams)
	cancel()
	if err != nil {
		err = classify(metrics.ErrorNetworkTimeout, fmt.Errorf("dwcp: dial %s: %w", req.Destination, err))
		e.recordFailure(req.Version, err)
		return nil, err
	}
	defer sess.Close()
	return e.MigrateSession(ctx, sess, req)
}

func (e *Engine) vmInfo(req MigrationRequest) VMInfo {
	return VMInfo{ID: req.VMID, MemoryBytes: int64(req.Memory.PageSize()) * int64(req.Memory.PageCount())}
}

// MigrateSession is Migrate over an already open session (an in-memory
// pipe, or a connection the caller dialled). The caller closes sess.
func (e *Engine) MigrateSession(ctx context.Context, sess Session, req MigrationRequest) (*Result, error) {
	if err := req.validate(); err != nil {
		return nil, err
	}
	req.Version = e.Rollout().Choose(req.VMID, req.Version)
	e.m.ActiveMigrations.Inc()
	defer e.m.ActiveMigrations.Dec()
	s := &source{e: e, cfg: e.cfg, req: req, mem: req.Memory, sess: sess}
	res, err := s.run(ctx)
	if sla := e.cfg.SLA; sla != nil {
		sla.ObserveOperation(err != nil)
		sla.ObserveRequest(err == nil)
		if err == nil {
			sla.ObserveLatency(res.Downtime)
			sla.ObserveTransfer(uint64(res.LogicalBytes), res.Duration)
		}
	}
	if err != nil {
		e.recordFailure(req.Version, err)
		return res, err
	}
	e.m.Migrations.WithLabelValues(req.Version.String(), metrics.ResultSuccess).Inc()
	e.m.MigrationDuration.WithLabelValues(res.Scenario).Observe(res.Duration.Seconds())
	e.m.MigrationDowntime.WithLabelValues(req.Version.String()).Observe(res.Downtime.Seconds())
	return res, nil
}

func (e *Engine) recordFailure(v Version, err error) {
	e.m.Migrations.WithLabelValues(v.String(), metrics.ResultFailure).Inc()
	e.m.Errors.WithLabelValues(metrics.ComponentEngine, errorType(err)).Inc()
}

type outFrame struct {
	t   msgType
	buf []byte
}

type reply struct {
	f   frame
	err error
}

type source struct {
	e    *Engine
	cfg  Config
	req  MigrationRequest
	mem  GuestMemory
	sess Session
	mc   *msgConn
	res  *Result

	ps, n   int
	hashes  []uint64
	lanes   []*lane
	codec   uint8
	fc      BandwidthForecaster
	epoch   uint64
	rtt     time.Duration
	start   time.Time
	runCtx  context.Context
	out     chan outFrame
	free    chan []byte
	replies chan reply
	sendErr error
	sendMu  sync.Mutex

	sentPages  atomic.Int64 // pages queued, all rounds
	roundStart int64        // sentPages when the current round started
	progress   Progress
	lastProg   time.Time
	lastWire   int64
	lastBusy   int64
	lastRate   float64
	sendBusy   atomic.Int64 // nanoseconds the sender spent in the transport

	throttle   int
	planned    bool
	handedOver bool
}

func (s *source) run(ctx context.Context) (res *Result, err error) {
	s.start = time.Now()
	s.ps, s.n = s.mem.PageSize(), s.mem.PageCount()
	s.res = &Result{
		MigrationID: newMigrationID(),
		VMID:        s.req.VMID,
		Version:     s.req.Version,
		Source:      s.cfg.NodeID,
		Destination: s.req.DestinationNode,
		MemoryBytes: int64(s.ps) * int64(s.n),
	}
	res = s.res
	v := s.req.Version.String()
	s.mc = newMsgConn(s.sess)
	defer func() {
		res.PagesSent = s.sentPages.Load()
		res.LogicalBytes = res.PagesSent * int64(s.ps)
		res.WireBytes = s.mc.wireSent.Load() + s.mc.wireRecv.Load()
		res.Duration = time.Since(s.start)
		s.e.m.MigrationBytes.WithLabelValues(v, metrics.BytesWire).Add(float64(res.WireBytes))
		s.e.m.MigrationBytes.WithLabelValues(v, metrics.BytesLogical).Add(float64(res.LogicalBytes))
	}()

	if own := s.cfg.Ownership; own != nil {
		owner, epoch, err := own.Owner(ctx, s.req.VMID)
		if err != nil {
			return res, classify(metrics.ErrorConsensusFailure, fmt.Errorf("dwcp: ownership lookup: %w", err))
		}
		if owner != "" && owner != s.cfg.NodeID {
			return res, classify(metrics.ErrorConsensusFailure, fmt.Errorf("%w: %s is owned by %q at epoch %d", ErrNotOwner, s.req.VMID, owner, epoch))
		}
		s.epoch = epoch
		res.Epoch = epoch
	}

	nLanes := 1
	if s.req.Version == V3 {
		nLanes = s.cfg.Lanes
	}
	for i := range nLanes {
		enc, codec, err := s.cfg.Codecs.NewEncoder(s.req.Version, s.ps)
		if err != nil {
			return res, classify(metrics.ErrorCompression, fmt.Errorf("dwcp: encoder for %s: %w", s.req.Version, err))
		}
		if c, ok := enc.(io.Closer); ok {
			defer c.Close()
		}
		s.codec = codec
		s.lanes = append(s.lanes, &lane{
			id: i, enc: enc,
			pageBuf: make([]byte, s.cfg.BatchPages*s.ps),
			pages:   make([]Page, s.cfg.BatchPages),
			entries: make([]pageEntry, s.cfg.BatchPages),
		})
	}
	if s.cfg.NewForecaster != nil {
		s.fc = s.cfg.NewForecaster(s.req.Version)
	}
	if s.fc == nil {
		s.fc = &LastRoundRate{}
	}

	runCtx, cancel := context.WithCancel(ctx)
	s.runCtx = runCtx
	s.out = make(chan outFrame, s.cfg.Pipeline)
	s.free = make(chan []byte, s.cfg.Pipeline+2)
	s.replies = make(chan reply, 4)
	var wg sync.WaitGroup
	wg.Go(func() { s.sender(runCtx, cancel) })
	wg.Go(func() { s.receiver(runCtx) })
	defer func() {
		close(s.out)
		cancel()
		wg.Wait()
		if err != nil {
			s.fail(ctx, err)
		}
	}()

	if err := s.handshake(); err != nil {
		return res, err
	}
	if own := s.cfg.Ownership; own != nil {
		if s.res.Destination == "" || s.res.Destination == s.cfg.NodeID {
			return res, classify(metrics.ErrorConsensusFailure, fmt.Errorf("dwcp: destination node %q cannot take ownership from %q", s.res.Destination, s.cfg.NodeID))
		}
		if err := own.Plan(ctx, s.req.VMID, s.cfg.NodeID, s.res.Destination); err != nil {
			return res, classify(metrics.ErrorConsensusFailure, fmt.Errorf("dwcp: plan migration in the ownership registry: %w", err))
		}
		s.planned = true
		_, epoch, err := own.Owner(ctx, s.req.VMID)
		if err != nil {
			return res, classify(metrics.ErrorConsensusFailure, fmt.Errorf("dwcp: ownership lookup: %w", err))
		}
		s.epoch = epoch
		res.Epoch = epoch
	}
	return res, s.precopy(ctx)
}

// fail restores the source after an error: the guest runs, unthrottled,
// and the destination is told (best effort) to discard its copy.
func (s *source) fail(ctx context.Context, err error) {
	if errors.Is(err, ErrCommitUnknown) || s.handedOver {
		return
	}
	// The guest runs again first: no handover happened, so it is still
	// ours, and the registry's abort may wait for consensus.
	if t, ok := s.mem.(Throttler); ok {
		t.SetThrottle(0)
	}
	_ = s.mem.Resume(context.WithoutCancel(ctx))
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
	_ = s.mc.send(actx, msgAbort, abortMsg{Reason: err.Error()}.append)
	cancel()
	if s.planned {
		actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.ReplyTimeout)
		if aerr := s.cfg.Ownership.Abort(actx, s.req.VMID); aerr != nil {
			s.e.m.Errors.WithLabelValues(metrics.ComponentEngine, metrics.ErrorConsensusFailure).Inc()
		}
		cancel()
	}
}

func (s *source) sender(ctx context.Context, cancel context.CancelFunc) {
	for f := range s.out {
		if ctx.Err() != nil {
			continue
		}
		t0 := time.Now()
		buf, err := s.mc.sendFrame(ctx, f.t, f.buf)
		s.sendBusy.Add(int64(time.Since(t0)))
		if err != nil {
			s.sendMu.Lock()
			s.sendErr = err
			s.sendMu.Unlock()
			cancel()
			continue
		}
		select {
		case s.free <- buf[:0]:
		default:
		}
	}
}

func (s *source) receiver(ctx context.Context) {
	for {
		f, err := s.mc.recv(ctx)
		select {
		case s.replies <- reply{f, err}:
		case <-ctx.Done():
			return
		}
		if err != nil {
			return
		}
	}
}

// stopped explains why runCtx ended: the sender's error, else the caller's.
func (s *source) stopped() error {
	s.sendMu.Lock()
	err := s.sendErr
	s.sendMu.Unlock()
	if err != nil {
		return classify(metrics.ErrorNetworkTimeout, fmt.Errorf("dwcp: send: %w", err))
	}
	return s.runCtx.Err()
}

func (s *source) push(t msgType, buf []byte) error {
	select {
	case s.out <- outFrame{t, buf}:
		return nil
	case <-s.runCtx.Done():
		return s.stopped()
	}
}

func (s *source) pushControl(t msgType, appendPayload func([]byte) []byte) error {
	return s.push(t, appendPayload(startFrame(nil)))
}

// await waits for the next message from the destination, which must be of
// type want (an abort becomes ErrAborted).
func (s *source) await(want msgType, timeout time.Duration) (frame, error) {
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case r := <-s.replies:
		if r.err != nil {
			if s.runCtx.Err() != nil {
				return frame{}, s.stopped()
			}
			return frame{}, classify(metrics.ErrorNetworkTimeout, fmt.Errorf("dwcp: waiting for %s: %w", want, r.err))
		}
		if r.f.typ == msgAbort {
			a, err := decodeAbort(r.f.payload)
			if err != nil {
				return frame{}, err
			}
			return frame{}, fmt.Errorf("%w: %s", ErrAborted, a.Reason)
		}
		if r.f.typ != want {
			return frame{}, protoErr("expected %s, got %s", want, r.f.typ)
		}
		return r.f, nil
	case <-s.runCtx.Done():
		return frame{}, s.stopped()
	case <-timer.C:
		return frame{}, classify(metrics.ErrorNetworkTimeout, fmt.Errorf("dwcp: no %s from the destination within %v", want, timeout))
	}
}

func (s *source) handshake() error {
	s.report(PhaseHandshake, true)
	h := helloMsg{
		MigrationID: s.res.MigrationID, VMID: s.req.VMID, SourceNode: s.cfg.NodeID,
		Version: s.req.Version, Codec: s.codec, Lanes: uint8(len(s.lanes)),
		PageSize: uint32(s.ps), PageCount: uint32(s.n), OwnerEpoch: s.epoch,
	}
	t0 := time.Now()
	if err := s.pushControl(msgHello, h.append); err != nil {
		return err
	}
	f, err := s.await(msgHelloAck, s.cfg.HandshakeTimeout)
	if err != nil {
		return err
	}
	s.rtt = time.Since(t0)
	ack, err := decodeHelloAck(f.payload)
	if err != nil {
		return err
	}
	if !ack.OK {
		return fmt.Errorf("%w: %s", ErrRejected, ack.Reason)
	}
	if s.res.Destination == "" {
		s.res.Destination = ack.DestNode
	}
	s.res.Scenario = s.req.Scenario
	if s.res.Scenario == "" {
		s.res.Scenario = classifyScenario(s.rtt, s.res.MemoryBytes)
	}
	return nil
}

func (s *source) precopy(ctx context.Context) error {
	s.hashes = make([]uint64, s.n)
	s.mem.CollectDirty(nil) // everything is sent in round 1
	pages := make([]int, s.n)
	for i := range pages {
		pages[i] = i
	}
	var dirty []int
	ac := s.cfg.AutoConverge
	throttler, canThrottle := s.mem.(Throttler)
	high, stuck := 0, 0
	for round := 1; ; round++ {
		stat, err := s.round(round, pages)
		if err != nil {
			return err
		}
		dirty = s.mem.CollectDirty(dirty[:0])
		stat.DirtyAfter = len(dirty)
		stat.Throttle = s.throttle

		predicted, bw := s.predict(stat, len(dirty))
		stat.Forecast = bw
		stat.PredictedEnd = predicted
		s.res.RoundStats = append(s.res.RoundStats, stat)
		s.res.Rounds = round
		s.progress.DirtyPages = len(dirty)

		if len(dirty) == 0 || predicted <= s.cfg.DowntimeTarget {
			return s.stopAndCopy(ctx, round+1, dirty)
		}
		if float64(len(dirty)) > ac.TriggerRatio*float64(stat.Pages) {
			high++
		} else {
			high = 0
		}
		if high >= 2 {
			if canThrottle && s.throttle < ac.Max {
				if s.throttle == 0 {
					s.throttle = max(ac.Initial, 1)
				} else {
					s.throttle = min(s.throttle+max(ac.Increment, 1), ac.Max)
				}
				throttler.SetThrottle(s.throttle)
				s.res.MaxThrottle = max(s.res.MaxThrottle, s.throttle)
				high = 0
			} else {
				stuck++
				if stuck > ac.RoundsAtMax {
					return classify(metrics.ErrorMemory, fmt.Errorf("%w: after %d rounds at %d%% throttle the guest still dirties %d pages per round (%.0f%% of what a round sends); predicted final copy %v exceeds the %v downtime target",
						ErrNotConverged, round, s.throttle, len(dirty), 100*float64(len(dirty))/float64(max(stat.Pages, 1)), predicted.Round(time.Millisecond), s.cfg.DowntimeTarget))
				}
			}
		}
		if round >= s.cfg.MaxRounds {
			return classify(metrics.ErrorMemory, fmt.Errorf("%w: %d rounds done, %d pages still dirty, predicted final copy %v exceeds the %v downtime target",
				ErrNotConverged, round, len(dirty), predicted.Round(time.Millisecond), s.cfg.DowntimeTarget))
		}
		pages = append(pages[:0], dirty...)
	}
}

// predict estimates how long the final copy of dirty pages would take. v1
// divides by the last round's delivered rate. v3 takes the forecaster's
// conservative bound on the link and, because encoding and sending overlap,
// the larger of the transfer time and the CPU time the last round spent per
// page. As QEMU's expected downtime, it leaves out the fixed round trips of
// the switchover (verify, commit): on a 150 ms link they alone take 300 ms,
// and no amount of pre-copy removes them; the measured downtime includes
// them.
func (s *source) predict(stat RoundStat, dirty int) (time.Duration, float64) {
	if dirty == 0 {
		return 0, stat.Rate
	}
	wirePerPage := float64(stat.WireBytes) / float64(max(stat.Pages, 1))
	bw := stat.Rate
	cpu := 0.0
	if s.req.Version == V3 {
		if point, lower, ok := s.fc.Forecast(time.Second); ok {
			bw = lower
			if bw <= 0 {
				bw = point
			}
		}
		cpu = float64(dirty) * stat.CPU.Seconds() / float64(max(stat.Pages, 1))
	}
	if bw <= 0 {
		return time.Duration(1<<62 - 1), 0
	}
	xfer := float64(dirty) * wirePerPage / bw
	return time.Duration(max(xfer, cpu) * float64(time.Second)), bw
}

// round sends one pre-copy round and waits until the destination has
// applied it.
func (s *source) round(round int, pages []int) (RoundStat, error) {
	t0 := time.Now()
	wire0, busy0 := s.mc.wireSent.Load(), s.sendBusy.Load()
	s.progress.Round, s.progress.RoundPages = round, len(pages)
	s.roundStart = s.sentPages.Load()
	s.report(PhasePreCopy, true)
	cpu, err := s.sendPages(round, pages, PhasePreCopy)
	if err != nil {
		return RoundStat{}, err
	}
	if err := s.pushControl(msgRoundEnd, roundEndMsg{Round: uint32(round), Pages: uint64(len(pages))}.append); err != nil {
		return RoundStat{}, err
	}
	tEnd := time.Now()
	f, err := s.await(msgRoundAck, s.cfg.ReplyTimeout)
	if err != nil {
		return RoundStat{}, err
	}
	// The handshake's round trip includes the destination allocating the
	// guest; a round's end-to-acknowledgement wait bounds the path's round
	// trip too, and for short rounds it is close to it.
	s.rtt = min(s.rtt, time.Since(tEnd))
	ack, err := decodeRoundAck(f.payload)
	if err != nil {
		return RoundStat{}, err
	}
	if ack.Round != uint32(round) || ack.Pages != uint64(len(pages)) {
		return RoundStat{}, protoErr("round %d of %d pages acknowledged as round %d of %d pages", round, len(pages), ack.Round, ack.Pages)
	}
	d := time.Since(t0)
	wire := s.mc.wireSent.Load() - wire0
	st := RoundStat{Round: round, Pages: len(pages), WireBytes: wire, Duration: d, CPU: cpu}
	// The acknowledged delivery time includes one round trip that carries
	// no data; leave it out so short rounds do not look like a slow link.
	if eff := d - s.rtt; eff > d/4 {
		st.Rate = float64(wire) / eff.Seconds()
	} else {
		st.Rate = float64(wire) / (d / 4).Seconds()
	}
	if s.req.Version == V3 {
		s.fc.Observe(time.Now(), linkCapacity(wire, time.Duration(s.sendBusy.Load()-busy0), d))
	} else {
		s.fc.Observe(time.Now(), st.Rate)
	}
	s.steer()
	return st, nil
}

// linkCapacity estimates what the link could carry from bytes sent during
// an interval and the time the sender spent blocked in the transport: a
// sender that rarely waits is limited by the CPU, not the link, and its
// achieved rate would understate the link (and steer hde towards slow,
// strong codecs, which would slow it further). The estimate is capped at 8x
// the achieved rate so a transport filling its buffers cannot fake a fast
// link.
func linkCapacity(bytes int64, busy, interval time.Duration) float64 {
	if interval <= 0 {
		return 0
	}
	return float64(bytes) / max(busy, interval/8).Seconds()
}

// steer passes the forecast to the components that adapt to it (v3).
func (s *source) steer() {
	if s.req.Version != V3 {
		return
	}
	point, _, ok := s.fc.Forecast(time.Second)
	if !ok || point <= 0 {
		return
	}
	for _, l := range s.lanes {
		// Each lane has its share of the link.
		if lb, ok := l.enc.(LinkBandwidthSetter); ok {
			lb.SetLinkBandwidth(point / float64(len(s.lanes)))
		}
	}
	if h, ok := s.sess.(StreamHinter); ok && s.req.Streams == 0 {
		h.SetStreamHint(streamsFor(point, s.rtt))
	}
}

// streamsFor is the stream count a forecast bandwidth and round trip need:
// enough windows of 4 MiB (the machine's tcp_wmem max) in flight to fill the
// bandwidth-delay product, between 1 and 16 (the measured knee is about 8
// on 100G links, see anchors.md). amst treats it as a floor.
func streamsFor(bps float64, rtt time.Duration) int {
	bdp := bps * rtt.Seconds()
	return min(max(int(bdp/(4<<20))+1, 1), 16)
}

// lane is one encoder with its buffers. v3 splits each round's pages over
// several lanes by 64-page chunk (laneOf), encoded in parallel like QEMU's
// multifd channels; a page always goes through the same lane, so each
// lane's encoder keeps the previous versions its deltas refer to. v1 has one
// lane.
type lane struct {
	id      int
	enc     PageEncoder
	pageBuf []byte
	pages   []Page
	entries []pageEntry
	cpu     time.Duration // reading, hashing and encoding
	work    []int
}

// laneOf assigns pages to lanes in 64-page chunks: one chunk is one word of
// the destination's arrival bitmap, so lanes never share a word.
func laneOf(page, lanes int) int { return (page / 64) % lanes }

// sendPages reads, hashes and encodes pages and queues the frames; it
// returns the critical path of the CPU work (the slowest lane).
func (s *source) sendPages(round int, pages []int, phase Phase) (time.Duration, error) {
	if len(s.lanes) == 1 {
		l := s.lanes[0]
		cpu0 := l.cpu
		err := s.encodeLane(l, round, pages, func() { s.report(phase, false) })
		return l.cpu - cpu0, err
	}
	for _, l := range s.lanes {
		l.work = l.work[:0]
	}
	for _, p := range pages {
		l := s.lanes[laneOf(p, len(s.lanes))]
		l.work = append(l.work, p)
	}
	cpu0 := make([]time.Duration, len(s.lanes))
	errs := make([]error, len(s.lanes))
	var wg sync.WaitGroup
	for i, l := range s.lanes {
		cpu0[i] = l.cpu
		if len(l.work) > 0 {
			wg.Go(func() { errs[i] = s.encodeLane(l, round, l.work, nil) })
		}
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	tick := time.NewTicker(s.cfg.SampleInterval)
	defer tick.Stop()
	for waiting := true; waiting; {
		select {
		case <-done:
			waiting = false
		case <-tick.C:
			s.report(phase, false)
		}
	}
	var cpu time.Duration
	for i, l := range s.lanes {
		cpu = max(cpu, l.cpu-cpu0[i])
	}
	return cpu, errors.Join(errs...)
}

// encodeLane encodes pages (all of lane l) in batches. It runs on its own
// goroutine when there are several lanes: it writes only its pages' hashes.
func (s *source) encodeLane(l *lane, round int, pages []int, afterBatch func()) error {
	for i := 0; i < len(pages); i += s.cfg.BatchPages {
		t0 := time.Now()
		idx := pages[i:min(i+s.cfg.BatchPages, len(pages))]
		batch := l.pages[:len(idx)]
		entries := l.entries[:len(idx)]
		for j, p := range idx {
			data := l.pageBuf[j*s.ps : (j+1)*s.ps]
			if err := s.mem.ReadPage(p, data); err != nil {
				return classify(metrics.ErrorMemory, fmt.Errorf("dwcp: read page %d: %w", p, err))
			}
			h := xxhash.Sum64(data)
			s.hashes[p] = h
			entries[j] = pageEntry{Index: uint32(p), Hash: h}
			batch[j] = Page{Index: p, Data: data}
		}
		var buf []byte
		select {
		case buf = <-s.free:
		default:
		}
		buf = appendPagesHeader(startFrame(buf), uint32(round), uint8(l.id), entries)
		buf, err := l.enc.EncodeBatch(buf, batch)
		if err != nil {
			return classify(metrics.ErrorCompression, fmt.Errorf("dwcp: encode round %d: %w", round, err))
		}
		l.cpu += time.Since(t0)
		if err := s.push(msgPages, buf); err != nil {
			return err
		}
		s.sentPages.Add(int64(len(idx)))
		if afterBatch != nil {
			afterBatch()
		}
	}
	return nil
}

// report refreshes the progress snapshot, feeds v3's forecaster with the
// send rate, and calls the progress callback (at most every
// SampleInterval unless force).
func (s *source) report(phase Phase, force bool) {
	now := time.Now()
	since := now.Sub(s.lastProg)
	if !force && since < s.cfg.SampleInterval {
		return
	}
	wire, busy := s.mc.wireSent.Load(), s.sendBusy.Load()
	if !s.lastProg.IsZero() && since > 0 && wire > s.lastWire {
		s.lastRate = float64(wire-s.lastWire) / since.Seconds()
		if s.req.Version == V3 && phase == PhasePreCopy && since >= s.cfg.SampleInterval/2 {
			s.fc.Observe(now, linkCapacity(wire-s.lastWire, time.Duration(busy-s.lastBusy), since))
			s.steer()
		}
	}
	s.lastProg, s.lastWire, s.lastBusy = now, wire, busy
	if sc, ok := s.sess.(StreamCounter); ok {
		p := &s.progress
		p.Streams = sc.Streams()
		s.res.Streams = max(s.res.Streams, p.Streams)
	}
	p := &s.progress
	sent := s.sentPages.Load()
	s.res.PagesSent = sent
	s.res.LogicalBytes = sent * int64(s.ps)
	p.RoundPagesSent = int(sent - s.roundStart)
	p.Phase = phase
	p.TotalPages = s.n
	p.LogicalBytes = s.res.LogicalBytes
	p.WireBytes = s.mc.wireSent.Load() + s.mc.wireRecv.Load()
	p.Elapsed = now.Sub(s.start)
	p.WireRate = s.lastRate
	p.Throttle = s.throttle
	if s.req.Progress != nil {
		s.req.Progress(*p)
	}
}

// memoryHash is the whole-memory hash both sides compute: xxhash64 of the
// per-page hashes, little-endian, in page order.
func memoryHash(hashes []uint64) uint64 {
	d := xxhash.New()
	var buf [8 * 512]byte
	for i := 0; i < len(hashes); i += 512 {
		chunk := hashes[i:min(i+512, len(hashes))]
		for j, h := range chunk {
			binary.LittleEndian.PutUint64(buf[j*8:], h)
		}
		d.Write(buf[:8*len(chunk)])
	}
	return d.Sum64()
}

func (s *source) stopAndCopy(ctx context.Context, round int, dirty []int) error {
	tPause := time.Now()
	if err := s.mem.Pause(ctx); err != nil {
		return classify(metrics.ErrorMemory, fmt.Errorf("dwcp: pause guest: %w", err))
	}
	final := s.mem.CollectDirty(nil)
	final = append(final, dirty...)
	slices.Sort(final)
	final = slices.Compact(final)
	s.progress.Round, s.progress.RoundPages = round, len(final)
	s.roundStart = s.sentPages.Load()
	s.report(PhaseStopAndCopy, true)
	if _, err := s.sendPages(round, final, PhaseStopAndCopy); err != nil {
		return err
	}
	s.res.Rounds = round
	hash := memoryHash(s.hashes)
	s.res.MemoryHash = hash
	if err := s.pushControl(msgSwitchover, switchoverMsg{Round: uint32(round), MemoryHash: hash}.append); err != nil {
		return err
	}
	s.report(PhaseVerify, true)
	f, err := s.await(msgVerified, s.cfg.ReplyTimeout)
	if err != nil {
		return err
	}
	ver, err := decodeVerified(f.payload)
	if err != nil {
		return err
	}
	if !ver.OK || ver.MemoryHash != hash {
		return classify(metrics.ErrorMemory, fmt.Errorf("%w: %s (source hash %016x, destination %016x)", ErrVerification, ver.Reason, hash, ver.MemoryHash))
	}
	s.res.Verified = true

	s.report(PhaseCommit, true)
	epoch, err := s.handover(ctx)
	if err != nil {
		return err
	}
	s.res.Epoch = epoch
	if err := s.pushControl(msgCommit, commitMsg{Epoch: epoch}.append); err != nil {
		return s.commitUnconfirmed(ctx, err)
	}
	f, err = s.await(msgDone, s.cfg.ReplyTimeout)
	if err != nil {
		return s.commitUnconfirmed(ctx, err)
	}
	done, err := decodeDone(f.payload)
	if err != nil {
		return s.commitUnconfirmed(ctx, err)
	}
	if !done.OK {
		return s.commitUnconfirmed(ctx, fmt.Errorf("destination could not resume: %s", done.Reason))
	}
	s.res.Downtime = time.Since(tPause)
	if t, ok := s.mem.(Throttler); ok {
		t.SetThrottle(0)
	}
	s.report(PhaseDone, true)
	if st := s.cfg.State; st != nil {
		if err := st.RecordMigration(ctx, VMInfo{ID: s.req.VMID, MemoryBytes: s.res.MemoryBytes}, s.cfg.NodeID, s.res.Destination); err != nil {
			// The migration itself succeeded; the replicated view catches up
			// by anti-entropy, so this is counted, not failed.
			s.e.m.Errors.WithLabelValues(metrics.ComponentEngine, metrics.ErrorStateSync).Inc()
		}
	}
	return nil
}

// handover moves ownership to the destination when a registry is
// configured; without one the commit message is the handover.
func (s *source) handover(ctx context.Context) (uint64, error) {
	own := s.cfg.Ownership
	if own == nil {
		return s.epoch + 1, nil
	}
	epoch, err := own.Handover(ctx, s.req.VMID, s.cfg.NodeID, s.res.Destination)
	if err == nil {
		s.handedOver = true
		return epoch, nil
	}
	// The handover may have committed even though we saw an error. The
	// source may only run again if consensus confirms it still owns the VM
	// at its epoch; otherwise it stays paused.
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.ReplyTimeout)
	defer cancel()
	if cerr := own.ConfirmResume(cctx, s.req.VMID, s.cfg.NodeID, s.epoch); cerr == nil {
		return 0, classify(metrics.ErrorConsensusFailure, fmt.Errorf("dwcp: ownership handover: %w", err))
	} else {
		return 0, classify(metrics.ErrorConsensusFailure, fmt.Errorf("%w: ownership handover failed (%v) and the source cannot confirm it still owns the VM (%v)", ErrCommitUnknown, err, cerr))
	}
}

// commitUnconfirmed handles a commit whose outcome the source did not see.
// With a registry the registry decides (ownership has already moved, so the
// destination runs the guest); without one the source stays paused.
func (s *source) commitUnconfirmed(ctx context.Context, cause error) error {
	if s.cfg.Ownership != nil {
		owner, _, err := s.cfg.Ownership.Owner(context.WithoutCancel(ctx), s.req.VMID)
		if err == nil && owner == s.res.Destination {
			s.res.Downtime = 0
			return classify(metrics.ErrorNetworkTimeout, fmt.Errorf("%w: ownership moved to %s (it resumes on its own), but its confirmation was lost: %v", ErrCommitUnknown, owner, cause))
		}
	}
	return classify(metrics.ErrorNetworkTimeout, fmt.Errorf("%w: %v", ErrCommitUnknown, cause))
}
