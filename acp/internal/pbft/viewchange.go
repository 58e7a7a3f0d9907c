package pbft

import "sort"

// maxTimeoutFactor caps the doubling of the view-change timeout.
const maxTimeoutFactor = 64

// startViewChange moves to view v: stop accepting normal-case messages and
// broadcast a view-change carrying the stable checkpoint's proof and every
// prepared certificate above it (section 4.4).
func (r *Replica) startViewChange(o *Output, v uint64) {
	if v <= r.view || (r.inViewChange && v <= r.targetView) {
		return
	}
	r.inViewChange, r.targetView = true, v
	// The timer for view v starts once 2f+1 replicas want v (section
	// 4.5.2): a replica alone does not race ahead through views.
	r.timer = 0
	if r.timeout < maxTimeoutFactor*r.cfg.ViewChangeTicks {
		r.timeout *= 2
	}
	vc := &Message{Type: MsgViewChange, View: v, Seq: r.low, Checkpoints: r.stableProof}
	seqs := make([]uint64, 0, len(r.certs))
	for n := range r.certs {
		if n > r.low {
			seqs = append(seqs, n)
		}
	}
	sort.Slice(seqs, func(i, j int) bool { return seqs[i] < seqs[j] })
	for _, n := range seqs {
		vc.Prepared = append(vc.Prepared, r.certs[n])
	}
	r.sign(vc)
	r.storeViewChange(vc)
	o.send(Broadcast, vc)
	r.armViewChangeTimer()
	r.maybeNewView(o, v)
}

func (r *Replica) armViewChangeTimer() {
	if r.inViewChange && r.timer == 0 && len(r.viewChanges[r.targetView]) >= r.quorum() {
		r.timer = r.timeout
	}
}

func (r *Replica) storeViewChange(m *Message) bool {
	byRep := r.viewChanges[m.View]
	if byRep == nil {
		byRep = map[uint32]*Message{}
		r.viewChanges[m.View] = byRep
	}
	if _, ok := byRep[m.From]; ok {
		return false
	}
	byRep[m.From] = m
	return true
}

func (r *Replica) onViewChange(o *Output, m *Message) {
	if m.View <= r.view || m.View > r.view+uint64(4*r.cfg.N) {
		return
	}
	if !r.validViewChange(o, m) {
		return
	}
	if !r.storeViewChange(m) {
		return
	}
	// f+1 replicas want a higher view: at least one is correct, so join
	// the smallest such view rather than wait for our own timer.
	floor := r.view
	if r.inViewChange {
		floor = r.targetView
	}
	senders := map[uint32]bool{}
	smallest := ^uint64(0)
	for v, byRep := range r.viewChanges {
		if v <= floor {
			continue
		}
		for id := range byRep {
			senders[id] = true
		}
		smallest = min(smallest, v)
	}
	if len(senders) >= r.f+1 {
		r.startViewChange(o, smallest)
	}
	r.armViewChangeTimer()
	r.maybeNewView(o, m.View)
}

// validViewChange checks every proof a view-change carries.
func (r *Replica) validViewChange(o *Output, m *Message) bool {
	bad := func(kind, why string) bool {
		r.detect(o, kind, m.From, m.View, m.Seq, "view-change: %s", why)
		return false
	}
	if m.Seq%r.cfg.CheckpointInterval != 0 {
		return bad(DetectConflictingDigest, "checkpoint seq is not a checkpoint")
	}
	if m.Seq > 0 {
		if !r.validCheckpointProof(m.Checkpoints, m.Seq) {
			return bad(DetectBadSignature, "invalid checkpoint proof")
		}
	}
	seen := map[uint64]bool{}
	for _, c := range m.Prepared {
		pp := c.PrePrepare
		if pp == nil || pp.Type != MsgPrePrepare || pp.View >= m.View || pp.Seq <= m.Seq ||
			pp.Seq > m.Seq+r.cfg.Window || seen[pp.Seq] || pp.From != r.primaryOf(pp.View) {
			return bad(DetectConflictingDigest, "malformed prepared certificate")
		}
		seen[pp.Seq] = true
		if !r.verify(pp, pp.From) {
			return bad(DetectBadSignature, "certificate pre-prepare signature")
		}
		var scratch Output
		if !r.checkPrePrepare(&scratch, pp) {
			return bad(DetectConflictingDigest, "certificate request does not match its digest")
		}
		from := map[uint32]bool{}
		for _, p := range c.Prepares {
			if p == nil || p.Type != MsgPrepare || p.View != pp.View || p.Seq != pp.Seq || p.Digest != pp.Digest ||
				p.From == pp.From || int(p.From) >= r.cfg.N || from[p.From] {
				return bad(DetectConflictingDigest, "certificate prepare does not match")
			}
			if !r.verify(p, p.From) {
				return bad(DetectBadSignature, "certificate prepare signature")
			}
			from[p.From] = true
		}
		if len(from) < 2*r.f {
			return bad(DetectConflictingDigest, "certificate with too few prepares")
		}
	}
	return true
}

func (r *Replica) validCheckpointProof(proof []*Message, n uint64) bool {
	from := map[uint32]bool{}
	for _, c := range proof {
		if c == nil || c.Type != MsgCheckpoint || c.Seq != n || c.Digest != proof[0].Digest ||
			int(c.From) >= r.cfg.N || from[c.From] || !r.verify(c, c.From) {
			return false
		}
		from[c.From] = true
	}
	return len(from) >= r.quorum()
}

// newViewPrePrepares derives, from 2f+1 view-changes, the stable
// checkpoint minS and the pre-prepares (unsigned, view v) for (minS, maxS]:
// the request of the highest-view certificate for each sequence number,
// or the null request where none prepared.
func (r *Replica) newViewPrePrepares(v uint64, vcs []*Message) (minS uint64, proof []*Message, pps []*Message) {
	best := map[uint64]*Message{}
	var maxS uint64
	for _, vc := range vcs {
		if vc.Seq > minS || proof == nil && vc.Seq == minS {
			minS, proof = vc.Seq, vc.Checkpoints
		}
	}
	for _, vc := range vcs {
		for _, c := range vc.Prepared {
			pp := c.PrePrepare
			if pp.Seq <= minS {
				continue
			}
			if b := best[pp.Seq]; b == nil || pp.View > b.View {
				best[pp.Seq] = pp
			}
			maxS = max(maxS, pp.Seq)
		}
	}
	for n := minS + 1; n <= maxS; n++ {
		pp := &Message{Type: MsgPrePrepare, From: r.primaryOf(v), View: v, Seq: n}
		if b := best[n]; b != nil {
			pp.Digest, pp.Batch = b.Digest, b.Batch
		}
		pps = append(pps, pp)
	}
	return minS, proof, pps
}

func (r *Replica) maybeNewView(o *Output, v uint64) {
	if r.primaryOf(v) != r.cfg.ID || r.sentNewView >= v || v <= r.view {
		return
	}
	byRep := r.viewChanges[v]
	if len(byRep) < r.quorum() {
		return
	}
	vcs := make([]*Message, 0, len(byRep))
	for _, vc := range byRep {
		vcs = append(vcs, vc)
	}
	sort.Slice(vcs, func(i, j int) bool { return vcs[i].From < vcs[j].From })
	vcs = vcs[:r.quorum()]
	minS, proof, pps := r.newViewPrePrepares(v, vcs)
	for _, pp := range pps {
		r.sign(pp) // the signature does not cover the batch
	}
	nv := r.sign(&Message{Type: MsgNewView, View: v, ViewChanges: vcs, PrePrepares: pps})
	r.sentNewView, r.newViewMsg = v, nv
	o.send(Broadcast, nv)
	r.enterView(o, v, minS, proof, pps)
}

func (r *Replica) onNewView(o *Output, m *Message) {
	v := m.View
	if v <= r.view || m.From != r.primaryOf(v) {
		return
	}
	from := map[uint32]bool{}
	for _, vc := range m.ViewChanges {
		if vc == nil || vc.Type != MsgViewChange || vc.View != v || int(vc.From) >= r.cfg.N || from[vc.From] {
			r.detect(o, DetectConflictingDigest, m.From, v, 0, "new-view with a malformed view-change")
			return
		}
		if !r.verify(vc, vc.From) {
			r.detect(o, DetectBadSignature, m.From, v, 0, "new-view relays a forged view-change")
			return
		}
		if !r.validViewChange(o, vc) {
			return
		}
		from[vc.From] = true
	}
	if len(from) < r.quorum() {
		r.detect(o, DetectConflictingDigest, m.From, v, 0, "new-view with %d view-changes", len(from))
		return
	}
	minS, proof, want := r.newViewPrePrepares(v, m.ViewChanges)
	if len(want) != len(m.PrePrepares) {
		r.detect(o, DetectConflictingDigest, m.From, v, 0, "new-view has %d pre-prepares, the view-changes give %d", len(m.PrePrepares), len(want))
		return
	}
	for i, pp := range m.PrePrepares {
		if pp == nil || pp.Type != MsgPrePrepare || pp.From != m.From || pp.View != v || pp.Seq != want[i].Seq || pp.Digest != want[i].Digest {
			r.detect(o, DetectConflictingDigest, m.From, v, want[i].Seq, "new-view pre-prepare differs from the view-changes")
			return
		}
		if !r.verify(pp, m.From) {
			r.detect(o, DetectBadSignature, m.From, v, pp.Seq, "new-view pre-prepare signature")
			return
		}
		if !r.checkPrePrepare(o, pp) {
			return
		}
	}
	r.newViewMsg = m
	r.enterView(o, v, minS, proof, m.PrePrepares)
}

// enterView installs view v from a verified new-view and redoes the
// protocol for the sequence numbers it carries.
func (r *Replica) enterView(o *Output, v, minS uint64, proof []*Message, pps []*Message) {
	r.view, r.inViewChange, r.targetView = v, false, v
	r.timer = 0
	o.NewView = true
	for w := range r.viewChanges {
		if w <= v {
			delete(r.viewChanges, w)
		}
	}
	if minS > r.low {
		for _, c := range proof {
			r.storeCheckpoint(o, c)
		}
	}
	for n := range r.slots {
		if n > r.low {
			delete(r.slots, n)
		}
	}
	r.assigned = map[reqKey]uint64{}
	r.nextSeq = max(r.low, minS)
	for _, pp := range pps {
		r.nextSeq = max(r.nextSeq, pp.Seq)
		if pp.Seq <= r.low {
			continue
		}
		for _, req := range pp.Batch {
			r.assigned[reqKey{req.Client, req.Timestamp}] = pp.Seq
		}
		r.acceptPrePrepare(o, r.slotFor(pp.Seq, v), pp)
	}
	if len(r.pending) > 0 {
		r.timer = r.timeout
	}
	r.assignPending(o)
}
