package pbft

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// NodeConfig configures a Node: a replica plus a client, driven by a
// ticker over a Transport.
type NodeConfig struct {
	Replica Config
	// Tick is the duration of one replica tick.
	Tick time.Duration
	// RequestRetry is how long the client waits for f+1 replies before it
	// sends the request to every replica again.
	RequestRetry time.Duration
	// MaxMessageBytes bounds a received frame.
	MaxMessageBytes int
	// FirstTimestamp seeds the client's request timestamps; it must exceed
	// every timestamp this id used before (a restart uses the wall clock).
	FirstTimestamp uint64
}

// Validate reports the first bad setting.
func (c NodeConfig) Validate() error {
	if err := c.Replica.Validate(); err != nil {
		return err
	}
	switch {
	case c.Tick <= 0:
		return fmt.Errorf("pbft: Tick %v must be positive", c.Tick)
	case c.RequestRetry < c.Tick:
		return fmt.Errorf("pbft: RequestRetry %v is below Tick %v", c.RequestRetry, c.Tick)
	case c.MaxMessageBytes < 1024:
		return fmt.Errorf("pbft: MaxMessageBytes %d is below 1024", c.MaxMessageBytes)
	}
	return nil
}

// Hooks observe a Node; each is called with the node's lock held, so it
// must be quick and must not call back into the Node.
type Hooks struct {
	OnDetection func(Detection)
	// OnNewView is called when the replica enters a view; primary tells
	// whether it is the new primary.
	OnNewView func(view uint64, primary bool)
	OnExecute func(Execution)
}

// ErrStopped is returned by Propose after Close.
var ErrStopped = errors.New("pbft: node stopped")

// Node runs one replica and one client over a transport.
type Node struct {
	cfg   NodeConfig
	tr    Transport
	hooks Hooks

	mu        sync.Mutex
	rep       *Replica
	client    *Client
	waiters   map[uint64]*waiter
	offenders map[uint32]map[string]int

	done      chan struct{}
	wg        sync.WaitGroup
	closeOnce sync.Once
}

type waiter struct {
	req    *Message
	sentAt time.Time
	ch     chan []byte
}

type frameTo struct {
	to    uint32
	frame []byte
}

// NewNode starts a node. Close stops it (the transport is closed too).
func NewNode(cfg NodeConfig, app Application, tr Transport, hooks Hooks) (*Node, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	rep, err := NewReplica(cfg.Replica, app)
	if err != nil {
		return nil, err
	}
	rc := cfg.Replica
	n := &Node{cfg: cfg, tr: tr, hooks: hooks, rep: rep,
		client:  NewClient(rc.ID, rc.PrivateKey, rc.Keys, rc.N, cfg.FirstTimestamp),
		waiters: map[uint64]*waiter{}, offenders: map[uint32]map[string]int{}, done: make(chan struct{})}
	n.wg.Add(1)
	go n.run()
	return n, nil
}

func (n *Node) run() {
	defer n.wg.Done()
	t := time.NewTicker(n.cfg.Tick)
	defer t.Stop()
	last := time.Now()
	for {
		select {
		case <-n.done:
			return
		case p := <-n.tr.Recv():
			n.receive(p)
		case <-t.C:
		}
		// Ticks follow the wall clock even when a backlog of messages
		// keeps the loop busy, so timeouts mean what they say.
		for now := time.Now(); now.Sub(last) >= n.cfg.Tick; last = last.Add(n.cfg.Tick) {
			n.tick()
			if now.Sub(last) > 100*n.cfg.Tick {
				last = now // after a long stall (GC, suspended VM), do not replay every tick
			}
		}
	}
}

func (n *Node) receive(p Packet) {
	m, err := Decode(p.Frame, n.cfg.MaxMessageBytes)
	if err != nil {
		return // corrupt or truncated frame: like a lost one
	}
	var sends []frameTo
	n.mu.Lock()
	if m.Type == MsgReply {
		n.onReplyLocked(p.From, m)
	} else {
		n.dispatchLocked(n.rep.Step(p.From, m), &sends)
	}
	n.mu.Unlock()
	n.flush(sends)
}

func (n *Node) tick() {
	var sends []frameTo
	now := time.Now()
	n.mu.Lock()
	n.dispatchLocked(n.rep.Tick(), &sends)
	for _, w := range n.waiters {
		if now.Sub(w.sentAt) >= n.cfg.RequestRetry {
			w.sentAt = now
			n.broadcastRequestLocked(w.req, &sends)
		}
	}
	n.mu.Unlock()
	n.flush(sends)
}

func (n *Node) flush(sends []frameTo) {
	for _, s := range sends {
		n.tr.Send(s.to, s.frame)
	}
}

// dispatchLocked turns replica output into frames, feeding messages
// addressed to this node back in. A replica has already applied its own
// broadcasts, so they go to the others only.
func (n *Node) dispatchLocked(o Output, sends *[]frameTo) {
	self := n.cfg.Replica.ID
	queue := []Output{o}
	for len(queue) > 0 {
		o := queue[0]
		queue = queue[1:]
		for _, d := range o.Detections {
			byType := n.offenders[d.Offender]
			if byType == nil {
				byType = map[string]int{}
				n.offenders[d.Offender] = byType
			}
			byType[d.Type]++
			if n.hooks.OnDetection != nil {
				n.hooks.OnDetection(d)
			}
		}
		if o.NewView && n.hooks.OnNewView != nil {
			n.hooks.OnNewView(n.rep.View(), n.rep.Primary() == self)
		}
		if n.hooks.OnExecute != nil {
			for _, e := range o.Executed {
				n.hooks.OnExecute(e)
			}
		}
		for _, ob := range o.Send {
			switch {
			case ob.To == Broadcast:
				frame := ob.Msg.Encode()
				for id := uint32(0); id < uint32(n.cfg.Replica.N); id++ {
					if id != self {
						*sends = append(*sends, frameTo{id, frame})
					}
				}
			case ob.To == self && ob.Msg.Type == MsgReply:
				n.onReplyLocked(self, ob.Msg)
			case ob.To == self:
				queue = append(queue, n.rep.Step(self, ob.Msg))
			default:
				*sends = append(*sends, frameTo{ob.To, ob.Msg.Encode()})
			}
		}
	}
}

func (n *Node) onReplyLocked(from uint32, m *Message) {
	ts, result, done := n.client.OnReply(from, m)
	if !done {
		return
	}
	if w := n.waiters[ts]; w != nil {
		delete(n.waiters, ts)
		w.ch <- result
	}
}

func (n *Node) broadcastRequestLocked(req *Message, sends *[]frameTo) {
	n.dispatchLocked(n.rep.Step(n.cfg.Replica.ID, req), sends)
	frame := req.Encode()
	for id := uint32(0); id < uint32(n.cfg.Replica.N); id++ {
		if id != n.cfg.Replica.ID {
			*sends = append(*sends, frameTo{id, frame})
		}
	}
}

// Propose submits op and returns its result once f+1 replicas replied
// with the same result.
func (n *Node) Propose(ctx context.Context, op []byte) ([]byte, error) {
	select {
	case <-n.done:
		return nil, ErrStopped
	default:
	}
	var sends []frameTo
	n.mu.Lock()
	req := n.client.NewRequest(op)
	w := &waiter{req: req, sentAt: time.Now(), ch: make(chan []byte, 1)}
	n.waiters[req.Timestamp] = w
	n.broadcastRequestLocked(req, &sends)
	n.mu.Unlock()
	n.flush(sends)
	select {
	case res := <-w.ch:
		return res, nil
	case <-ctx.Done():
	case <-n.done:
	}
	n.mu.Lock()
	delete(n.waiters, req.Timestamp)
	n.client.Forget(req.Timestamp)
	n.mu.Unlock()
	select {
	case res := <-w.ch: // the reply raced the cancellation
		return res, nil
	default:
	}
	if ctx.Err() != nil {
		return nil, fmt.Errorf("pbft: propose: %w", ctx.Err())
	}
	return nil, ErrStopped
}

// Status is a snapshot of a replica's protocol state.
type Status struct {
	View         uint64
	Primary      uint32
	InViewChange bool
	LastExecuted uint64
	Stable       uint64
	LogSize      int
}

// Status returns the replica's protocol state.
func (n *Node) Status() Status {
	n.mu.Lock()
	defer n.mu.Unlock()
	return Status{View: n.rep.View(), Primary: n.rep.Primary(), InViewChange: n.rep.InViewChange(),
		LastExecuted: n.rep.LastExecuted(), Stable: n.rep.StableCheckpoint(), LogSize: n.rep.LogSize()}
}

// Offenders returns, per replica, the detections this node recorded.
func (n *Node) Offenders() map[uint32]map[string]int {
	n.mu.Lock()
	defer n.mu.Unlock()
	out := make(map[uint32]map[string]int, len(n.offenders))
	for id, byType := range n.offenders {
		c := make(map[string]int, len(byType))
		for k, v := range byType {
			c[k] = v
		}
		out[id] = c
	}
	return out
}

// WithApp runs fn while no message is being applied, so fn may read the
// application's state.
func (n *Node) WithApp(fn func()) {
	n.mu.Lock()
	defer n.mu.Unlock()
	fn()
}

// Close stops the node and closes its transport. Safe to call twice.
func (n *Node) Close() error {
	var err error
	n.closeOnce.Do(func() {
		close(n.done)
		n.wg.Wait()
		err = n.tr.Close()
	})
	return err
}
