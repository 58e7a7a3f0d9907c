package acp

import (
	"context"
	"errors"
	"strconv"
	"time"

	"github.com/dwcp/dwcp/metrics"
)

// Consensus orders commands across replicas and applies them to the
// ownership registry. Propose blocks until the command is committed and
// applied (and returns the state machine's encoded result) or fails.
// Implementations are safe for concurrent use.
type Consensus interface {
	// Propose submits an encoded Command and returns the encoded Result
	// once the command is committed. An error means the command's fate is
	// unknown to the caller (it may still commit later); commands are
	// written to be safely retried.
	Propose(ctx context.Context, cmd []byte) ([]byte, error)
	// Leader returns the current leader's (Raft) or primary's (PBFT) id, or
	// "" while none is known.
	Leader() string
	// Members returns the ids of the voting members.
	Members() []string
	// Algorithm returns metrics.ConsensusRaft or metrics.ConsensusPBFT.
	Algorithm() string
	// View runs fn with the local replica of the registry, under the lock
	// that serialises Apply; fn must not retain r. Reads may lag the latest
	// commit (an OpResume command is the linearizable check).
	View(fn func(r *Registry))
	// Close stops the replica(s) and waits for their goroutines. Safe to
	// call twice.
	Close() error
}

// Errors of the consensus layer.
var (
	ErrClosed    = errors.New("acp: closed")
	ErrNotLeader = errors.New("acp: not the leader")
	ErrNoQuorum  = errors.New("acp: no quorum reachable")
)

// observer records the per-commit metrics shared by both algorithms.
type observer struct {
	m         *metrics.Metrics
	algorithm string
}

func (o observer) committed(start time.Time, clusterSize int) {
	d := time.Since(start).Seconds()
	o.m.ACPConsensusLatency.WithLabelValues(o.algorithm, strconv.Itoa(clusterSize)).Observe(d)
	o.m.MigrationLatency.WithLabelValues(metrics.ComponentACP).Observe(d)
}

func (o observer) failed() {
	o.m.ACPConsensusFailures.WithLabelValues(o.algorithm).Inc()
	o.m.Errors.WithLabelValues(metrics.ComponentACP, metrics.ErrorConsensusFailure).Inc()
}

func (o observer) quorum(n int) {
	o.m.ACPQuorumSize.WithLabelValues(o.algorithm).Set(float64(n))
}

func (o observer) election() {
	o.m.ACPLeaderElections.WithLabelValues(o.algorithm).Inc()
}
