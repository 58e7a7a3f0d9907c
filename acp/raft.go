package acp

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/dwcp/dwcp/metrics"
	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
)

// RaftConfig configures one Raft replica.
type RaftConfig struct {
	// ID is the replica's stable server id.
	ID string
	// BindAddr is the TCP address to listen on; "127.0.0.1:0" picks a port.
	BindAddr string
	// DataDir holds raft.db (BoltDB log and stable store) and snapshots/.
	// Restarting with the same DataDir recovers the replica's state.
	DataDir string
	// NoSync skips fsync on log writes. It loses acknowledged commits on a
	// power cut; only for benchmarks that want to separate disk from network.
	NoSync bool

	HeartbeatTimeout   time.Duration
	ElectionTimeout    time.Duration
	LeaderLeaseTimeout time.Duration
	CommitTimeout      time.Duration
	// SnapshotThreshold is the number of log entries after which a snapshot
	// is taken (checked every SnapshotInterval).
	SnapshotThreshold uint64
	SnapshotInterval  time.Duration
	// TrailingLogs is how many entries a snapshot leaves in the log, so
	// slow followers can catch up without a snapshot install.
	TrailingLogs uint64
	// SnapshotRetain is how many snapshot files to keep.
	SnapshotRetain int
	// TransportTimeout bounds one RPC on the TCP transport.
	TransportTimeout time.Duration

	// Logger receives raft's logs; nil discards them.
	Logger hclog.Logger
	// Transport replaces the TCP transport (tests use raft's
	// InmemTransport); BindAddr is then ignored.
	Transport raft.Transport
}

// DefaultRaftConfig returns settings for a datacenter cluster (RTT well
// under 10 ms): failure detection in about half a second.
func DefaultRaftConfig(id, dataDir string) RaftConfig {
	return RaftConfig{
		ID:                 id,
		BindAddr:           "127.0.0.1:0",
		DataDir:            dataDir,
		HeartbeatTimeout:   500 * time.Millisecond,
		ElectionTimeout:    500 * time.Millisecond,
		LeaderLeaseTimeout: 250 * time.Millisecond,
		CommitTimeout:      10 * time.Millisecond,
		SnapshotThreshold:  8192,
		SnapshotInterval:   30 * time.Second,
		TrailingLogs:       10240,
		SnapshotRetain:     2,
		TransportTimeout:   2 * time.Second,
	}
}

// Validate reports the first bad setting.
func (c RaftConfig) Validate() error {
	switch {
	case c.ID == "":
		return errors.New("acp: RaftConfig.ID is empty")
	case c.DataDir == "":
		return errors.New("acp: RaftConfig.DataDir is empty")
	case c.Transport == nil && c.BindAddr == "":
		return errors.New("acp: RaftConfig.BindAddr is empty and no Transport given")
	case c.HeartbeatTimeout < 5*time.Millisecond:
		return fmt.Errorf("acp: RaftConfig.HeartbeatTimeout %v is below 5ms", c.HeartbeatTimeout)
	case c.ElectionTimeout < c.HeartbeatTimeout:
		return fmt.Errorf("acp: RaftConfig.ElectionTimeout %v is below HeartbeatTimeout %v", c.ElectionTimeout, c.HeartbeatTimeout)
	case c.LeaderLeaseTimeout <= 0 || c.LeaderLeaseTimeout > c.HeartbeatTimeout:
		return fmt.Errorf("acp: RaftConfig.LeaderLeaseTimeout %v must be in (0, HeartbeatTimeout %v]", c.LeaderLeaseTimeout, c.HeartbeatTimeout)
	case c.CommitTimeout <= 0:
		return fmt.Errorf("acp: RaftConfig.CommitTimeout %v must be positive", c.CommitTimeout)
	case c.SnapshotThreshold == 0:
		return errors.New("acp: RaftConfig.SnapshotThreshold is 0")
	case c.SnapshotInterval <= 0:
		return fmt.Errorf("acp: RaftConfig.SnapshotInterval %v must be positive", c.SnapshotInterval)
	case c.SnapshotRetain < 1:
		return fmt.Errorf("acp: RaftConfig.SnapshotRetain %d must be at least 1", c.SnapshotRetain)
	case c.TransportTimeout <= 0:
		return fmt.Errorf("acp: RaftConfig.TransportTimeout %v must be positive", c.TransportTimeout)
	}
	return nil
}

// RaftNode is one Raft replica of the ownership registry. It implements
// Consensus; Propose succeeds only on the leader (others return an error
// wrapping ErrNotLeader that names the leader). RaftCluster forwards.
type RaftNode struct {
	cfg   RaftConfig
	raft  *raft.Raft
	fsm   *registryFSM
	trans raft.Transport
	store *raftboltdb.BoltStore
	obs   observer
	ob    *raft.Observer

	wg        sync.WaitGroup
	done      chan struct{}
	closeOnce sync.Once
	closeErr  error
}

// NewRaftNode opens (or creates) the replica's stores under cfg.DataDir and
// starts it. A replica with no existing state waits to be bootstrapped
// (Bootstrap) or added by a leader (Join).
func NewRaftNode(cfg RaftConfig, m *metrics.Metrics) (*RaftNode, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if m == nil {
		m = metrics.New(nil)
	}
	logger := cfg.Logger
	if logger == nil {
		logger = hclog.NewNullLogger()
	}
	if err := os.MkdirAll(cfg.DataDir, 0o750); err != nil {
		return nil, fmt.Errorf("acp: raft data dir: %w", err)
	}
	store, err := raftboltdb.New(raftboltdb.Options{Path: filepath.Join(cfg.DataDir, "raft.db"), NoSync: cfg.NoSync})
	if err != nil {
		return nil, fmt.Errorf("acp: open raft log store: %w", err)
	}
	snaps, err := raft.NewFileSnapshotStoreWithLogger(cfg.DataDir, cfg.SnapshotRetain, logger)
	if err != nil {
		store.Close()
		return nil, fmt.Errorf("acp: open raft snapshot store: %w", err)
	}
	trans := cfg.Transport
	if trans == nil {
		nt, err := raft.NewTCPTransportWithLogger(cfg.BindAddr, nil, 4, cfg.TransportTimeout, logger)
		if err != nil {
			store.Close()
			return nil, fmt.Errorf("acp: raft transport on %s: %w", cfg.BindAddr, err)
		}
		trans = nt
	}
	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(cfg.ID)
	rc.Logger = logger
	rc.HeartbeatTimeout = cfg.HeartbeatTimeout
	rc.ElectionTimeout = cfg.ElectionTimeout
	rc.LeaderLeaseTimeout = cfg.LeaderLeaseTimeout
	rc.CommitTimeout = cfg.CommitTimeout
	rc.SnapshotThreshold = cfg.SnapshotThreshold
	rc.SnapshotInterval = cfg.SnapshotInterval
	rc.TrailingLogs = cfg.TrailingLogs
	if err := raft.ValidateConfig(rc); err != nil {
		closeTransport(trans, cfg.Transport == nil)
		store.Close()
		return nil, fmt.Errorf("acp: raft config: %w", err)
	}
	fsm := &registryFSM{reg: NewRegistry()}
	r, err := raft.NewRaft(rc, fsm, store, store, snaps, trans)
	if err != nil {
		closeTransport(trans, cfg.Transport == nil)
		store.Close()
		return nil, fmt.Errorf("acp: start raft: %w", err)
	}
	n := &RaftNode{cfg: cfg, raft: r, fsm: fsm, trans: trans, store: store,
		obs: observer{m: m, algorithm: metrics.ConsensusRaft}, done: make(chan struct{})}
	ch := make(chan raft.Observation, 16)
	n.ob = raft.NewObserver(ch, false, func(o *raft.Observation) bool {
		_, ok := o.Data.(raft.RaftState)
		return ok
	})
	r.RegisterObserver(n.ob)
	n.wg.Add(1)
	go n.watchLeadership(ch)
	return n, nil
}

func closeTransport(t raft.Transport, owned bool) {
	if c, ok := t.(raft.WithClose); ok && owned {
		c.Close()
	}
}

// watchLeadership counts elections won by this replica (so a cluster's
// replicas together count each election once) and keeps the quorum gauge.
func (n *RaftNode) watchLeadership(ch chan raft.Observation) {
	defer n.wg.Done()
	for {
		select {
		case <-n.done:
			return
		case o := <-ch:
			if o.Data.(raft.RaftState) == raft.Leader {
				n.obs.election()
				n.obs.quorum(len(n.Members())/2 + 1)
			}
		}
	}
}

// RaftPeer is one member of a bootstrap configuration.
type RaftPeer struct {
	ID   string
	Addr string
}

// ErrAlreadyBootstrapped is returned by Bootstrap on a replica that
// already has state (a restart): it must not be bootstrapped again.
var ErrAlreadyBootstrapped = errors.New("acp: raft replica already has state")

// Bootstrap writes the initial configuration. Call it on one replica of a
// new cluster (or on all with the same peers, as raft allows); on a
// restarted replica it returns ErrAlreadyBootstrapped, which is harmless.
func (n *RaftNode) Bootstrap(ctx context.Context, peers []RaftPeer) error {
	var conf raft.Configuration
	for _, p := range peers {
		conf.Servers = append(conf.Servers, raft.Server{Suffrage: raft.Voter, ID: raft.ServerID(p.ID), Address: raft.ServerAddress(p.Addr)})
	}
	err := waitFuture(ctx, n.raft.BootstrapCluster(conf))
	if errors.Is(err, raft.ErrCantBootstrap) {
		return fmt.Errorf("%w (%s)", ErrAlreadyBootstrapped, n.cfg.ID)
	}
	if err != nil {
		return fmt.Errorf("acp: bootstrap %s: %w", n.cfg.ID, err)
	}
	return nil
}

// waitFuture waits for a raft future or ctx. Raft resolves every future,
// at the latest on Shutdown, so the waiting goroutine always ends.
func waitFuture(ctx context.Context, f raft.Future) error {
	errc := make(chan error, 1)
	go func() { errc <- f.Error() }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// ID returns the replica's id.
func (n *RaftNode) ID() string { return n.cfg.ID }

// Addr returns the replica's transport address.
func (n *RaftNode) Addr() string { return string(n.trans.LocalAddr()) }

// IsLeader reports whether this replica is the leader.
func (n *RaftNode) IsLeader() bool { return n.raft.State() == raft.Leader }

// Algorithm implements Consensus.
func (n *RaftNode) Algorithm() string { return metrics.ConsensusRaft }

// Leader implements Consensus.
func (n *RaftNode) Leader() string {
	_, id := n.raft.LeaderWithID()
	return string(id)
}

// LeaderAddr returns the leader's transport address.
func (n *RaftNode) LeaderAddr() string {
	addr, _ := n.raft.LeaderWithID()
	return string(addr)
}

// Members implements Consensus: the voters of the latest configuration.
func (n *RaftNode) Members() []string {
	f := n.raft.GetConfiguration()
	if f.Error() != nil {
		return nil
	}
	var ids []string
	for _, s := range f.Configuration().Servers {
		if s.Suffrage == raft.Voter {
			ids = append(ids, string(s.ID))
		}
	}
	return ids
}

// View implements Consensus.
func (n *RaftNode) View(fn func(r *Registry)) {
	n.fsm.mu.Lock()
	defer n.fsm.mu.Unlock()
	fn(n.fsm.reg)
}

// AppliedIndex returns the index of the last log entry applied locally.
func (n *RaftNode) AppliedIndex() uint64 { return n.raft.AppliedIndex() }

// Propose implements Consensus.
func (n *RaftNode) Propose(ctx context.Context, cmd []byte) ([]byte, error) {
	start := time.Now()
	out, err := n.propose(ctx, cmd)
	if err != nil {
		n.obs.failed()
		return nil, err
	}
	n.obs.committed(start, len(n.Members()))
	return out, nil
}

func (n *RaftNode) propose(ctx context.Context, cmd []byte) ([]byte, error) {
	select {
	case <-n.done:
		return nil, ErrClosed
	default:
	}
	timeout := time.Duration(0)
	if dl, ok := ctx.Deadline(); ok {
		if timeout = time.Until(dl); timeout <= 0 {
			return nil, ctx.Err()
		}
	}
	f := n.raft.Apply(cmd, timeout)
	if err := waitFuture(ctx, f); err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("acp: raft propose: %w", err)
		}
		return nil, n.wrapErr(err)
	}
	out, ok := f.Response().([]byte)
	if !ok {
		return nil, fmt.Errorf("acp: raft propose: state machine returned %T", f.Response())
	}
	return out, nil
}

func (n *RaftNode) wrapErr(err error) error {
	switch {
	case errors.Is(err, raft.ErrNotLeader), errors.Is(err, raft.ErrLeadershipLost), errors.Is(err, raft.ErrLeadershipTransferInProgress):
		return fmt.Errorf("%w (%v; leader is %q)", ErrNotLeader, err, n.Leader())
	case errors.Is(err, raft.ErrRaftShutdown):
		return fmt.Errorf("%w: %v", ErrClosed, err)
	case errors.Is(err, raft.ErrEnqueueTimeout):
		return fmt.Errorf("%w: %v", ErrNoQuorum, err)
	}
	return fmt.Errorf("acp: raft: %w", err)
}

func ctxTimeout(ctx context.Context) time.Duration {
	if dl, ok := ctx.Deadline(); ok {
		if d := time.Until(dl); d > 0 {
			return d
		}
		return time.Nanosecond
	}
	return 0
}

// Join adds a voter (call on the leader).
func (n *RaftNode) Join(ctx context.Context, id, addr string) error {
	if err := waitFuture(ctx, n.raft.AddVoter(raft.ServerID(id), raft.ServerAddress(addr), 0, ctxTimeout(ctx))); err != nil {
		return fmt.Errorf("acp: add voter %s: %w", id, n.wrapErr(err))
	}
	n.obs.quorum(len(n.Members())/2 + 1)
	return nil
}

// Remove removes a member (call on the leader).
func (n *RaftNode) Remove(ctx context.Context, id string) error {
	if err := waitFuture(ctx, n.raft.RemoveServer(raft.ServerID(id), 0, ctxTimeout(ctx))); err != nil {
		return fmt.Errorf("acp: remove server %s: %w", id, n.wrapErr(err))
	}
	n.obs.quorum(len(n.Members())/2 + 1)
	return nil
}

// Snapshot takes a snapshot now and compacts the log behind it.
func (n *RaftNode) Snapshot(ctx context.Context) error {
	if err := waitFuture(ctx, n.raft.Snapshot()); err != nil {
		return fmt.Errorf("acp: snapshot %s: %w", n.cfg.ID, err)
	}
	return nil
}

// Close implements Consensus: it shuts raft down and closes the transport
// and the stores. Safe to call twice.
func (n *RaftNode) Close() error {
	n.closeOnce.Do(func() {
		close(n.done)
		n.raft.DeregisterObserver(n.ob)
		err := n.raft.Shutdown().Error()
		closeTransport(n.trans, n.cfg.Transport == nil)
		if cerr := n.store.Close(); err == nil {
			err = cerr
		}
		n.wg.Wait()
		n.closeErr = err
	})
	return n.closeErr
}

// registryFSM adapts Registry to raft.FSM.
type registryFSM struct {
	mu  sync.Mutex
	reg *Registry
}

func (f *registryFSM) Apply(l *raft.Log) interface{} {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.reg.Apply(l.Data)
}

func (f *registryFSM) Snapshot() (raft.FSMSnapshot, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return registrySnapshot(f.reg.Snapshot()), nil
}

// maxSnapshotBytes bounds what Restore reads; a registry of a million VMs
// is ~100 MB.
const maxSnapshotBytes = 1 << 30

func (f *registryFSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, maxSnapshotBytes+1))
	if err != nil {
		return fmt.Errorf("acp: read snapshot: %w", err)
	}
	if len(b) > maxSnapshotBytes {
		return fmt.Errorf("acp: snapshot exceeds %d bytes", maxSnapshotBytes)
	}
	reg := NewRegistry()
	if err := reg.Restore(b); err != nil {
		return err
	}
	f.mu.Lock()
	f.reg = reg
	f.mu.Unlock()
	return nil
}

type registrySnapshot []byte

func (s registrySnapshot) Persist(sink raft.SnapshotSink) error {
	if _, err := sink.Write(s); err != nil {
		sink.Cancel()
		return err
	}
	return sink.Close()
}

func (s registrySnapshot) Release() {}
