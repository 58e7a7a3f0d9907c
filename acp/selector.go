package acp

import (
	"context"
	"fmt"
	"time"

	"github.com/dwcp/dwcp/metrics"
)

// Member describes one replica for algorithm selection.
type Member struct {
	ID string
	// TrustDomain names the administrative domain that runs the member
	// (one operator, one set of credentials). Members of different domains
	// may lie to each other.
	TrustDomain string
	// RTT is the measured round-trip time from the local host.
	RTT time.Duration
}

// Algorithm choices for SelectorConfig.Force.
const (
	AlgorithmAuto = ""
	AlgorithmRaft = metrics.ConsensusRaft
	AlgorithmPBFT = metrics.ConsensusPBFT
)

// SelectorConfig tunes Select.
type SelectorConfig struct {
	// Force picks an algorithm regardless of the members (AlgorithmAuto
	// selects).
	Force string
	// MaxRaftRTT is the largest member RTT for which Raft is chosen.
	MaxRaftRTT time.Duration
}

// DefaultSelectorConfig selects Raft up to 10 ms RTT.
func DefaultSelectorConfig() SelectorConfig { return SelectorConfig{MaxRaftRTT: 10 * time.Millisecond} }

// Validate reports the first bad setting.
func (c SelectorConfig) Validate() error {
	switch c.Force {
	case AlgorithmAuto, AlgorithmRaft, AlgorithmPBFT:
	default:
		return fmt.Errorf("acp: SelectorConfig.Force %q is not \"\", %q or %q", c.Force, AlgorithmRaft, AlgorithmPBFT)
	}
	if c.MaxRaftRTT <= 0 {
		return fmt.Errorf("acp: SelectorConfig.MaxRaftRTT %v must be positive", c.MaxRaftRTT)
	}
	return nil
}

// Select returns the algorithm for members and why: Raft when every member
// is in one trust domain and every RTT is below MaxRaftRTT (crash faults
// only, and a ~RTT+fsync commit), PBFT otherwise (it tolerates f
// Byzantine replicas out of 3f+1 at the cost of O(n^2) signed messages).
func Select(members []Member, cfg SelectorConfig) (algorithm, reason string) {
	if cfg.Force != AlgorithmAuto {
		return cfg.Force, "forced by configuration"
	}
	if len(members) == 0 {
		return AlgorithmRaft, "no members given"
	}
	domain := members[0].TrustDomain
	for _, m := range members {
		if m.TrustDomain != domain {
			return AlgorithmPBFT, fmt.Sprintf("members %s and %s are in different trust domains (%q, %q)", members[0].ID, m.ID, domain, m.TrustDomain)
		}
		if m.RTT >= cfg.MaxRaftRTT {
			return AlgorithmPBFT, fmt.Sprintf("member %s has RTT %v >= %v", m.ID, m.RTT, cfg.MaxRaftRTT)
		}
	}
	return AlgorithmRaft, fmt.Sprintf("%d members in trust domain %q, every RTT < %v", len(members), domain, cfg.MaxRaftRTT)
}

// Config configures New.
type Config struct {
	// Members are the replicas to run; one replica per member.
	Members  []Member
	Selector SelectorConfig
	// DataDir holds the Raft replicas' stores (unused by PBFT, whose
	// replicas keep state in memory and recover by state transfer).
	DataDir string
	Raft    RaftConfig
	PBFT    PBFTConfig
}

// DefaultConfig returns a configuration for members with data under dataDir.
func DefaultConfig(members []Member, dataDir string) Config {
	return Config{Members: members, Selector: DefaultSelectorConfig(), DataDir: dataDir,
		Raft: DefaultRaftConfig("", dataDir), PBFT: DefaultPBFTConfig(0, len(members))}
}

// Validate reports the first bad setting.
func (c Config) Validate() error {
	if len(c.Members) == 0 {
		return fmt.Errorf("acp: Config.Members is empty")
	}
	if err := c.Selector.Validate(); err != nil {
		return err
	}
	algo, _ := Select(c.Members, c.Selector)
	if algo == AlgorithmPBFT && len(c.Members) < 4 {
		return fmt.Errorf("acp: PBFT selected for %d members, need at least 4 (3f+1)", len(c.Members))
	}
	if algo == AlgorithmRaft && c.DataDir == "" {
		return fmt.Errorf("acp: Config.DataDir is empty (Raft needs it)")
	}
	return nil
}

// New selects the algorithm for cfg.Members and starts an in-process
// cluster of len(cfg.Members) replicas on loopback (RaftCluster or
// PBFTCluster). It is the one-call setup for examples, tests and
// single-host deployments; multi-host deployments run one RaftNode or
// PBFTNode per host.
func New(ctx context.Context, cfg Config, m *metrics.Metrics) (Consensus, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	algo, _ := Select(cfg.Members, cfg.Selector)
	if algo == AlgorithmPBFT {
		return NewPBFTCluster(ctx, len(cfg.Members), cfg.PBFT, m)
	}
	rc := cfg.Raft
	rc.DataDir = cfg.DataDir
	return NewRaftCluster(ctx, len(cfg.Members), cfg.DataDir, rc, m)
}
