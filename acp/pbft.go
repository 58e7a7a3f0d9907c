package acp

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/dwcp/dwcp/acp/internal/pbft"
	"github.com/dwcp/dwcp/metrics"
)

// PBFTConfig configures one PBFT replica (which is also a client).
type PBFTConfig struct {
	// ID is the replica's index (0..N-1) in Keys.
	ID uint32
	// N is the number of replicas, 3f+1 with f >= 1.
	N int
	// Keys holds every replica's ed25519 public key, indexed by id.
	Keys []ed25519.PublicKey
	// PrivateKey is this replica's signing key.
	PrivateKey ed25519.PrivateKey
	// BindAddr is where the TCP transport listens ("127.0.0.1:0" picks a
	// port); peers are set with SetPeer.
	BindAddr string

	// Tick is the protocol clock's resolution.
	Tick time.Duration
	// ViewChangeTimeout is how long a backup waits for a pending request
	// before it suspects the primary (doubling per failed view change).
	ViewChangeTimeout time.Duration
	// RetransmitInterval is how often unfinished work is resent.
	RetransmitInterval time.Duration
	// RequestRetry is how long the client waits before resending a request.
	RequestRetry time.Duration
	// CheckpointInterval and Window are PBFT's K and L.
	CheckpointInterval uint64
	Window             uint64
	// MaxMessageBytes bounds one frame (and so the registry snapshot a
	// state transfer can carry).
	MaxMessageBytes int
	// MaxBatch is the most requests ordered at one sequence number;
	// Pipeline how many sequence numbers the primary keeps in flight
	// before it batches what arrives meanwhile.
	MaxBatch int
	Pipeline int
}

// DefaultPBFTConfig returns settings for replica id of n on a WAN: the
// view-change timeout is well above cross-continent RTTs.
func DefaultPBFTConfig(id uint32, n int) PBFTConfig {
	return PBFTConfig{ID: id, N: n, BindAddr: "127.0.0.1:0", Tick: 10 * time.Millisecond,
		ViewChangeTimeout: 2 * time.Second, RetransmitInterval: 200 * time.Millisecond,
		RequestRetry: time.Second, CheckpointInterval: 64, Window: 256,
		MaxMessageBytes: pbft.DefaultMaxMessageBytes, MaxBatch: 64, Pipeline: 2}
}

func (c PBFTConfig) nodeConfig() (pbft.NodeConfig, error) {
	if c.Tick <= 0 {
		return pbft.NodeConfig{}, fmt.Errorf("acp: PBFTConfig.Tick %v must be positive", c.Tick)
	}
	if c.ViewChangeTimeout < 2*c.Tick {
		return pbft.NodeConfig{}, fmt.Errorf("acp: PBFTConfig.ViewChangeTimeout %v is below two ticks (%v)", c.ViewChangeTimeout, 2*c.Tick)
	}
	if c.RetransmitInterval < c.Tick {
		return pbft.NodeConfig{}, fmt.Errorf("acp: PBFTConfig.RetransmitInterval %v is below one tick (%v)", c.RetransmitInterval, c.Tick)
	}
	rc := pbft.Config{ID: c.ID, N: c.N, Keys: c.Keys, PrivateKey: c.PrivateKey,
		CheckpointInterval: c.CheckpointInterval, Window: c.Window,
		ViewChangeTicks: int(c.ViewChangeTimeout / c.Tick), RetransmitTicks: int(c.RetransmitInterval / c.Tick),
		ClientWindow: 256, MaxBatch: c.MaxBatch, Pipeline: c.Pipeline}
	nc := pbft.NodeConfig{Replica: rc, Tick: c.Tick, RequestRetry: c.RequestRetry,
		MaxMessageBytes: c.MaxMessageBytes, FirstTimestamp: uint64(time.Now().UnixNano())}
	if err := nc.Validate(); err != nil {
		return pbft.NodeConfig{}, fmt.Errorf("acp: PBFTConfig: %w", err)
	}
	return nc, nil
}

// Validate reports the first bad setting.
func (c PBFTConfig) Validate() error {
	if c.BindAddr == "" {
		return errors.New("acp: PBFTConfig.BindAddr is empty")
	}
	_, err := c.nodeConfig()
	return err
}

// GenerateKeys returns n fresh ed25519 key pairs.
func GenerateKeys(n int) ([]ed25519.PublicKey, []ed25519.PrivateKey, error) {
	pubs := make([]ed25519.PublicKey, n)
	privs := make([]ed25519.PrivateKey, n)
	for i := range pubs {
		pub, priv, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			return nil, nil, fmt.Errorf("acp: generate key: %w", err)
		}
		pubs[i], privs[i] = pub, priv
	}
	return pubs, privs, nil
}

// PBFTNode is one PBFT replica of the ownership registry, reachable over
// TCP. Its Propose acts as a PBFT client: it sends the request to every
// replica and returns once f+1 of them replied with the same result.
type PBFTNode struct {
	cfg   PBFTConfig
	node  *pbft.Node
	tcp   *pbft.TCPTransport
	reg   *Registry
	obs   observer
	m     *metrics.Metrics
	close sync.Once
	err   error
}

// NewPBFTNode starts a replica listening on cfg.BindAddr; give it its
// peers' addresses with SetPeer.
func NewPBFTNode(cfg PBFTConfig, m *metrics.Metrics) (*PBFTNode, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	tcp, err := pbft.ListenTCP(cfg.ID, cfg.BindAddr, cfg.MaxMessageBytes)
	if err != nil {
		return nil, err
	}
	n, err := newPBFTNode(cfg, tcp, m)
	if err != nil {
		tcp.Close()
		return nil, err
	}
	n.tcp = tcp
	return n, nil
}

func newPBFTNode(cfg PBFTConfig, tr pbft.Transport, m *metrics.Metrics) (*PBFTNode, error) {
	nc, err := cfg.nodeConfig()
	if err != nil {
		return nil, err
	}
	if m == nil {
		m = metrics.New(nil)
	}
	p := &PBFTNode{cfg: cfg, reg: NewRegistry(), obs: observer{m: m, algorithm: metrics.ConsensusPBFT}, m: m}
	p.obs.quorum(2*pbft.F(cfg.N) + 1)
	hooks := pbft.Hooks{
		OnDetection: func(d pbft.Detection) {
			m.ACPByzantineDetections.WithLabelValues(d.Type).Inc()
		},
		OnNewView: func(_ uint64, primary bool) {
			if primary { // counted once per view change, by its new primary
				p.obs.election()
			}
		},
	}
	node, err := pbft.NewNode(nc, registryApp{p.reg}, tr, hooks)
	if err != nil {
		return nil, fmt.Errorf("acp: %w", err)
	}
	p.node = node
	return p, nil
}

// registryApp adapts Registry to pbft.Application.
type registryApp struct{ r *Registry }

func (a registryApp) Apply(op []byte) []byte        { return a.r.Apply(op) }
func (a registryApp) Snapshot() []byte              { return a.r.Snapshot() }
func (a registryApp) Restore(snapshot []byte) error { return a.r.Restore(snapshot) }

// Addr returns the TCP address the replica listens on.
func (p *PBFTNode) Addr() string {
	if p.tcp == nil {
		return ""
	}
	return p.tcp.Addr()
}

// SetPeer records replica id's address.
func (p *PBFTNode) SetPeer(id uint32, addr string) {
	if p.tcp != nil {
		p.tcp.SetPeer(id, addr)
	}
}

// Propose implements Consensus.
func (p *PBFTNode) Propose(ctx context.Context, cmd []byte) ([]byte, error) {
	start := time.Now()
	out, err := p.node.Propose(ctx, cmd)
	if err != nil {
		p.obs.failed()
		if errors.Is(err, pbft.ErrStopped) {
			return nil, fmt.Errorf("%w: %v", ErrClosed, err)
		}
		return nil, fmt.Errorf("acp: pbft propose: %w", err)
	}
	p.obs.committed(start, p.cfg.N)
	return out, nil
}

func pbftID(i uint32) string { return "pbft-" + strconv.Itoa(int(i)) }

// Leader implements Consensus: the primary of the replica's current view.
func (p *PBFTNode) Leader() string {
	st := p.node.Status()
	if st.InViewChange {
		return ""
	}
	return pbftID(st.Primary)
}

// Members implements Consensus.
func (p *PBFTNode) Members() []string {
	ids := make([]string, p.cfg.N)
	for i := range ids {
		ids[i] = pbftID(uint32(i))
	}
	return ids
}

// Algorithm implements Consensus.
func (p *PBFTNode) Algorithm() string { return metrics.ConsensusPBFT }

// View implements Consensus.
func (p *PBFTNode) View(fn func(r *Registry)) { p.node.WithApp(func() { fn(p.reg) }) }

// Status returns the replica's protocol state (view, executed, stable
// checkpoint, log size).
func (p *PBFTNode) Status() pbft.Status { return p.node.Status() }

// Offenders returns, per replica id, the Byzantine behaviour this replica
// detected from it, by detection type.
func (p *PBFTNode) Offenders() map[uint32]map[string]int { return p.node.Offenders() }

// Close implements Consensus.
func (p *PBFTNode) Close() error {
	p.close.Do(func() { p.err = p.node.Close() })
	return p.err
}

// PBFTCluster runs N PBFT replicas in this process on loopback TCP, with
// fresh keys. It implements Consensus through the first running replica.
type PBFTCluster struct {
	mu    sync.Mutex
	nodes []*PBFTNode
}

// NewPBFTCluster starts n replicas configured from base (ID, N, keys and
// BindAddr are set per replica).
func NewPBFTCluster(ctx context.Context, n int, base PBFTConfig, m *metrics.Metrics) (*PBFTCluster, error) {
	if n < 4 {
		return nil, fmt.Errorf("acp: pbft cluster size %d, need at least 4 (3f+1)", n)
	}
	if m == nil {
		m = metrics.New(nil)
	}
	pubs, privs, err := GenerateKeys(n)
	if err != nil {
		return nil, err
	}
	c := &PBFTCluster{}
	for i := 0; i < n; i++ {
		cfg := base
		cfg.ID, cfg.N, cfg.Keys, cfg.PrivateKey, cfg.BindAddr = uint32(i), n, pubs, privs[i], "127.0.0.1:0"
		node, err := NewPBFTNode(cfg, m)
		if err != nil {
			c.Close()
			return nil, err
		}
		c.nodes = append(c.nodes, node)
	}
	for _, a := range c.nodes {
		for j, b := range c.nodes {
			a.SetPeer(uint32(j), b.Addr())
		}
	}
	if err := ctx.Err(); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// Node returns replica i (nil after Kill).
func (c *PBFTCluster) Node(i int) *PBFTNode {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.nodes[i]
}

// Kill crashes replica i.
func (c *PBFTCluster) Kill(i int) error {
	c.mu.Lock()
	n := c.nodes[i]
	c.nodes[i] = nil
	c.mu.Unlock()
	if n == nil {
		return nil
	}
	return n.Close()
}

func (c *PBFTCluster) any() *PBFTNode {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, n := range c.nodes {
		if n != nil {
			return n
		}
	}
	return nil
}

// Propose implements Consensus.
func (c *PBFTCluster) Propose(ctx context.Context, cmd []byte) ([]byte, error) {
	n := c.any()
	if n == nil {
		return nil, ErrClosed
	}
	return n.Propose(ctx, cmd)
}

// Leader implements Consensus.
func (c *PBFTCluster) Leader() string {
	if n := c.any(); n != nil {
		return n.Leader()
	}
	return ""
}

// Members implements Consensus.
func (c *PBFTCluster) Members() []string {
	if n := c.any(); n != nil {
		return n.Members()
	}
	return nil
}

// Algorithm implements Consensus.
func (c *PBFTCluster) Algorithm() string { return metrics.ConsensusPBFT }

// View implements Consensus with the replica that has executed the most:
// a result accepted by the client was executed by at least one replica, so
// a read after Propose sees it (read-your-writes in process).
func (c *PBFTCluster) View(fn func(r *Registry)) {
	c.mu.Lock()
	var best *PBFTNode
	var bestExec uint64
	for _, n := range c.nodes {
		if n == nil {
			continue
		}
		if e := n.Status().LastExecuted; best == nil || e > bestExec {
			best, bestExec = n, e
		}
	}
	c.mu.Unlock()
	if best == nil {
		fn(NewRegistry())
		return
	}
	best.View(fn)
}

// Close implements Consensus.
func (c *PBFTCluster) Close() error {
	c.mu.Lock()
	nodes := c.nodes
	c.nodes = make([]*PBFTNode, len(nodes))
	c.mu.Unlock()
	var errs []error
	for _, n := range nodes {
		if n != nil {
			errs = append(errs, n.Close())
		}
	}
	return errors.Join(errs...)
}
