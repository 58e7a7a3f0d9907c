package ass

import (
	"context"
	"errors"
	"fmt"
	"math/rand"
	"sync"
	"time"
)

// ErrClosed is returned by operations on a closed Replica or Transport.
var ErrClosed = errors.New("ass: closed")

// Transport moves frames between replicas, addressed by the string each
// endpoint's Addr returns. Delivery is best effort: frames may be lost,
// duplicated or reordered, and the replica's protocol (acknowledgements,
// retransmission, digest exchange) tolerates all three.
//
// Rules for implementations: Send must not block on the network (queue the
// frame, or drop it and return an error) and must not call the handler
// itself; the handler may be called from several goroutines at once, and the
// frame it receives must not be reused by the transport afterwards; after
// Close returns the handler is not called again.
type Transport interface {
	// Addr is the address peers use to reach this endpoint.
	Addr() string
	// Start begins delivering inbound frames to handle.
	Start(handle func(frame []byte)) error
	// Send queues frame for the endpoint at addr. The transport owns frame
	// afterwards and the caller must not modify it.
	Send(ctx context.Context, addr string, frame []byte) error
	// Close stops the endpoint and waits for its goroutines.
	Close() error
}

// Faults are the impairments a MemNetwork applies to every frame.
type Faults struct {
	Drop      float64 // probability that a frame is lost
	Duplicate float64 // probability that a frame is delivered twice
	Reorder   bool    // deliver each batch of queued frames in random order
}

// MemNetwork is an in-memory network for tests and simulations. Frames wait
// in a queue until Deliver (or the goroutine of Run) hands them to their
// endpoints, which makes a seeded simulation fully deterministic: the same
// seed, faults and call sequence give the same deliveries. Partitions are
// checked at delivery time, so frames in flight when a partition starts are lost.
type MemNetwork struct {
	mu        sync.Mutex
	rng       *rand.Rand
	faults    Faults
	endpoints map[string]*MemEndpoint
	group     map[string]int // partition group of each address; absent = 0
	queue     []memPacket
	delivered int
	dropped   int
}

type memPacket struct {
	from, to string
	frame    []byte
}

// NewMemNetwork returns a network whose random choices come from seed.
func NewMemNetwork(seed int64) *MemNetwork {
	return &MemNetwork{rng: rand.New(rand.NewSource(seed)), endpoints: map[string]*MemEndpoint{}, group: map[string]int{}}
}

// SetFaults changes the impairments for frames sent from now on.
func (n *MemNetwork) SetFaults(f Faults) {
	n.mu.Lock()
	n.faults = f
	n.mu.Unlock()
}

// Partition splits the network: addresses in different groups cannot reach
// each other; addresses in no group form one more group together.
func (n *MemNetwork) Partition(groups ...[]string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.group = map[string]int{}
	for i, g := range groups {
		for _, a := range g {
			n.group[a] = i + 1
		}
	}
}

// Heal removes every partition.
func (n *MemNetwork) Heal() { n.Partition() }

// Endpoint returns a new endpoint with address addr.
func (n *MemNetwork) Endpoint(addr string) *MemEndpoint {
	return &MemEndpoint{net: n, addr: addr}
}

// Pending returns the number of frames waiting for delivery.
func (n *MemNetwork) Pending() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return len(n.queue)
}

// Stats returns how many frames were delivered and dropped so far.
func (n *MemNetwork) Stats() (delivered, dropped int) {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.delivered, n.dropped
}

func (n *MemNetwork) enqueue(p memPacket) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.faults.Drop > 0 && n.rng.Float64() < n.faults.Drop {
		n.dropped++
		return nil // a lost frame looks like a sent one to its sender
	}
	n.queue = append(n.queue, p)
	if n.faults.Duplicate > 0 && n.rng.Float64() < n.faults.Duplicate {
		n.queue = append(n.queue, p)
	}
	return nil
}

// Deliver hands every frame queued so far to its endpoint and returns how
// many were delivered. Frames sent by handlers during the call wait for the
// next call.
func (n *MemNetwork) Deliver() int {
	n.mu.Lock()
	batch := n.queue
	n.queue = nil
	if n.faults.Reorder {
		n.rng.Shuffle(len(batch), func(i, j int) { batch[i], batch[j] = batch[j], batch[i] })
	}
	type delivery struct {
		ep    *MemEndpoint
		frame []byte
	}
	var ready []delivery
	for _, p := range batch {
		ep := n.endpoints[p.to]
		if ep == nil || n.group[p.from] != n.group[p.to] {
			n.dropped++
			continue
		}
		ready = append(ready, delivery{ep, p.frame})
	}
	n.delivered += len(ready)
	n.mu.Unlock()
	for _, d := range ready {
		d.ep.deliver(d.frame)
	}
	return len(ready)
}

// Run delivers queued frames every interval until ctx ends; use it with
// replicas that were started, in tests that run in real time.
func (n *MemNetwork) Run(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			for n.Deliver() > 0 {
			}
		}
	}
}

// MemEndpoint is one address of a MemNetwork; it implements Transport.
type MemEndpoint struct {
	net  *MemNetwork
	addr string

	mu      sync.RWMutex
	handle  func([]byte)
	closed  bool
	pending sync.WaitGroup
}

// Addr implements Transport.
func (e *MemEndpoint) Addr() string { return e.addr }

// Start implements Transport.
func (e *MemEndpoint) Start(handle func([]byte)) error {
	e.net.mu.Lock()
	defer e.net.mu.Unlock()
	if old := e.net.endpoints[e.addr]; old != nil && old != e {
		return fmt.Errorf("ass: address %q already in use on this MemNetwork", e.addr)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return ErrClosed
	}
	e.handle = handle
	e.net.endpoints[e.addr] = e
	return nil
}

// Send implements Transport.
func (e *MemEndpoint) Send(_ context.Context, addr string, frame []byte) error {
	e.mu.RLock()
	closed := e.closed
	e.mu.RUnlock()
	if closed {
		return ErrClosed
	}
	return e.net.enqueue(memPacket{from: e.addr, to: addr, frame: frame})
}

func (e *MemEndpoint) deliver(frame []byte) {
	e.mu.RLock()
	if e.closed || e.handle == nil {
		e.mu.RUnlock()
		return
	}
	e.pending.Add(1)
	h := e.handle
	e.mu.RUnlock()
	defer e.pending.Done()
	h(frame)
}

// Close implements Transport; it waits for handlers that are running.
func (e *MemEndpoint) Close() error {
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return nil
	}
	e.closed = true
	e.mu.Unlock()
	e.net.mu.Lock()
	if e.net.endpoints[e.addr] == e {
		delete(e.net.endpoints, e.addr)
	}
	e.net.mu.Unlock()
	e.pending.Wait()
	return nil
}
