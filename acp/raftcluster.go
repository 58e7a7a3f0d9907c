package acp

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"time"

	"github.com/dwcp/dwcp/metrics"
)

// RaftCluster runs N Raft replicas in this process, each with its own
// BoltDB store under Dir and its own TCP transport on loopback. It
// implements Consensus by forwarding each proposal to the current leader,
// which is what examples and the engine's tests need; a production
// deployment runs one RaftNode per host instead.
type RaftCluster struct {
	mu     sync.Mutex
	nodes  []*RaftNode // nil while killed
	cfgs   []RaftConfig
	m      *metrics.Metrics
	closed bool
}

// NewRaftCluster starts n replicas (ids "raft-0".."raft-<n-1>") configured
// from base (ID, DataDir and BindAddr are set per replica under dir),
// bootstraps them and waits for a leader or ctx.
func NewRaftCluster(ctx context.Context, n int, dir string, base RaftConfig, m *metrics.Metrics) (*RaftCluster, error) {
	if n < 1 {
		return nil, fmt.Errorf("acp: raft cluster size %d must be at least 1", n)
	}
	if m == nil {
		m = metrics.New(nil)
	}
	c := &RaftCluster{m: m}
	peers := make([]RaftPeer, n)
	for i := 0; i < n; i++ {
		cfg := base
		cfg.ID = fmt.Sprintf("raft-%d", i)
		cfg.DataDir = filepath.Join(dir, cfg.ID)
		cfg.BindAddr = "127.0.0.1:0"
		cfg.Transport = nil
		node, err := NewRaftNode(cfg, m)
		if err != nil {
			c.Close()
			return nil, err
		}
		// Restarts must come back on the same address, which the other
		// replicas' configuration names.
		cfg.BindAddr = node.Addr()
		c.nodes, c.cfgs = append(c.nodes, node), append(c.cfgs, cfg)
		peers[i] = RaftPeer{ID: cfg.ID, Addr: node.Addr()}
	}
	if err := c.nodes[0].Bootstrap(ctx, peers); err != nil {
		c.Close()
		return nil, err
	}
	if _, err := c.WaitLeader(ctx); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// Size returns the number of replicas (running or killed).
func (c *RaftCluster) Size() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.cfgs)
}

// Node returns replica i, or nil while it is killed.
func (c *RaftCluster) Node(i int) *RaftNode {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.nodes[i]
}

// LeaderIndex returns the index of the replica that believes it leads, or -1.
func (c *RaftCluster) LeaderIndex() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, n := range c.nodes {
		if n != nil && n.IsLeader() {
			return i
		}
	}
	return -1
}

// WaitLeader waits until some running replica is leader.
func (c *RaftCluster) WaitLeader(ctx context.Context) (int, error) {
	t := time.NewTicker(5 * time.Millisecond)
	defer t.Stop()
	for {
		if i := c.LeaderIndex(); i >= 0 {
			return i, nil
		}
		select {
		case <-ctx.Done():
			return -1, fmt.Errorf("acp: waiting for a raft leader: %w", ctx.Err())
		case <-t.C:
		}
	}
}

// Kill stops replica i abruptly (its disk state stays).
func (c *RaftCluster) Kill(i int) error {
	c.mu.Lock()
	n := c.nodes[i]
	c.nodes[i] = nil
	c.mu.Unlock()
	if n == nil {
		return nil
	}
	return n.Close()
}

// Restart starts replica i again from its data directory.
func (c *RaftCluster) Restart(i int) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return ErrClosed
	}
	if c.nodes[i] != nil {
		return fmt.Errorf("acp: replica %d is running", i)
	}
	n, err := NewRaftNode(c.cfgs[i], c.m)
	if err != nil {
		return err
	}
	c.nodes[i] = n
	return nil
}

// Propose implements Consensus, retrying on the new leader after a
// leadership change until ctx ends. Commands are idempotent under retry
// (see Registry), so a retry after an ambiguous failure is safe.
func (c *RaftCluster) Propose(ctx context.Context, cmd []byte) ([]byte, error) {
	backoff := time.Millisecond
	for {
		i := c.LeaderIndex()
		if i >= 0 {
			n := c.Node(i)
			if n != nil {
				out, err := n.Propose(ctx, cmd)
				if err == nil || !(errors.Is(err, ErrNotLeader) || errors.Is(err, ErrClosed)) || ctx.Err() != nil {
					return out, err
				}
			}
		}
		c.mu.Lock()
		closed := c.closed
		c.mu.Unlock()
		if closed {
			return nil, ErrClosed
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("acp: raft cluster propose: %w", ctx.Err())
		case <-time.After(backoff):
		}
		if backoff < 50*time.Millisecond {
			backoff *= 2
		}
	}
}

// Leader implements Consensus.
func (c *RaftCluster) Leader() string {
	if i := c.LeaderIndex(); i >= 0 {
		return c.cfgs[i].ID
	}
	return ""
}

// Members implements Consensus.
func (c *RaftCluster) Members() []string {
	if i := c.LeaderIndex(); i >= 0 {
		if n := c.Node(i); n != nil {
			return n.Members()
		}
	}
	ids := make([]string, len(c.cfgs))
	for i, cfg := range c.cfgs {
		ids[i] = cfg.ID
	}
	return ids
}

// Algorithm implements Consensus.
func (c *RaftCluster) Algorithm() string { return metrics.ConsensusRaft }

// View implements Consensus with the leader's replica (the most up to date
// one), falling back to any running replica.
func (c *RaftCluster) View(fn func(r *Registry)) {
	i := c.LeaderIndex()
	c.mu.Lock()
	var n *RaftNode
	if i >= 0 {
		n = c.nodes[i]
	}
	for j := 0; n == nil && j < len(c.nodes); j++ {
		n = c.nodes[j]
	}
	c.mu.Unlock()
	if n == nil {
		fn(NewRegistry())
		return
	}
	n.View(fn)
}

// Close implements Consensus.
func (c *RaftCluster) Close() error {
	c.mu.Lock()
	c.closed = true
	nodes := append([]*RaftNode(nil), c.nodes...)
	for i := range c.nodes {
		c.nodes[i] = nil
	}
	c.mu.Unlock()
	var errs []error
	for _, n := range nodes {
		if n != nil {
			errs = append(errs, n.Close())
		}
	}
	return errors.Join(errs...)
}
