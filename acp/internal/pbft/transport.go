package pbft

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand"
	"net"
	"sync"
	"time"
)

// Packet is one frame received from a peer.
type Packet struct {
	From  uint32
	Frame []byte
}

// Transport carries frames between replicas and clients. Send is
// best-effort and must not block for long (PBFT retransmits what is lost).
type Transport interface {
	Send(to uint32, frame []byte)
	Recv() <-chan Packet
	Close() error
}

// ErrTransportClosed is returned after Close.
var ErrTransportClosed = errors.New("pbft: transport closed")

const inboxSize = 4096

// MemNetwork connects in-process endpoints and injects faults: loss,
// delay (which reorders), partitions and isolated nodes. Its randomness is
// seeded, so a test run can be repeated.
type MemNetwork struct {
	mu        sync.Mutex
	rng       *rand.Rand
	endpoints map[uint32]*memEndpoint
	drop      float64
	minDelay  time.Duration
	maxDelay  time.Duration
	group     map[uint32]int // partition group; absent = group 0
	cut       map[[2]uint32]bool
	wg        sync.WaitGroup
	closed    bool
}

// NewMemNetwork returns a network with no faults.
func NewMemNetwork(seed int64) *MemNetwork {
	return &MemNetwork{rng: rand.New(rand.NewSource(seed)), endpoints: map[uint32]*memEndpoint{},
		group: map[uint32]int{}, cut: map[[2]uint32]bool{}}
}

// Endpoint returns the transport of node id (creating it).
func (n *MemNetwork) Endpoint(id uint32) Transport {
	n.mu.Lock()
	defer n.mu.Unlock()
	if e, ok := n.endpoints[id]; ok {
		return e
	}
	e := &memEndpoint{net: n, id: id, inbox: make(chan Packet, inboxSize), done: make(chan struct{})}
	n.endpoints[id] = e
	return e
}

// SetLoss drops each frame with probability p.
func (n *MemNetwork) SetLoss(p float64) {
	n.mu.Lock()
	n.drop = p
	n.mu.Unlock()
}

// SetDelay delays each frame uniformly in [lo, hi]; frames overtake each
// other when hi > lo.
func (n *MemNetwork) SetDelay(lo, hi time.Duration) {
	n.mu.Lock()
	n.minDelay, n.maxDelay = lo, hi
	n.mu.Unlock()
}

// Partition splits the nodes into groups that cannot talk to each other;
// nodes not listed form one more group with each other.
func (n *MemNetwork) Partition(groups ...[]uint32) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.group = map[uint32]int{}
	for i, g := range groups {
		for _, id := range g {
			n.group[id] = i + 1
		}
	}
}

// Cut blocks frames from a to b (one direction).
func (n *MemNetwork) Cut(a, b uint32) {
	n.mu.Lock()
	n.cut[[2]uint32{a, b}] = true
	n.mu.Unlock()
}

// Heal removes partitions and cuts (loss and delay stay).
func (n *MemNetwork) Heal() {
	n.mu.Lock()
	n.group, n.cut = map[uint32]int{}, map[[2]uint32]bool{}
	n.mu.Unlock()
}

// Close stops delivering and waits for delayed frames in flight.
func (n *MemNetwork) Close() {
	n.mu.Lock()
	n.closed = true
	n.mu.Unlock()
	n.wg.Wait()
}

func (n *MemNetwork) send(from, to uint32, frame []byte) {
	n.mu.Lock()
	dst := n.endpoints[to]
	if n.closed || dst == nil || n.group[from] != n.group[to] || n.cut[[2]uint32{from, to}] ||
		(n.drop > 0 && n.rng.Float64() < n.drop) {
		n.mu.Unlock()
		return
	}
	delay := n.minDelay
	if n.maxDelay > n.minDelay {
		delay += time.Duration(n.rng.Int63n(int64(n.maxDelay - n.minDelay)))
	}
	p := Packet{From: from, Frame: append([]byte(nil), frame...)}
	if delay <= 0 {
		n.mu.Unlock()
		dst.deliver(p)
		return
	}
	n.wg.Add(1)
	n.mu.Unlock()
	time.AfterFunc(delay, func() {
		defer n.wg.Done()
		dst.deliver(p)
	})
}

type memEndpoint struct {
	net       *MemNetwork
	id        uint32
	inbox     chan Packet
	done      chan struct{}
	closeOnce sync.Once
}

func (e *memEndpoint) Send(to uint32, frame []byte) {
	select {
	case <-e.done:
		return
	default:
	}
	e.net.send(e.id, to, frame)
}

func (e *memEndpoint) deliver(p Packet) {
	select {
	case <-e.done:
	case e.inbox <- p:
	default: // receiver overloaded: the frame is lost, like a full socket buffer
	}
}

func (e *memEndpoint) Recv() <-chan Packet { return e.inbox }

func (e *memEndpoint) Close() error {
	e.closeOnce.Do(func() { close(e.done) })
	return nil
}

// TCPTransport carries frames over TCP: one outgoing connection per peer,
// each frame prefixed by its u32 length, the connection opened by a hello
// naming the sender. The hello is not authenticated; every message is
// signed, and a replica blames the link for a message claiming another
// sender.
type TCPTransport struct {
	id       uint32
	ln       net.Listener
	maxFrame int
	inbox    chan Packet

	mu     sync.Mutex
	peers  map[uint32]string
	out    map[uint32]*tcpPeer
	conns  map[net.Conn]struct{}
	closed bool
	done   chan struct{}
	wg     sync.WaitGroup
}

type tcpPeer struct {
	queue chan []byte
}

// ListenTCP listens on addr ("127.0.0.1:0" picks a port) for node id.
func ListenTCP(id uint32, addr string, maxFrame int) (*TCPTransport, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("pbft: listen %s: %w", addr, err)
	}
	t := &TCPTransport{id: id, ln: ln, maxFrame: maxFrame, inbox: make(chan Packet, inboxSize),
		peers: map[uint32]string{}, out: map[uint32]*tcpPeer{}, conns: map[net.Conn]struct{}{}, done: make(chan struct{})}
	t.wg.Add(1)
	go t.acceptLoop()
	return t, nil
}

// Addr returns the listening address.
func (t *TCPTransport) Addr() string { return t.ln.Addr().String() }

// SetPeer records the address of node id.
func (t *TCPTransport) SetPeer(id uint32, addr string) {
	t.mu.Lock()
	t.peers[id] = addr
	t.mu.Unlock()
}

// Recv implements Transport.
func (t *TCPTransport) Recv() <-chan Packet { return t.inbox }

// Send implements Transport: it queues the frame for the peer's writer and
// drops it if the queue is full or the peer unknown.
func (t *TCPTransport) Send(to uint32, frame []byte) {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return
	}
	p := t.out[to]
	if p == nil {
		addr, ok := t.peers[to]
		if !ok {
			t.mu.Unlock()
			return
		}
		p = &tcpPeer{queue: make(chan []byte, 1024)}
		t.out[to] = p
		t.wg.Add(1)
		go t.writeLoop(addr, p)
	}
	t.mu.Unlock()
	select {
	case p.queue <- frame:
	default:
	}
}

func (t *TCPTransport) track(c net.Conn) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		c.Close()
		return false
	}
	t.conns[c] = struct{}{}
	return true
}

func (t *TCPTransport) untrack(c net.Conn) {
	t.mu.Lock()
	delete(t.conns, c)
	t.mu.Unlock()
	c.Close()
}

// writeLoop owns the connection to one peer, redialling after errors.
func (t *TCPTransport) writeLoop(addr string, p *tcpPeer) {
	defer t.wg.Done()
	var conn net.Conn
	var w *bufio.Writer
	backoff := 5 * time.Millisecond
	defer func() {
		if conn != nil {
			t.untrack(conn)
		}
	}()
	for {
		var frame []byte
		select {
		case <-t.done:
			return
		case frame = <-p.queue:
		}
		if conn == nil {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			c, err := (&net.Dialer{}).DialContext(ctx, "tcp", addr)
			cancel()
			if err != nil {
				select { // drop the frame, back off
				case <-t.done:
					return
				case <-time.After(backoff):
				}
				backoff = min(2*backoff, time.Second)
				continue
			}
			if !t.track(c) {
				return
			}
			conn, w, backoff = c, bufio.NewWriter(c), 5*time.Millisecond
			var hello [4]byte
			binary.BigEndian.PutUint32(hello[:], t.id)
			w.Write(hello[:])
		}
		var hdr [4]byte
		binary.BigEndian.PutUint32(hdr[:], uint32(len(frame)))
		w.Write(hdr[:])
		w.Write(frame)
		// Batch what is already queued into one flush.
		for more := true; more; {
			select {
			case f := <-p.queue:
				binary.BigEndian.PutUint32(hdr[:], uint32(len(f)))
				w.Write(hdr[:])
				w.Write(f)
			default:
				more = false
			}
		}
		if err := w.Flush(); err != nil {
			t.untrack(conn)
			conn = nil
		}
	}
}

func (t *TCPTransport) acceptLoop() {
	defer t.wg.Done()
	for {
		c, err := t.ln.Accept()
		if err != nil {
			return
		}
		if !t.track(c) {
			return
		}
		t.wg.Add(1)
		go t.readLoop(c)
	}
}

func (t *TCPTransport) readLoop(c net.Conn) {
	defer t.wg.Done()
	defer t.untrack(c)
	r := bufio.NewReader(c)
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return
	}
	from := binary.BigEndian.Uint32(hdr[:])
	for {
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			return
		}
		n := binary.BigEndian.Uint32(hdr[:])
		if n > uint32(t.maxFrame) {
			return // a peer that violates the limit loses its connection
		}
		frame := make([]byte, n)
		if _, err := io.ReadFull(r, frame); err != nil {
			return
		}
		select {
		case t.inbox <- Packet{From: from, Frame: frame}:
		case <-t.done:
			return
		default: // overloaded: drop, PBFT retransmits
		}
	}
}

// Close stops the listener and every connection and waits for them.
func (t *TCPTransport) Close() error {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return nil
	}
	t.closed = true
	close(t.done)
	err := t.ln.Close()
	for c := range t.conns {
		c.Close()
	}
	t.mu.Unlock()
	t.wg.Wait()
	return err
}
