package ass

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"sync"
	"time"

	"github.com/dwcp/dwcp/metrics"
)

// Writer is handed to Update's mutate function: the actor id and the hybrid
// logical clock that the CRDT mutators need.
type Writer struct {
	Node  string // actor id to pass to mutators that take a node
	clock *Clock
}

// Now returns a fresh timestamp for LWWRegister.Set.
func (w Writer) Now() Timestamp { return w.clock.Now() }

// Replica holds one copy of a replicated OR-Map of CRDTs and keeps it in sync
// with its peers. Local updates return once durable (with DataDir) and are
// shipped to every peer as delta intervals, which peers acknowledge once they
// hold them durably; unacknowledged deltas are retransmitted. Periodic digest
// exchanges repair whatever the delta path missed (a peer that was
// partitioned past the buffer limit, restarted, or reachable only through
// others). All methods are safe for concurrent use.
type Replica struct {
	cfg   Config
	m     *metrics.Metrics
	actor string // the id in this replica's dots and timestamps
	inc   uint64 // incarnation: new on every NewReplica
	clock *Clock
	tr    Transport
	addr  string
	store *store // nil when memory only

	mu          sync.Mutex
	state       *ORMap
	index       *digestIndex
	buf         []bufDelta // deltas not yet acknowledged by every peer
	bufBase     uint64     // seq of buf[0]
	next        uint64     // seq of the next local delta
	durable     uint64     // local deltas below this seq are durable
	bufBytes    int
	peers       map[string]*peerState
	peerOrder   []string
	recv        map[senderID]uint64 // per sender incarnation: every delta below is held here
	sessions    map[uint64]*digestSession
	nextSession uint64
	rr          int
	lastDigest  time.Time
	lastGauge   time.Time
	cache       cachedFrame
	scratch     encoder // reused for encodings that do not outlive the lock
	started     bool
	closed      bool

	snapMu       sync.Mutex // one snapshot at a time
	snapFailedAt time.Time  // last failed automatic snapshot, to back off

	kick      chan struct{}
	closing   chan struct{}
	closeOnce sync.Once
	closeErr  error
	wg        sync.WaitGroup
}

type bufDelta struct {
	seq  uint64
	enc  []byte // canonical encoding of the delta (an OR-Map value)
	size int    // len(enc)
	cum  int    // encoded bytes of this and every earlier delta ever buffered
}

type peerState struct {
	addr        string
	acked, sent uint64    // every delta below acked is held by the peer; below sent was sent
	waitSince   time.Time // when the oldest unacknowledged send went out
	baseline    bool      // intervals must tell the peer to skip a gap (deltas evicted)
	inflight    []sentInterval
	digestDue   bool
	lastAck     time.Time
}

type sentInterval struct {
	to uint64
	at time.Time
}

type senderID struct {
	node string
	inc  uint64
}

type digestSession struct {
	peer  string
	level uint8
	start time.Time
}

type cachedFrame struct {
	from, to uint64
	baseline bool
	frame    []byte
}

type outFrame struct {
	addr  string
	frame []byte
}

// NewReplica builds a replica: it recovers the state from cfg.DataDir and
// opens the transport (listening on cfg.ListenAddr unless cfg.Transport is
// set). m may be nil. Call Start to begin syncing and Close when done.
func NewReplica(cfg Config, m *metrics.Metrics) (*Replica, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	cfg.Peers = append([]string(nil), cfg.Peers...)
	if m == nil {
		m = metrics.New(nil)
	}
	var incb [8]byte
	if _, err := rand.Read(incb[:]); err != nil {
		return nil, fmt.Errorf("ass: incarnation: %w", err)
	}
	r := &Replica{
		cfg: cfg, m: m, inc: binary.BigEndian.Uint64(incb[:]),
		state: NewORMap(), index: newDigestIndex(),
		peers: map[string]*peerState{}, recv: map[senderID]uint64{}, sessions: map[uint64]*digestSession{},
		kick: make(chan struct{}, 1), closing: make(chan struct{}),
	}
	r.actor = cfg.NodeID
	if cfg.DataDir != "" {
		st, state, err := openStore(cfg.DataDir)
		if err != nil {
			return nil, err
		}
		r.store, r.state = st, state
		for k := range state.entries {
			r.index.touch(k)
		}
		r.index.refresh(state)
	} else {
		// A memory-only replica forgets its dots when it restarts; a fresh
		// actor id per incarnation keeps it from reusing them.
		r.actor = cfg.NodeID + "#" + hex.EncodeToString(incb[:4])
	}
	r.clock = NewClock(r.actor, cfg.Now)
	r.tr = cfg.Transport
	if r.tr == nil {
		tc := DefaultTCPConfig(cfg.ListenAddr)
		tc.TLS = cfg.TLS
		tc.MaxFrameBytes = cfg.MaxFrameBytes
		tr, err := NewTCPTransport(tc)
		if err != nil {
			if r.store != nil {
				r.store.close()
			}
			return nil, err
		}
		r.tr = tr
	}
	r.addr = cfg.AdvertiseAddr
	if r.addr == "" {
		r.addr = r.tr.Addr()
	}
	for _, p := range cfg.Peers {
		if p == r.addr {
			continue
		}
		r.peers[p] = &peerState{addr: p, digestDue: true}
		r.peerOrder = append(r.peerOrder, p)
	}
	m.ASSStateSize.Set(float64(r.index.size))
	return r, nil
}

// Addr returns the address peers reach this replica at.
func (r *Replica) Addr() string { return r.addr }

// NodeID returns the configured node id.
func (r *Replica) NodeID() string { return r.cfg.NodeID }

// Start starts the transport and the sync loop, and schedules a digest
// exchange with every peer so that a restarted replica catches up.
func (r *Replica) Start(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return ErrClosed
	}
	if r.started {
		r.mu.Unlock()
		return fmt.Errorf("ass: replica %s started twice", r.cfg.NodeID)
	}
	r.started = true
	r.mu.Unlock()
	if err := r.tr.Start(r.handleFrame); err != nil {
		return err
	}
	r.m.ComponentHealth.WithLabelValues(metrics.ComponentASS).Set(1)
	r.wg.Add(1)
	go r.run()
	return nil
}

func (r *Replica) run() {
	defer r.wg.Done()
	t := time.NewTicker(r.cfg.SyncInterval)
	defer t.Stop()
	r.tick(r.cfg.Now())
	for {
		select {
		case <-r.closing:
			return
		case <-t.C:
			r.tick(r.cfg.Now())
		case <-r.kick:
			r.flush(r.cfg.Now())
		}
	}
}

// Close stops syncing, closes the transport and the data files, and waits
// for every goroutine. It is safe to call more than once.
func (r *Replica) Close() error {
	r.closeOnce.Do(func() {
		r.mu.Lock()
		r.closed = true
		r.mu.Unlock()
		close(r.closing)
		r.wg.Wait()
		err := r.tr.Close()
		if r.store != nil {
			if serr := r.store.close(); err == nil {
				err = serr
			}
		}
		r.m.ComponentHealth.WithLabelValues(metrics.ComponentASS).Set(0)
		r.closeErr = err
	})
	return r.closeErr
}

func (r *Replica) signal() {
	select {
	case r.kick <- struct{}{}:
	default:
	}
}

// Update applies one local mutation to key, creating it with type t if
// absent, and returns once the change is durable (with DataDir) and queued
// for every peer. mutate must call one mutator of v (its concrete type is t)
// and return the delta that mutator returned; it runs under the replica's
// lock, so it must not call the replica.
func (r *Replica) Update(ctx context.Context, key string, t Type, mutate func(w Writer, v CRDT) CRDT) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return ErrClosed
	}
	w := Writer{Node: r.actor, clock: r.clock}
	delta, err := r.state.Update(r.actor, key, t, func(v CRDT) CRDT { return mutate(w, v) })
	if err != nil {
		r.mu.Unlock()
		return err
	}
	seq, pos, err := r.recordLocal(delta)
	r.mu.Unlock()
	if err != nil {
		r.stateSyncError()
		return err
	}
	r.m.ASSCRDTOperations.WithLabelValues(t.String()).Inc()
	return r.commit(ctx, seq, pos)
}

// Remove deletes key (the updates of it this replica has seen).
func (r *Replica) Remove(ctx context.Context, key string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return ErrClosed
	}
	delta := r.state.Remove(key)
	if len(delta.entries) == 0 {
		r.mu.Unlock()
		return nil
	}
	seq, pos, err := r.recordLocal(delta)
	r.mu.Unlock()
	if err != nil {
		r.stateSyncError()
		return err
	}
	r.m.ASSCRDTOperations.WithLabelValues(TypeORMap.String()).Inc()
	return r.commit(ctx, seq, pos)
}

// recordLocal indexes, logs and buffers a local delta. Called with r.mu held.
func (r *Replica) recordLocal(delta *ORMap) (seq uint64, pos int64, err error) {
	for k := range delta.entries {
		r.index.touch(k)
	}
	r.scratch.buf = r.scratch.buf[:0]
	r.scratch.value(delta)
	enc := append([]byte(nil), r.scratch.buf...)
	if r.store != nil {
		if pos, err = r.store.append(enc); err != nil {
			return 0, 0, err
		}
	}
	seq = r.next
	r.next++
	cum := len(enc)
	if n := len(r.buf); n > 0 {
		cum += r.buf[n-1].cum
	} else {
		r.bufBase = seq
	}
	r.buf = append(r.buf, bufDelta{seq: seq, enc: enc, size: len(enc), cum: cum})
	r.bufBytes += len(enc)
	if r.store == nil {
		r.durable = r.next
	}
	return seq, pos, nil
}

// commit waits for a local delta to be durable, then lets the sender ship it.
func (r *Replica) commit(ctx context.Context, seq uint64, pos int64) error {
	if r.store != nil {
		if err := r.store.sync(pos); err != nil {
			r.stateSyncError()
			return err
		}
		r.mu.Lock()
		if seq+1 > r.durable {
			r.durable = seq + 1
		}
		r.mu.Unlock()
	}
	r.signal()
	return nil
}

// Get returns a copy of the value of key.
func (r *Replica) Get(key string) (CRDT, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	v, ok := r.state.Get(key)
	if !ok {
		return nil, false
	}
	return v.Clone(), true
}

// Keys returns the present keys with the given prefix, sorted.
func (r *Replica) Keys(prefix string) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.state.Keys(prefix)
}

// View calls fn with the replica's state under its lock, for reads of many
// keys at one consistent point. fn must not modify the map or keep
// references into it, and must not call the replica.
func (r *Replica) View(fn func(state *ORMap)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	fn(r.state)
}

// SetRegister writes value to the LWW register at key.
func (r *Replica) SetRegister(ctx context.Context, key string, value []byte) error {
	return r.Update(ctx, key, TypeLWWRegister, func(w Writer, v CRDT) CRDT {
		return v.(*LWWRegister).Set(w.Now(), value)
	})
}

// Register returns the value of the LWW register at key.
func (r *Replica) Register(key string) ([]byte, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	v, ok := r.state.Get(key)
	if !ok {
		return nil, false
	}
	reg, ok := v.(*LWWRegister)
	if !ok {
		return nil, false
	}
	return reg.Value(), true
}

// Stats is a point-in-time summary of a replica.
type Stats struct {
	Keys          int    // present keys
	StateBytes    int64  // canonical encoding size of every key's entry
	BufferedBytes int    // encoded deltas kept for unacknowledged peers
	NextSeq       uint64 // local deltas made by this incarnation
	Peers         []PeerStats
}

// PeerStats is what a replica knows about one peer.
type PeerStats struct {
	Addr  string
	Acked uint64 // local deltas the peer has acknowledged
	Sent  uint64 // local deltas sent to the peer
}

// Stats returns a summary of the replica.
func (r *Replica) Stats() Stats {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.index.refresh(r.state)
	s := Stats{Keys: r.state.Len(), StateBytes: r.index.size, BufferedBytes: r.bufBytes, NextSeq: r.next}
	for _, a := range r.peerOrder {
		p := r.peers[a]
		s.Peers = append(s.Peers, PeerStats{Addr: a, Acked: p.acked, Sent: p.sent})
	}
	return s
}

func (r *Replica) stateSyncError() {
	r.m.Errors.WithLabelValues(metrics.ComponentASS, metrics.ErrorStateSync).Inc()
}

func (r *Replica) header(kind msgKind) *message {
	return &message{kind: kind, node: r.cfg.NodeID, addr: r.addr, incarnation: r.inc}
}

func (r *Replica) send(out []outFrame) {
	for _, o := range out {
		if err := r.tr.Send(context.Background(), o.addr, o.frame); err != nil {
			r.stateSyncError()
			continue
		}
		r.m.ASSSyncBytes.WithLabelValues(metrics.DirectionSent).Add(float64(len(o.frame)))
	}
}

// tick does the periodic work: retransmissions, digests, snapshots, health.
func (r *Replica) tick(now time.Time) {
	r.flush(now)
	var out []outFrame
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return
	}
	if len(r.peerOrder) > 0 && r.cfg.DigestInterval > 0 && now.Sub(r.lastDigest) >= r.cfg.DigestInterval {
		r.lastDigest = now
		// A peer with deltas in flight is skipped this round: its digests
		// would differ by exactly those deltas and resend them.
		if p := r.peers[r.peerOrder[r.rr%len(r.peerOrder)]]; p.sent == p.acked {
			p.digestDue = true
		}
		r.rr++
	}
	lagging := 0
	for _, a := range r.peerOrder {
		p := r.peers[a]
		if p.digestDue {
			p.digestDue = false
			out = append(out, r.startDigest(p.addr, now))
		}
		if p.sent > p.acked && now.Sub(p.waitSince) > 10*r.cfg.RetransmitTimeout {
			lagging++
		}
	}
	for id, s := range r.sessions {
		if now.Sub(s.start) > 10*r.cfg.RetransmitTimeout {
			delete(r.sessions, id)
		}
	}
	if now.Sub(r.lastGauge) >= time.Second {
		r.lastGauge = now
		r.index.refresh(r.state)
		r.m.ASSStateSize.Set(float64(r.index.size))
	}
	r.mu.Unlock()
	r.send(out)

	health := 1.0
	if lagging > 0 {
		health = 0.5
	}
	if r.store != nil {
		if r.store.logSize() > r.cfg.SnapshotBytes && now.Sub(r.snapFailedAt) > 10*time.Second {
			if err := r.snapshot(); err != nil {
				r.snapFailedAt = now
				r.stateSyncError()
			}
		}
		r.store.mu.Lock()
		if r.store.failed != nil && r.store.failed != ErrClosed {
			health = 0
		}
		r.store.mu.Unlock()
	}
	r.m.ComponentHealth.WithLabelValues(metrics.ComponentASS).Set(health)
}

// Snapshot writes the state to the data directory and drops the logs it
// covers. It runs on its own when the log reaches Config.SnapshotBytes.
func (r *Replica) Snapshot(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if r.store == nil {
		return fmt.Errorf("ass: replica %s has no DataDir", r.cfg.NodeID)
	}
	return r.snapshot()
}

func (r *Replica) snapshot() error {
	r.snapMu.Lock()
	defer r.snapMu.Unlock()
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return ErrClosed
	}
	gen, err := r.store.rotate()
	if err != nil {
		r.mu.Unlock()
		return err
	}
	state := Marshal(r.state)
	r.mu.Unlock()
	return r.store.writeSnapshot(gen, state)
}

// flush sends every peer the durable deltas it has not been sent, and
// resends what a peer left unacknowledged for RetransmitTimeout.
func (r *Replica) flush(now time.Time) {
	var out []outFrame
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return
	}
	for _, a := range r.peerOrder {
		p := r.peers[a]
		if p.sent > p.acked && now.Sub(p.waitSince) >= r.cfg.RetransmitTimeout {
			p.sent = p.acked
			p.inflight = p.inflight[:0]
		}
		for p.sent < r.durable && r.bytesBetween(p.acked, p.sent) < r.cfg.MaxInflightBytes {
			to := r.batchEnd(p.sent)
			if p.sent == p.acked {
				p.waitSince = now
			}
			// An interval from the acknowledged point is a baseline: the
			// peer may trust it even if it forgot this sender (restart).
			out = append(out, outFrame{p.addr, r.intervalFrame(p.sent, to, p.baseline || p.sent == p.acked)})
			p.inflight = append(p.inflight, sentInterval{to: to, at: now})
			p.sent = to
		}
	}
	r.mu.Unlock()
	r.send(out)
}

// bytesBetween returns the encoded size of buffered deltas [from, to).
func (r *Replica) bytesBetween(from, to uint64) int {
	if to <= from || len(r.buf) == 0 {
		return 0
	}
	cumBefore := func(seq uint64) int {
		i := int(seq - r.bufBase)
		if i <= 0 {
			return r.buf[0].cum - r.buf[0].size
		}
		return r.buf[i-1].cum
	}
	return cumBefore(to) - cumBefore(from)
}

// batchEnd returns the end of the interval starting at from: up to the
// durable deltas, at most MaxBatchBytes (but at least one delta).
func (r *Replica) batchEnd(from uint64) uint64 {
	to := from + 1
	for to < r.durable && r.bytesBetween(from, to+1) <= r.cfg.MaxBatchBytes {
		to++
	}
	return to
}

// intervalFrame encodes the join of deltas [from, to) as a delta frame. The
// last frame is cached: peers in step with each other share one encoding.
func (r *Replica) intervalFrame(from, to uint64, baseline bool) []byte {
	c := &r.cache
	if c.frame != nil && c.from == from && c.to == to && c.baseline == baseline {
		return c.frame
	}
	lo, hi := int(from-r.bufBase), int(to-r.bufBase)
	// The deltas go out as encoded when they were made: joining them first
	// would save bytes only for keys written twice within one interval, and
	// would cost a decode-merge-encode per interval on the sender.
	m := r.header(kindDelta)
	m.from, m.to, m.baseline = from, to, baseline
	for _, b := range r.buf[lo:hi] {
		m.encoded = append(m.encoded, b.enc)
	}
	*c = cachedFrame{from: from, to: to, baseline: baseline, frame: encodeFrameSized(m, r.bytesBetween(from, to)+256)}
	return c.frame
}

// gcBuffer drops deltas every peer holds, and the oldest ones beyond
// MaxBufferBytes; peers that miss those are switched to a digest exchange.
func (r *Replica) gcBuffer() {
	min := r.next
	for _, p := range r.peers {
		if p.acked < min {
			min = p.acked
		}
	}
	drop := 0
	for drop < len(r.buf) && r.buf[drop].seq < min {
		drop++
	}
	for drop < len(r.buf) && r.bufBytes-r.bytesBetween(r.bufBase, r.bufBase+uint64(drop)) > r.cfg.MaxBufferBytes && r.buf[drop].seq < r.durable {
		drop++
	}
	if drop == 0 {
		return
	}
	r.bufBytes -= r.bytesBetween(r.bufBase, r.bufBase+uint64(drop))
	r.buf = r.buf[drop:] // append reallocates as the buffer grows, freeing the dropped prefix
	if len(r.buf) == 0 {
		r.buf = nil
	}
	r.bufBase += uint64(drop)
	r.cache = cachedFrame{}
	for _, p := range r.peers {
		if p.acked < r.bufBase {
			p.acked, p.sent = r.bufBase, r.bufBase
			p.inflight = p.inflight[:0]
			p.baseline, p.digestDue = true, true
		}
	}
}

func (r *Replica) handleFrame(frame []byte) {
	r.m.ASSSyncBytes.WithLabelValues(metrics.DirectionReceived).Add(float64(len(frame)))
	msg, err := decodeFrame(frame, r.cfg.MaxFrameBytes)
	if err != nil {
		r.stateSyncError()
		return
	}
	switch msg.kind {
	case kindDelta:
		r.handleDelta(msg)
	case kindAck:
		r.handleAck(msg)
	case kindDigest:
		r.handleDigest(msg)
	case kindDigestKeys:
		r.handleDigestKeys(msg)
	case kindKeyStates:
		r.handleKeyStates(msg)
	}
}

// mergeRemote merges states received from a peer and logs them (raw is
// their encoding, or nil to encode them here). Called with r.mu held.
func (r *Replica) mergeRemote(states []*ORMap, raw []byte) ([]string, int64, error) {
	n := 0
	for _, m := range states {
		if m != nil {
			n += len(m.entries)
		}
	}
	if n == 0 {
		return nil, 0, nil
	}
	var pos int64
	if r.store != nil {
		if raw == nil {
			e := encoder{}
			for _, m := range states {
				e.value(m)
			}
			raw = e.buf
		}
		var err error
		if pos, err = r.store.append(raw); err != nil {
			return nil, 0, err
		}
	}
	keys := make([]string, 0, n)
	for _, m := range states {
		for _, k := range r.state.mergeOwned(m) {
			r.index.touch(k)
			keys = append(keys, k)
		}
	}
	return keys, pos, nil
}

func (r *Replica) syncStore(pos int64) error {
	if r.store == nil || pos == 0 {
		return nil
	}
	return r.store.sync(pos)
}

func (r *Replica) notify(keys []string) {
	if len(keys) > 0 && r.cfg.OnRemoteChange != nil {
		r.cfg.OnRemoteChange(keys)
	}
}

func (r *Replica) handleDelta(msg *message) {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return
	}
	id := senderID{msg.node, msg.incarnation}
	seq, known := r.recv[id]
	if msg.baseline && (!known || msg.from > seq) {
		// A baseline interval starts where this replica acknowledged (so
		// durably holds everything before, even across its own restart), or
		// after a gap the sender repairs by digest exchange.
		seq = msg.from
	}
	keys, pos, err := r.mergeRemote(msg.deltas, msg.raw)
	if err != nil {
		r.mu.Unlock()
		r.stateSyncError()
		return
	}
	if msg.from <= seq && msg.to > seq {
		seq = msg.to
	}
	r.recv[id] = seq
	ack := r.header(kindAck)
	ack.ackInc, ack.to = msg.incarnation, seq
	r.mu.Unlock()
	if err := r.syncStore(pos); err != nil {
		r.stateSyncError()
		return
	}
	r.send([]outFrame{{msg.addr, encodeFrame(ack)}})
	r.notify(keys)
}

func (r *Replica) handleAck(msg *message) {
	r.mu.Lock()
	p := r.peers[msg.addr]
	if r.closed || p == nil || msg.ackInc != r.inc || msg.to > r.next {
		r.mu.Unlock()
		return
	}
	now := r.cfg.Now()
	var lat []float64
	switch {
	case msg.to > p.acked:
		p.acked = msg.to
		if p.sent < p.acked {
			p.sent = p.acked
		}
		p.waitSince, p.lastAck, p.baseline = now, now, false
		keep := p.inflight[:0]
		for _, s := range p.inflight {
			if s.to <= msg.to {
				lat = append(lat, now.Sub(s.at).Seconds())
			} else {
				keep = append(keep, s)
			}
		}
		p.inflight = keep
		r.gcBuffer()
	case msg.to == p.acked && p.sent > p.acked:
		// The peer saw a gap (a lost or reordered interval): resend now.
		p.sent = p.acked
		p.inflight = p.inflight[:0]
	}
	r.mu.Unlock()
	for _, s := range lat {
		r.m.ASSSyncLatency.Observe(s)
		r.m.MigrationLatency.WithLabelValues(metrics.ComponentASS).Observe(s)
	}
	r.signal()
}

// startDigest returns the digest frame opening an exchange with addr. Called with r.mu held.
func (r *Replica) startDigest(addr string, now time.Time) outFrame {
	r.index.refresh(r.state)
	r.nextSession++
	level := levelFor(len(r.index.keys))
	r.sessions[r.nextSession] = &digestSession{peer: addr, level: level, start: now}
	m := r.header(kindDigest)
	m.session, m.level, m.sums = r.nextSession, level, r.index.sums(level)
	return outFrame{addr, encodeFrame(m)}
}

func (r *Replica) handleDigest(msg *message) {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return
	}
	r.index.refresh(r.state)
	mine := r.index.sums(msg.level)
	reply := r.header(kindDigestKeys)
	reply.session = msg.session
	budget := r.cfg.MaxBatchBytes
	for b := range mine {
		if mine[b] == msg.sums[b] {
			continue
		}
		keys := r.index.bucketKeys(msg.level, uint32(b))
		cost := 0
		for _, k := range keys {
			cost += len(k) + 10
		}
		if cost > budget && len(reply.buckets) > 0 {
			break // the rest waits for the next digest round
		}
		budget -= cost
		reply.buckets = append(reply.buckets, uint32(b))
		for _, k := range keys {
			reply.hashes = append(reply.hashes, keyHash{key: k, hash: r.index.keys[k].hash})
		}
	}
	r.mu.Unlock()
	r.send([]outFrame{{msg.addr, encodeFrame(reply)}})
}

func (r *Replica) handleDigestKeys(msg *message) {
	r.mu.Lock()
	s := r.sessions[msg.session]
	if r.closed || s == nil || s.peer != msg.addr {
		r.mu.Unlock()
		return
	}
	delete(r.sessions, msg.session)
	r.index.refresh(r.state)
	lat := r.cfg.Now().Sub(s.start).Seconds()
	theirs := make(map[string]uint64, len(msg.hashes))
	for _, h := range msg.hashes {
		theirs[h.key] = h.hash
	}
	var push, want []string
	for _, b := range msg.buckets {
		if int(b) >= 1<<s.level {
			continue
		}
		for _, k := range r.index.bucketKeys(s.level, b) {
			if h, ok := theirs[k]; !ok || h != r.index.keys[k].hash {
				push = append(push, k)
			}
		}
	}
	for k, h := range theirs {
		if mine, ok := r.index.keys[k]; !ok || mine.hash != h {
			want = append(want, k)
		}
	}
	var out []outFrame
	if len(push) > 0 || len(want) > 0 {
		out = r.keyStateFrames(msg.addr, msg.session, push, want, false)
	}
	r.mu.Unlock()
	r.m.ASSSyncLatency.Observe(lat)
	r.m.MigrationLatency.WithLabelValues(metrics.ComponentASS).Observe(lat)
	r.send(out)
}

// keyStateFrames encodes the states of push, in frames of at most about
// MaxBatchBytes, with want spread over them. Our own states must be durable
// before they leave (a peer could otherwise hold dots this replica forgets in
// a crash and reuses), so the log is synced first. Called with r.mu held.
func (r *Replica) keyStateFrames(addr string, session uint64, push, want []string, reply bool) []outFrame {
	if r.store != nil && len(push) > 0 {
		if err := r.store.syncAll(); err != nil {
			r.stateSyncError()
			return nil
		}
	}
	var out []outFrame
	emit := func(keys []string, want []string) {
		m := r.header(kindKeyStates)
		m.session, m.reply, m.want, m.delta = session, reply, want, r.state.subset(keys)
		out = append(out, outFrame{addr, encodeFrame(m)})
	}
	const wantPerFrame = 8192
	var chunk []string
	size := 0
	for _, k := range push {
		sz := r.index.keys[k].size
		if len(chunk) > 0 && size+sz > r.cfg.MaxBatchBytes {
			var w []string
			w, want = splitAt(want, wantPerFrame)
			emit(chunk, w)
			chunk, size = nil, 0
		}
		chunk = append(chunk, k)
		size += sz
	}
	for len(chunk) > 0 || len(want) > 0 {
		var w []string
		w, want = splitAt(want, wantPerFrame)
		emit(chunk, w)
		chunk = nil
	}
	return out
}

func splitAt(s []string, n int) ([]string, []string) {
	if len(s) <= n {
		return s, nil
	}
	return s[:n], s[n:]
}

func (r *Replica) handleKeyStates(msg *message) {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return
	}
	keys, pos, err := r.mergeRemote([]*ORMap{msg.delta}, nil)
	if err != nil {
		r.mu.Unlock()
		r.stateSyncError()
		return
	}
	r.index.refresh(r.state)
	var out []outFrame
	if !msg.reply && len(msg.want) > 0 {
		var have []string
		for _, k := range msg.want {
			if _, ok := r.state.entries[k]; ok {
				have = append(have, k)
			}
		}
		if len(have) > 0 {
			out = r.keyStateFrames(msg.addr, msg.session, have, nil, true)
		}
	}
	r.mu.Unlock()
	if err := r.syncStore(pos); err != nil {
		r.stateSyncError()
		return
	}
	r.send(out)
	r.notify(keys)
}
