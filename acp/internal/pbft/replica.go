package pbft

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"sort"
)

// Application is the replicated state machine. Apply must be
// deterministic; Snapshot must encode equal states to equal bytes.
type Application interface {
	Apply(op []byte) []byte
	Snapshot() []byte
	Restore(snapshot []byte) error
}

// Config configures one replica. Time is counted in ticks of the driver.
type Config struct {
	// ID is this replica's index in Keys (0..N-1).
	ID uint32
	// N is the number of replicas, 3f+1 with f >= 1.
	N int
	// Keys are the public keys of the N replicas followed by those of any
	// clients that are not replicas; a request's Client indexes Keys.
	Keys []ed25519.PublicKey
	// PrivateKey signs this replica's messages.
	PrivateKey ed25519.PrivateKey
	// CheckpointInterval K: a checkpoint every K executed sequence numbers.
	CheckpointInterval uint64
	// Window L: sequence numbers above the stable checkpoint h accepted are
	// (h, h+L]. A multiple of K, at least 2K.
	Window uint64
	// ViewChangeTicks is how long a backup waits for a pending request to
	// execute before it suspects the primary. It doubles with every view
	// change that does not produce a new view.
	ViewChangeTicks int
	// RetransmitTicks is the period at which a replica resends its
	// messages for sequence numbers not yet executed everywhere (they may
	// have been lost).
	RetransmitTicks int
	// ClientWindow is how many executed timestamps are remembered per
	// client for deduplication; older ones are refused as stale.
	ClientWindow int
	// MaxBatch is the most requests the primary orders at one sequence
	// number.
	MaxBatch int
	// Pipeline is how many sequence numbers the primary keeps in flight
	// (assigned, not yet executed); requests arriving meanwhile wait and
	// are batched. 1-2 keeps a lone request's latency at one round.
	Pipeline int
}

// DefaultConfig returns a configuration for replica id of n, with the
// key material still to fill in.
func DefaultConfig(id uint32, n int) Config {
	return Config{ID: id, N: n, CheckpointInterval: 16, Window: 64,
		ViewChangeTicks: 50, RetransmitTicks: 10, ClientWindow: 256, MaxBatch: 64, Pipeline: 2}
}

// F returns the number of faults n replicas tolerate.
func F(n int) int { return (n - 1) / 3 }

// Validate reports the first bad setting.
func (c Config) Validate() error {
	switch {
	case c.N < 4:
		return fmt.Errorf("pbft: N=%d, need at least 4 (3f+1, f>=1)", c.N)
	case int(c.ID) >= c.N:
		return fmt.Errorf("pbft: ID %d is not below N=%d", c.ID, c.N)
	case len(c.Keys) < c.N:
		return fmt.Errorf("pbft: %d public keys for N=%d replicas", len(c.Keys), c.N)
	case len(c.PrivateKey) != ed25519.PrivateKeySize:
		return fmt.Errorf("pbft: private key of %d bytes", len(c.PrivateKey))
	case !ed25519.PublicKey(c.PrivateKey.Public().(ed25519.PublicKey)).Equal(c.Keys[c.ID]):
		return fmt.Errorf("pbft: private key does not match Keys[%d]", c.ID)
	case c.CheckpointInterval == 0:
		return errors.New("pbft: CheckpointInterval is 0")
	case c.Window < 2*c.CheckpointInterval || c.Window%c.CheckpointInterval != 0:
		return fmt.Errorf("pbft: Window %d must be a multiple of CheckpointInterval %d and at least twice it", c.Window, c.CheckpointInterval)
	case c.ViewChangeTicks < 2:
		return fmt.Errorf("pbft: ViewChangeTicks %d must be at least 2", c.ViewChangeTicks)
	case c.RetransmitTicks < 1:
		return fmt.Errorf("pbft: RetransmitTicks %d must be at least 1", c.RetransmitTicks)
	case c.ClientWindow < 1:
		return fmt.Errorf("pbft: ClientWindow %d must be at least 1", c.ClientWindow)
	case c.MaxBatch < 1 || c.MaxBatch > 1024:
		return fmt.Errorf("pbft: MaxBatch %d must be in [1, 1024]", c.MaxBatch)
	case c.Pipeline < 1 || uint64(c.Pipeline) > c.Window:
		return fmt.Errorf("pbft: Pipeline %d must be in [1, Window %d]", c.Pipeline, c.Window)
	}
	for i, k := range c.Keys {
		if len(k) != ed25519.PublicKeySize {
			return fmt.Errorf("pbft: Keys[%d] has %d bytes", i, len(k))
		}
	}
	return nil
}

// Detection kinds (the values of dwcp_v3_acp_byzantine_detections_total's
// detection_type label).
const (
	DetectEquivocation      = "equivocation"
	DetectBadSignature      = "bad_signature"
	DetectConflictingDigest = "conflicting_digest"
)

// Detection is evidence of Byzantine behaviour by Offender.
type Detection struct {
	Type     string
	Offender uint32
	View     uint64
	Seq      uint64
	Detail   string
}

// Outbound is a message to send; To is a replica or client id, or
// Broadcast for every replica (including the sender itself).
type Outbound struct {
	To  uint32
	Msg *Message
}

// Broadcast addresses every replica.
const Broadcast = ^uint32(0)

// Execution is one executed request (or null request) of a sequence
// number; Index is its position in the batch.
type Execution struct {
	Seq       uint64
	Index     int
	View      uint64
	Client    uint32
	Timestamp uint64
	Op        []byte // nil for a null request or a duplicate
	Result    []byte
}

// Output is what one Step or Tick produced.
type Output struct {
	Send       []Outbound
	Executed   []Execution
	Detections []Detection
	// NewView is set when the replica entered a new view.
	NewView bool
}

type reqKey struct {
	client uint32
	ts     uint64
}

type slot struct {
	view     uint64
	digest   Digest
	pp       *Message
	prepares map[uint32]*Message
	commits  map[uint32]*Message
	prepared bool
	// committed: prepared and 2f+1 matching commits (committed-local).
	committed bool
}

type clientState struct {
	floor uint64            // every timestamp <= floor is done or stale
	done  map[uint64][]byte // executed timestamps above floor -> result
}

// Replica is the PBFT state machine of one replica. It does no I/O and
// reads no clock: feed it messages with Step and time with Tick, and send
// what they return. Not safe for concurrent use.
type Replica struct {
	cfg Config
	f   int
	app Application

	view         uint64
	inViewChange bool
	targetView   uint64

	low         uint64     // stable checkpoint h
	stableProof []*Message // 2f+1 checkpoints for low
	lastExec    uint64
	nextSeq     uint64 // primary: last assigned

	slots map[uint64]*slot
	// certs keeps, per sequence number above the stable checkpoint, the
	// prepared certificate of the highest view: a view change must carry
	// it even after later views reset the slot (section 4.4, set P).
	certs       map[uint64]Cert
	checkpoints map[uint64]map[uint32]*Message
	snapshots   map[uint64][]byte // own state at checkpoint seqs > ... >= low
	clients     map[uint32]*clientState
	pending     map[reqKey]*Message // verified requests not yet executed
	assigned    map[reqKey]uint64   // primary: requests with a seq in this view

	viewChanges map[uint64]map[uint32]*Message
	sentNewView uint64
	newViewMsg  *Message // the last new-view this replica sent as primary

	timer        int // ticks until suspecting the primary; 0 = stopped
	timeout      int
	retransmitIn int
	fetchRotor   uint32
	// verified caches signatures already checked: proofs repeat messages
	// the replica verified when they arrived on their own.
	verified map[[ed25519.SignatureSize]byte]sigEntry
}

type sigEntry struct {
	signer uint32
	body   [32]byte
}

const maxVerifiedCache = 1 << 14

// verify checks m's signature by signer, with a cache.
func (r *Replica) verify(m *Message, signer uint32) bool {
	if int(signer) >= len(r.cfg.Keys) || len(m.Sig) != ed25519.SignatureSize {
		return false
	}
	body := sha256.Sum256(m.signingBytes())
	key := [ed25519.SignatureSize]byte(m.Sig)
	if e, ok := r.verified[key]; ok && e.signer == signer && e.body == body {
		return true
	}
	if !ed25519.Verify(r.cfg.Keys[signer], m.signingBytes(), m.Sig) {
		return false
	}
	if len(r.verified) >= maxVerifiedCache {
		clear(r.verified)
	}
	r.verified[key] = sigEntry{signer: signer, body: body}
	return true
}

// NewReplica creates replica cfg.ID over app, in view 0.
func NewReplica(cfg Config, app Application) (*Replica, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	r := &Replica{cfg: cfg, f: F(cfg.N), app: app,
		slots: map[uint64]*slot{}, certs: map[uint64]Cert{}, checkpoints: map[uint64]map[uint32]*Message{},
		snapshots: map[uint64][]byte{}, clients: map[uint32]*clientState{},
		pending: map[reqKey]*Message{}, assigned: map[reqKey]uint64{},
		viewChanges: map[uint64]map[uint32]*Message{}, timeout: cfg.ViewChangeTicks,
		retransmitIn: cfg.RetransmitTicks,
		verified:     map[[ed25519.SignatureSize]byte]sigEntry{}}
	r.snapshots[0] = r.stateBytes()
	return r, nil
}

// View returns the current view; Primary its primary.
func (r *Replica) View() uint64 { return r.view }

// Primary returns the primary of the current view.
func (r *Replica) Primary() uint32 { return r.primaryOf(r.view) }

// InViewChange reports whether the replica is changing views.
func (r *Replica) InViewChange() bool { return r.inViewChange }

// LastExecuted returns the highest executed sequence number.
func (r *Replica) LastExecuted() uint64 { return r.lastExec }

// StableCheckpoint returns the sequence number of the stable checkpoint.
func (r *Replica) StableCheckpoint() uint64 { return r.low }

// LogSize returns the number of sequence numbers held in the log.
func (r *Replica) LogSize() int { return len(r.slots) }

func (r *Replica) primaryOf(v uint64) uint32 { return uint32(v % uint64(r.cfg.N)) }

func (r *Replica) quorum() int { return 2*r.f + 1 }

func (r *Replica) sign(m *Message) *Message {
	m.From = r.cfg.ID
	m.Sign(r.cfg.PrivateKey)
	return m
}

func (o *Output) send(to uint32, m *Message) { o.Send = append(o.Send, Outbound{To: to, Msg: m}) }

func (r *Replica) detect(o *Output, kind string, offender uint32, v, n uint64, format string, args ...any) {
	o.Detections = append(o.Detections, Detection{Type: kind, Offender: offender, View: v, Seq: n, Detail: fmt.Sprintf(format, args...)})
}

// inWindow reports whether n may be accepted now.
func (r *Replica) inWindow(n uint64) bool { return n > r.low && n <= r.low+r.cfg.Window }

// Step processes one message that arrived over the link from linkFrom.
// Every signature is verified; a message whose claimed sender is not the
// link it came on, or whose signature fails, counts as bad_signature
// against the link.
func (r *Replica) Step(linkFrom uint32, m *Message) Output {
	var o Output
	if m == nil {
		return o
	}
	if m.From != linkFrom {
		r.detect(&o, DetectBadSignature, linkFrom, m.View, m.Seq, "%s claims sender %d", m.Type, m.From)
		return o
	}
	if int(m.From) >= len(r.cfg.Keys) || (m.Type != MsgRequest && int(m.From) >= r.cfg.N) {
		return o // unknown principal: nothing to blame
	}
	if r.isDuplicate(m) {
		// Retransmissions are byte-identical; skipping them before the
		// signature check keeps a replica from drowning in its peers'
		// retransmissions when it is slow.
		return o
	}
	if !r.verify(m, m.From) {
		r.detect(&o, DetectBadSignature, m.From, m.View, m.Seq, "%s signature does not verify", m.Type)
		return o
	}
	switch m.Type {
	case MsgRequest:
		r.onRequest(&o, m)
	case MsgPrePrepare:
		r.onPrePrepare(&o, m)
	case MsgPrepare:
		r.onPrepare(&o, m)
	case MsgCommit:
		r.onCommit(&o, m)
	case MsgCheckpoint:
		r.onCheckpoint(&o, m)
	case MsgViewChange:
		r.onViewChange(&o, m)
	case MsgNewView:
		r.onNewView(&o, m)
	case MsgFetchState:
		r.onFetchState(&o, m)
	case MsgState:
		r.onState(&o, m)
	}
	return o
}

// Tick advances time by one tick: the view-change timer and retransmission.
func (r *Replica) Tick() Output {
	var o Output
	if r.timer > 0 {
		r.timer--
		if r.timer == 0 {
			next := r.view + 1
			if r.inViewChange {
				next = r.targetView + 1
			}
			r.startViewChange(&o, next)
		}
	}
	// The window may have moved (a checkpoint became stable) since
	// requests were left waiting.
	r.assignPending(&o)
	r.retransmitIn--
	if r.retransmitIn <= 0 {
		r.retransmitIn = r.cfg.RetransmitTicks
		r.retransmit(&o)
	}
	return o
}

// isDuplicate reports whether m is a copy of a message already accepted
// (same kind, position, sender and signature) or is stale by view.
func (r *Replica) isDuplicate(m *Message) bool {
	same := func(prev *Message) bool { return prev != nil && bytes.Equal(prev.Sig, m.Sig) }
	switch m.Type {
	case MsgPrePrepare, MsgPrepare, MsgCommit:
		if m.View < r.view || m.Seq <= r.low {
			return true
		}
		s := r.slots[m.Seq]
		if s == nil || s.view != m.View {
			return false
		}
		switch m.Type {
		case MsgPrePrepare:
			return same(s.pp)
		case MsgPrepare:
			return same(s.prepares[m.From])
		default:
			return same(s.commits[m.From])
		}
	case MsgCheckpoint:
		return m.Seq <= r.low || same(r.checkpoints[m.Seq][m.From])
	case MsgViewChange:
		return m.View <= r.view || same(r.viewChanges[m.View][m.From])
	case MsgNewView:
		return m.View <= r.view
	}
	return false
}

// --- normal case ---

func (r *Replica) onRequest(o *Output, m *Message) {
	if m.Client != m.From {
		r.detect(o, DetectBadSignature, m.From, 0, 0, "request for client %d signed by %d", m.Client, m.From)
		return
	}
	k := reqKey{m.Client, m.Timestamp}
	cs := r.clients[m.Client]
	if cs != nil {
		if res, ok := cs.done[k.ts]; ok {
			o.send(m.Client, r.reply(m.Client, k.ts, res))
			return
		}
		if k.ts <= cs.floor {
			return
		}
	}
	if _, ok := r.pending[k]; !ok {
		if len(r.pending) >= 4*int(r.cfg.Window) {
			return // back-pressure: the client retransmits
		}
		r.pending[k] = m
	}
	if r.timer == 0 && !r.inViewChange {
		r.timer = r.timeout
	}
	r.assignPending(o)
}

// assignPending makes the primary order pending requests it has not yet
// ordered in this view: up to Pipeline sequence numbers in flight, each
// carrying up to MaxBatch requests, within the window.
func (r *Replica) assignPending(o *Output) {
	if r.Primary() != r.cfg.ID || r.inViewChange {
		return
	}
	keys := make([]reqKey, 0, len(r.pending))
	for k := range r.pending {
		if _, ok := r.assigned[k]; !ok {
			keys = append(keys, k)
		}
	}
	sort.Slice(keys, func(i, j int) bool {
		if keys[i].client != keys[j].client {
			return keys[i].client < keys[j].client
		}
		return keys[i].ts < keys[j].ts
	})
	for len(keys) > 0 && r.nextSeq < r.lastExec+uint64(r.cfg.Pipeline) && r.inWindow(r.nextSeq+1) {
		n := min(len(keys), r.cfg.MaxBatch)
		batch := make([]*Message, n)
		for i, k := range keys[:n] {
			batch[i] = r.pending[k]
		}
		r.nextSeq++
		pp := r.sign(&Message{Type: MsgPrePrepare, View: r.view, Seq: r.nextSeq, Digest: BatchDigest(batch)})
		pp.Batch = batch
		for _, k := range keys[:n] {
			r.assigned[k] = r.nextSeq
		}
		keys = keys[n:]
		s := r.slotFor(r.nextSeq, r.view)
		s.pp, s.digest = pp, pp.Digest
		o.send(Broadcast, pp)
	}
}

func (r *Replica) slotFor(n, v uint64) *slot {
	s := r.slots[n]
	if s == nil || s.view < v {
		s = &slot{view: v, prepares: map[uint32]*Message{}, commits: map[uint32]*Message{}}
		r.slots[n] = s
	}
	return s
}

// checkPrePrepare validates a pre-prepare's batch binding, as a backup
// or when it comes inside a certificate or a new view.
func (r *Replica) checkPrePrepare(o *Output, pp *Message) bool {
	if len(pp.Batch) == 0 {
		if pp.Digest != (Digest{}) {
			r.detect(o, DetectConflictingDigest, pp.From, pp.View, pp.Seq, "pre-prepare digest without requests")
			return false
		}
		return true
	}
	if len(pp.Batch) > r.cfg.MaxBatch || pp.Digest != BatchDigest(pp.Batch) {
		r.detect(o, DetectConflictingDigest, pp.From, pp.View, pp.Seq, "pre-prepare digest does not match its batch of %d", len(pp.Batch))
		return false
	}
	seen := make(map[reqKey]bool, len(pp.Batch))
	for _, req := range pp.Batch {
		k := reqKey{req.Client, req.Timestamp}
		if req.Type != MsgRequest || int(req.Client) >= len(r.cfg.Keys) || req.From != req.Client || seen[k] || !r.verify(req, req.Client) {
			r.detect(o, DetectBadSignature, pp.From, pp.View, pp.Seq, "pre-prepare carries a forged or repeated request")
			return false
		}
		seen[k] = true
	}
	return true
}

func (r *Replica) onPrePrepare(o *Output, m *Message) {
	if m.From != r.primaryOf(m.View) || m.View != r.view || r.inViewChange || !r.inWindow(m.Seq) {
		return
	}
	if len(m.Batch) == 0 && m.Digest == (Digest{}) {
		return // null requests only come inside a new view
	}
	s := r.slotFor(m.Seq, m.View)
	if s.pp != nil {
		// The header is the primary's (its signature verified), so a
		// second digest is equivocation whatever request it carries.
		if s.digest != m.Digest {
			r.detect(o, DetectEquivocation, m.From, m.View, m.Seq, "two pre-prepares for view %d seq %d", m.View, m.Seq)
		}
		return
	}
	if !r.checkPrePrepare(o, m) {
		return
	}
	r.acceptPrePrepare(o, s, m)
}

// acceptPrePrepare records pp in s and, on a backup, answers with a prepare.
func (r *Replica) acceptPrePrepare(o *Output, s *slot, pp *Message) {
	s.pp, s.digest = pp, pp.Digest
	// Drop votes for another digest that arrived before the pre-prepare.
	for id, p := range s.prepares {
		if p.Digest != pp.Digest {
			delete(s.prepares, id)
		}
	}
	for id, c := range s.commits {
		if c.Digest != pp.Digest {
			delete(s.commits, id)
		}
	}
	for _, req := range pp.Batch {
		k := reqKey{req.Client, req.Timestamp}
		if _, ok := r.pending[k]; !ok && !r.isDone(k) {
			r.pending[k] = req
		}
	}
	if len(pp.Batch) > 0 && r.timer == 0 && !r.inViewChange && pp.Seq > r.lastExec {
		r.timer = r.timeout
	}
	if r.cfg.ID != r.primaryOf(pp.View) {
		p := r.sign(&Message{Type: MsgPrepare, View: pp.View, Seq: pp.Seq, Digest: pp.Digest, PrimarySig: pp.Sig})
		s.prepares[r.cfg.ID] = p
		o.send(Broadcast, p)
	}
	r.checkPrepared(o, pp.Seq, s)
}

func (r *Replica) isDone(k reqKey) bool {
	cs := r.clients[k.client]
	if cs == nil {
		return false
	}
	_, ok := cs.done[k.ts]
	return ok || k.ts <= cs.floor
}

func (r *Replica) onPrepare(o *Output, m *Message) {
	if m.From == r.primaryOf(m.View) || m.View != r.view || r.inViewChange || !r.inWindow(m.Seq) {
		return
	}
	// The primary's signature the sender relays proves what it was sent.
	hdr := &Message{Type: MsgPrePrepare, From: r.primaryOf(m.View), View: m.View, Seq: m.Seq, Digest: m.Digest, Sig: m.PrimarySig}
	if !r.verify(hdr, hdr.From) {
		r.detect(o, DetectBadSignature, m.From, m.View, m.Seq, "prepare relays an invalid primary signature")
		return
	}
	s := r.slotFor(m.Seq, m.View)
	if s.pp != nil && s.digest != m.Digest {
		r.detect(o, DetectEquivocation, hdr.From, m.View, m.Seq, "primary signed digests %x and %x", s.digest[:4], m.Digest[:4])
		return
	}
	if prev, ok := s.prepares[m.From]; ok {
		if prev.Digest != m.Digest {
			r.detect(o, DetectEquivocation, m.From, m.View, m.Seq, "two prepares")
		}
		return
	}
	s.prepares[m.From] = m
	r.checkPrepared(o, m.Seq, s)
}

func (r *Replica) checkPrepared(o *Output, n uint64, s *slot) {
	if s.prepared || s.pp == nil {
		return
	}
	count := 0
	for _, p := range s.prepares {
		if p.Digest == s.digest {
			count++
		}
	}
	if count < 2*r.f {
		return
	}
	s.prepared = true
	if prev, ok := r.certs[n]; !ok || prev.PrePrepare.View <= s.view {
		cert := Cert{PrePrepare: s.pp}
		ids := make([]uint32, 0, len(s.prepares))
		for id, p := range s.prepares {
			if p.Digest == s.digest {
				ids = append(ids, id)
			}
		}
		sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
		for _, id := range ids[:2*r.f] {
			cert.Prepares = append(cert.Prepares, s.prepares[id])
		}
		r.certs[n] = cert
	}
	c := r.sign(&Message{Type: MsgCommit, View: s.view, Seq: n, Digest: s.digest})
	s.commits[r.cfg.ID] = c
	o.send(Broadcast, c)
	r.checkCommitted(o, n, s)
}

func (r *Replica) onCommit(o *Output, m *Message) {
	if m.View != r.view || r.inViewChange || !r.inWindow(m.Seq) {
		return
	}
	s := r.slotFor(m.Seq, m.View)
	if s.pp != nil && s.digest != m.Digest {
		// Not evidence against the sender: an equivocating primary can
		// make a correct replica prepare another digest (the prepares
		// carrying the primary's signatures already blamed the primary).
		return
	}
	if prev, ok := s.commits[m.From]; ok {
		if prev.Digest != m.Digest {
			r.detect(o, DetectEquivocation, m.From, m.View, m.Seq, "two commits")
		}
		return
	}
	s.commits[m.From] = m
	r.checkCommitted(o, m.Seq, s)
}

func (r *Replica) checkCommitted(o *Output, n uint64, s *slot) {
	if s.committed || !s.prepared {
		return
	}
	count := 0
	for _, c := range s.commits {
		if c.Digest == s.digest {
			count++
		}
	}
	if count < r.quorum() {
		return
	}
	s.committed = true
	r.execute(o)
}

func (r *Replica) execute(o *Output) {
	for {
		s := r.slots[r.lastExec+1]
		if s == nil || !s.committed {
			break
		}
		r.lastExec++
		if len(s.pp.Batch) == 0 {
			o.Executed = append(o.Executed, Execution{Seq: r.lastExec, View: s.view})
		}
		for i, req := range s.pp.Batch {
			o.Executed = append(o.Executed, r.executeRequest(o, s.view, i, req))
		}
		if r.lastExec%r.cfg.CheckpointInterval == 0 {
			r.takeCheckpoint(o)
		}
	}
	// Progress resets suspicion; remaining work re-arms it.
	r.timer, r.timeout = 0, r.cfg.ViewChangeTicks
	if len(r.pending) > 0 && !r.inViewChange {
		r.timer = r.timeout
	}
	r.assignPending(o)
}

// executeRequest applies one request of a batch unless it already ran
// (deduplication by client and timestamp) and replies to its client.
func (r *Replica) executeRequest(o *Output, view uint64, index int, req *Message) Execution {
	k := reqKey{req.Client, req.Timestamp}
	ex := Execution{Seq: r.lastExec, Index: index, View: view, Client: k.client, Timestamp: k.ts}
	delete(r.pending, k)
	cs := r.clients[k.client]
	if cs == nil {
		cs = &clientState{done: map[uint64][]byte{}}
		r.clients[k.client] = cs
	}
	if res, ok := cs.done[k.ts]; ok {
		ex.Result = res
	} else if k.ts > cs.floor {
		ex.Op = req.Op
		ex.Result = r.app.Apply(req.Op)
		cs.done[k.ts] = ex.Result
		for len(cs.done) > r.cfg.ClientWindow {
			oldest := ^uint64(0)
			for ts := range cs.done {
				oldest = min(oldest, ts)
			}
			delete(cs.done, oldest)
			cs.floor = oldest
		}
	}
	if ex.Result != nil {
		o.send(k.client, r.reply(k.client, k.ts, ex.Result))
	}
	return ex
}

func (r *Replica) reply(client uint32, ts uint64, result []byte) *Message {
	return r.sign(&Message{Type: MsgReply, View: r.view, Client: client, Timestamp: ts, Result: result})
}

// --- checkpoints and garbage collection ---

// stateBytes is the checkpointed state: the application's snapshot and the
// client table (so deduplication survives state transfer).
func (r *Replica) stateBytes() []byte {
	app := r.app.Snapshot()
	b := binary.BigEndian.AppendUint32(nil, uint32(len(app)))
	b = append(b, app...)
	ids := make([]uint32, 0, len(r.clients))
	for id := range r.clients {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	b = binary.BigEndian.AppendUint32(b, uint32(len(ids)))
	for _, id := range ids {
		cs := r.clients[id]
		tss := make([]uint64, 0, len(cs.done))
		for ts := range cs.done {
			tss = append(tss, ts)
		}
		sort.Slice(tss, func(i, j int) bool { return tss[i] < tss[j] })
		b = binary.BigEndian.AppendUint32(b, id)
		b = binary.BigEndian.AppendUint64(b, cs.floor)
		b = binary.BigEndian.AppendUint32(b, uint32(len(tss)))
		for _, ts := range tss {
			b = binary.BigEndian.AppendUint64(b, ts)
			b = appendBytes32(b, cs.done[ts])
		}
	}
	return b
}

func (r *Replica) restoreState(b []byte) error {
	d := reader{b: b}
	app := d.take(int(d.u32()))
	n := d.u32()
	if d.err == nil && uint64(n)*16 > uint64(len(d.b)) {
		return fmt.Errorf("pbft: state claims %d clients in %d bytes", n, len(d.b))
	}
	clients := make(map[uint32]*clientState, n)
	for i := uint32(0); i < n && d.err == nil; i++ {
		id := d.u32()
		cs := &clientState{floor: d.u64(), done: map[uint64][]byte{}}
		cnt := d.u32()
		if d.err == nil && uint64(cnt)*12 > uint64(len(d.b)) {
			return fmt.Errorf("pbft: state claims %d timestamps in %d bytes", cnt, len(d.b))
		}
		for j := uint32(0); j < cnt && d.err == nil; j++ {
			ts := d.u64()
			cs.done[ts] = d.bytes()
		}
		clients[id] = cs
	}
	if d.err != nil || len(d.b) != 0 {
		return fmt.Errorf("pbft: malformed state (%v, %d trailing bytes)", d.err, len(d.b))
	}
	if err := r.app.Restore(append([]byte(nil), app...)); err != nil {
		return err
	}
	r.clients = clients
	return nil
}

func (r *Replica) takeCheckpoint(o *Output) {
	state := r.stateBytes()
	r.snapshots[r.lastExec] = state
	c := r.sign(&Message{Type: MsgCheckpoint, Seq: r.lastExec, Digest: sha256.Sum256(state)})
	o.send(Broadcast, c)
	r.storeCheckpoint(o, c)
}

func (r *Replica) onCheckpoint(o *Output, m *Message) {
	if m.Seq <= r.low || m.Seq%r.cfg.CheckpointInterval != 0 || m.Seq > r.low+64*r.cfg.Window {
		return
	}
	r.storeCheckpoint(o, m)
}

func (r *Replica) storeCheckpoint(o *Output, m *Message) {
	byRep := r.checkpoints[m.Seq]
	if byRep == nil {
		byRep = map[uint32]*Message{}
		r.checkpoints[m.Seq] = byRep
	}
	if prev, ok := byRep[m.From]; ok {
		if prev.Digest != m.Digest {
			r.detect(o, DetectEquivocation, m.From, 0, m.Seq, "two checkpoint digests")
		}
		return
	}
	byRep[m.From] = m
	proof := r.checkpointProof(m.Seq)
	if proof == nil {
		return
	}
	d := proof[0].Digest
	for id, c := range byRep {
		if c.Digest != d {
			r.detect(o, DetectConflictingDigest, id, 0, m.Seq, "checkpoint digest differs from the stable one")
			delete(byRep, id)
		}
	}
	if own, ok := r.snapshots[m.Seq]; ok {
		if sha256.Sum256(own) != d {
			// Our own state diverged from 2f+1 others: only possible if
			// this replica is faulty; fetch the agreed state.
			delete(r.snapshots, m.Seq)
		} else {
			r.makeStable(m.Seq, proof)
			return
		}
	}
	if r.lastExec < m.Seq {
		r.fetchState(o, m.Seq, proof)
	}
}

// checkpointProof returns 2f+1 matching checkpoints for n, or nil.
func (r *Replica) checkpointProof(n uint64) []*Message {
	byDigest := map[Digest][]*Message{}
	for _, c := range r.checkpoints[n] {
		byDigest[c.Digest] = append(byDigest[c.Digest], c)
	}
	for _, cs := range byDigest {
		if len(cs) >= r.quorum() {
			sort.Slice(cs, func(i, j int) bool { return cs[i].From < cs[j].From })
			return cs[:r.quorum()]
		}
	}
	return nil
}

// makeStable advances the low watermark to n and discards everything at
// or below it (the garbage collection of section 4.3).
func (r *Replica) makeStable(n uint64, proof []*Message) {
	if n <= r.low {
		return
	}
	r.low, r.stableProof = n, proof
	for s := range r.slots {
		if s <= n {
			delete(r.slots, s)
		}
	}
	for s := range r.certs {
		if s <= n {
			delete(r.certs, s)
		}
	}
	for s := range r.checkpoints {
		if s < n {
			delete(r.checkpoints, s)
		}
	}
	for s := range r.snapshots {
		if s < n {
			delete(r.snapshots, s)
		}
	}
	if r.nextSeq < n {
		r.nextSeq = n
	}
}

func (r *Replica) fetchState(o *Output, n uint64, proof []*Message) {
	// Ask one signer of the proof at a time, rotating on retransmission.
	r.fetchRotor++
	target := proof[int(r.fetchRotor)%len(proof)].From
	if target == r.cfg.ID {
		target = proof[int(r.fetchRotor+1)%len(proof)].From
	}
	o.send(target, r.sign(&Message{Type: MsgFetchState, Seq: n}))
}

func (r *Replica) onFetchState(o *Output, m *Message) {
	state, ok := r.snapshots[m.Seq]
	if !ok || m.Seq != r.low {
		return
	}
	o.send(m.From, r.sign(&Message{Type: MsgState, Seq: m.Seq, Snapshot: state}))
}

func (r *Replica) onState(o *Output, m *Message) {
	if m.Seq <= r.lastExec {
		return
	}
	proof := r.checkpointProof(m.Seq)
	if proof == nil {
		return
	}
	if sha256.Sum256(m.Snapshot) != proof[0].Digest {
		r.detect(o, DetectConflictingDigest, m.From, 0, m.Seq, "state transfer does not match the stable checkpoint")
		return
	}
	if err := r.restoreState(m.Snapshot); err != nil {
		r.detect(o, DetectConflictingDigest, m.From, 0, m.Seq, "state transfer: %v", err)
		return
	}
	r.lastExec = m.Seq
	r.snapshots[m.Seq] = m.Snapshot
	for k := range r.pending {
		if r.isDone(k) {
			delete(r.pending, k)
		}
	}
	r.makeStable(m.Seq, proof)
	r.execute(o)
}

// --- retransmission ---

// retransmit resends this replica's own votes for the sequence numbers it
// has not yet seen stable, its latest checkpoint and its view change, so
// lost messages do not stall progress.
func (r *Replica) retransmit(o *Output) {
	if r.inViewChange {
		if vc := r.viewChanges[r.targetView][r.cfg.ID]; vc != nil {
			o.send(Broadcast, vc)
		}
		return
	}
	primary := r.Primary() == r.cfg.ID
	for n := r.low + 1; n <= r.low+r.cfg.Window; n++ {
		s := r.slots[n]
		if s == nil || s.view != r.view || s.pp == nil {
			continue
		}
		if primary {
			o.send(Broadcast, s.pp)
		} else if p := s.prepares[r.cfg.ID]; p != nil {
			o.send(Broadcast, p)
		}
		if c := s.commits[r.cfg.ID]; c != nil {
			o.send(Broadcast, c)
		}
	}
	if r.lastExec >= r.cfg.CheckpointInterval {
		last := r.lastExec - r.lastExec%r.cfg.CheckpointInterval
		if c := r.checkpoints[last][r.cfg.ID]; c != nil && last > r.low {
			o.send(Broadcast, c)
		} else if c := r.checkpoints[r.low][r.cfg.ID]; c != nil {
			// Others may lag behind the stable checkpoint: let them learn it.
			o.send(Broadcast, c)
		}
	}
	if proof := r.laggingProof(); proof != nil {
		r.fetchState(o, proof[0].Seq, proof)
	}
	if r.sentNewView == r.view && r.view > 0 && primary {
		if nv := r.newViewMsg; nv != nil {
			o.send(Broadcast, nv)
		}
	}
}

// laggingProof returns a stable checkpoint proof above lastExec, if any.
func (r *Replica) laggingProof() []*Message {
	var best []*Message
	for n := range r.checkpoints {
		if n > r.lastExec && (best == nil || n > best[0].Seq) {
			if p := r.checkpointProof(n); p != nil {
				best = p
			}
		}
	}
	return best
}
