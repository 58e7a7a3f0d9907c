package itp

import (
	"fmt"
	"math"
	"time"
)

// Config tunes a Placer. Build it with DefaultConfig and change fields; a
// Placer keeps its own copy.
type Config struct {
	// Scorers rank the hosts that pass every filter; the final score is the
	// weighted mean of their 0..100 scores. Default: DefaultScorers().
	Scorers []WeightedScorer
	// ExtraFilters run after the built-in hard-constraint filters, which
	// always run (hard constraints cannot be configured away).
	ExtraFilters []Filter

	// LocalLink is assumed for migrations within one site when Links has
	// no entry for it. Default: 10 Gbit/s (1.25e9 B/s), 200 µs RTT.
	LocalLink Link
	// Precopy parameterises migration prediction. Default: 30 rounds,
	// 300 ms target downtime.
	Precopy Precopy
	// MaxDowntime is the hard downtime ceiling for VMs whose MaxDowntime
	// is 0; 0 disables it. Default: 0.
	MaxDowntime time.Duration

	// ExactSearchMaxVMs: PlaceBatch runs a budgeted branch-and-bound on
	// batches of at most this many VMs when the heuristic did not reach the
	// lower bound. 0 disables it. Default: 14.
	ExactSearchMaxVMs int
	// ExactSearchNodes is the branch-and-bound budget in search nodes.
	// Default: 200000.
	ExactSearchNodes int
	// ExactSearchTimeout bounds the branch-and-bound's wall time; the best
	// placement found so far is kept. Default: 100 ms.
	ExactSearchTimeout time.Duration
	// LPMaxHostTypes: the lower bound solves the LP relaxation with
	// gonum's simplex when hosts have at most this many distinct
	// capacities; above it the LP's value is bounded through its dual, and
	// PlaceBatch opens the largest hosts first. Default: 32 (about 4 ms
	// per solve).
	LPMaxHostTypes int

	// Rebalance tunes PlanRebalance.
	Rebalance RebalanceConfig
}

// RebalanceConfig prices the rebalancer's trade-off. Every amount is in the
// currency of Host.CostPerHour, over Horizon: a move is proposed only when
// its benefit beats its predicted cost.
type RebalanceConfig struct {
	// HotThreshold is the peak resource utilisation (0..1) above which a
	// host is a hot spot. No move may take a host above it. Default 0.85.
	HotThreshold float64
	// Horizon is how long a benefit is assumed to last. Default 1 h.
	Horizon time.Duration
	// HotspotCostPerHour is the cost of a host running one full unit of
	// utilisation (100 points) above HotThreshold for an hour. Default 20.
	HotspotCostPerHour float64
	// DefaultHostCostPerHour stands in for hosts whose CostPerHour is 0.
	// Default 1.
	DefaultHostCostPerHour float64
	// MigrationCostPerSecond prices each second a migration runs (network
	// and CPU spent on it). Default 0.001.
	MigrationCostPerSecond float64
	// DowntimeCostPerSecond prices each second of guest pause. Default 0.5.
	DowntimeCostPerSecond float64
	// PriorityCostFactor multiplies a move's cost by 1 + factor*priority for
	// VMs of positive priority. Default 0.5.
	PriorityCostFactor float64
	// MaxMoves bounds the moves of one plan. Default 100.
	MaxMoves int
	// Consolidate enables emptying lightly loaded hosts. Default true.
	Consolidate bool
	// RelieveHotspots enables moving VMs off hot spots. Default true.
	RelieveHotspots bool
}

// DefaultConfig returns the configuration documented on each field.
func DefaultConfig() Config {
	return Config{
		Scorers:            DefaultScorers(),
		LocalLink:          Link{BandwidthBytesPerSec: 1.25e9, RTT: 200 * time.Microsecond},
		Precopy:            Precopy{MaxRounds: 30, TargetDowntime: 300 * time.Millisecond},
		ExactSearchMaxVMs:  14,
		ExactSearchNodes:   200000,
		ExactSearchTimeout: 100 * time.Millisecond,
		LPMaxHostTypes:     32,
		Rebalance: RebalanceConfig{
			HotThreshold:           0.85,
			Horizon:                time.Hour,
			HotspotCostPerHour:     20,
			DefaultHostCostPerHour: 1,
			MigrationCostPerSecond: 0.001,
			DowntimeCostPerSecond:  0.5,
			PriorityCostFactor:     0.5,
			MaxMoves:               100,
			Consolidate:            true,
			RelieveHotspots:        true,
		},
	}
}

// Validate reports the first bad field, naming it and its value.
func (c *Config) Validate() error {
	if len(c.Scorers) == 0 {
		return fmt.Errorf("itp: Config.Scorers is empty")
	}
	names := map[string]bool{}
	total := 0.0
	for i, s := range c.Scorers {
		if s.Scorer == nil {
			return fmt.Errorf("itp: Config.Scorers[%d].Scorer is nil", i)
		}
		if !finiteNonNeg(s.Weight) {
			return fmt.Errorf("itp: Config.Scorers[%d] (%s) weight %v is not a finite non-negative number", i, s.Scorer.Name(), s.Weight)
		}
		if names[s.Scorer.Name()] {
			return fmt.Errorf("itp: Config.Scorers[%d]: scorer name %q appears twice", i, s.Scorer.Name())
		}
		names[s.Scorer.Name()] = true
		total += s.Weight
	}
	if total <= 0 {
		return fmt.Errorf("itp: Config.Scorers weights sum to %v; at least one must be positive", total)
	}
	for i, f := range c.ExtraFilters {
		if f == nil {
			return fmt.Errorf("itp: Config.ExtraFilters[%d] is nil", i)
		}
	}
	switch {
	case !(c.LocalLink.BandwidthBytesPerSec > 0) || math.IsInf(c.LocalLink.BandwidthBytesPerSec, 0):
		return fmt.Errorf("itp: Config.LocalLink.BandwidthBytesPerSec %v must be finite and positive", c.LocalLink.BandwidthBytesPerSec)
	case c.LocalLink.RTT < 0:
		return fmt.Errorf("itp: Config.LocalLink.RTT %v is negative", c.LocalLink.RTT)
	case c.Precopy.MaxRounds < 1:
		return fmt.Errorf("itp: Config.Precopy.MaxRounds %d must be at least 1", c.Precopy.MaxRounds)
	case c.Precopy.TargetDowntime < 0:
		return fmt.Errorf("itp: Config.Precopy.TargetDowntime %v is negative", c.Precopy.TargetDowntime)
	case c.MaxDowntime < 0:
		return fmt.Errorf("itp: Config.MaxDowntime %v is negative", c.MaxDowntime)
	case c.ExactSearchMaxVMs < 0:
		return fmt.Errorf("itp: Config.ExactSearchMaxVMs %d is negative", c.ExactSearchMaxVMs)
	case c.ExactSearchMaxVMs > 0 && c.ExactSearchNodes < 1:
		return fmt.Errorf("itp: Config.ExactSearchNodes %d must be positive when ExactSearchMaxVMs is %d", c.ExactSearchNodes, c.ExactSearchMaxVMs)
	case c.ExactSearchMaxVMs > 0 && c.ExactSearchTimeout <= 0:
		return fmt.Errorf("itp: Config.ExactSearchTimeout %v must be positive when ExactSearchMaxVMs is %d", c.ExactSearchTimeout, c.ExactSearchMaxVMs)
	case c.LPMaxHostTypes < 0:
		return fmt.Errorf("itp: Config.LPMaxHostTypes %d is negative", c.LPMaxHostTypes)
	}
	r := &c.Rebalance
	switch {
	case !(r.HotThreshold > 0 && r.HotThreshold <= 1):
		return fmt.Errorf("itp: Config.Rebalance.HotThreshold %v is outside (0, 1]", r.HotThreshold)
	case r.Horizon <= 0:
		return fmt.Errorf("itp: Config.Rebalance.Horizon %v must be positive", r.Horizon)
	case !finiteNonNeg(r.HotspotCostPerHour):
		return fmt.Errorf("itp: Config.Rebalance.HotspotCostPerHour %v is not a finite non-negative number", r.HotspotCostPerHour)
	case !finiteNonNeg(r.DefaultHostCostPerHour):
		return fmt.Errorf("itp: Config.Rebalance.DefaultHostCostPerHour %v is not a finite non-negative number", r.DefaultHostCostPerHour)
	case !finiteNonNeg(r.MigrationCostPerSecond):
		return fmt.Errorf("itp: Config.Rebalance.MigrationCostPerSecond %v is not a finite non-negative number", r.MigrationCostPerSecond)
	case !finiteNonNeg(r.DowntimeCostPerSecond):
		return fmt.Errorf("itp: Config.Rebalance.DowntimeCostPerSecond %v is not a finite non-negative number", r.DowntimeCostPerSecond)
	case !finiteNonNeg(r.PriorityCostFactor):
		return fmt.Errorf("itp: Config.Rebalance.PriorityCostFactor %v is not a finite non-negative number", r.PriorityCostFactor)
	case r.MaxMoves < 0:
		return fmt.Errorf("itp: Config.Rebalance.MaxMoves %d is negative", r.MaxMoves)
	}
	return nil
}

func finiteNonNeg(x float64) bool { return x >= 0 && !math.IsInf(x, 0) }
