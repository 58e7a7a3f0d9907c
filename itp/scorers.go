package itp

// Built-in scorers. Each returns 0..100, higher is better, and reads only
// the Cycle, so they are safe for concurrent use.

// MostAllocated packs: it prefers the host whose mean utilisation after the
// placement is highest (Kubernetes NodeResourcesFit MostAllocated), which
// keeps other hosts empty.
type MostAllocated struct{}

// Name implements Scorer.
func (MostAllocated) Name() string { return "most-allocated" }

// Score implements Scorer.
func (MostAllocated) Score(c *Cycle, i int) float64 {
	h := c.Host(i)
	mean, _ := utilization(h.Used.Add(c.vm.Request), h.Capacity)
	return 100 * mean
}

// LeastAllocated spreads: it prefers the host whose mean utilisation after
// the placement is lowest (Kubernetes LeastAllocated).
type LeastAllocated struct{}

// Name implements Scorer.
func (LeastAllocated) Name() string { return "least-allocated" }

// Score implements Scorer.
func (LeastAllocated) Score(c *Cycle, i int) float64 {
	return 100 - MostAllocated{}.Score(c, i)
}

// ZoneBalance prefers hosts in the zones with the lowest mean utilisation,
// so that load and failure exposure stay even across zones.
type ZoneBalance struct{}

// Name implements Scorer.
func (ZoneBalance) Name() string { return "zone-balance" }

// Score implements Scorer.
func (ZoneBalance) Score(c *Cycle, i int) float64 {
	return 100 * (1 - min(1, c.ZoneUtilization(i)))
}

// MigrationCost prefers hosts that the VM reaches fastest: 100 times the
// shortest predicted migration time over this host's. It is 100 everywhere
// for a VM that does not migrate.
type MigrationCost struct{}

// Name implements Scorer.
func (MigrationCost) Name() string { return "migration-cost" }

// Score implements Scorer.
func (MigrationCost) Score(c *Cycle, i int) float64 {
	p, ok := c.Prediction(i)
	if !ok || p.Total <= 0 {
		if c.Migrates() && !ok {
			return 0
		}
		return 100
	}
	return 100 * float64(c.MinMigrationTime()) / float64(p.Total)
}

// SoftConstraints is 100 minus the weighted share of the VM's soft rules the
// host violates.
type SoftConstraints struct{}

// Name implements Scorer.
func (SoftConstraints) Name() string { return "soft-constraints" }

// Score implements Scorer.
func (SoftConstraints) Score(c *Cycle, i int) float64 {
	if c.softTotal == 0 {
		return 100
	}
	_, violated, total := c.SoftViolations(i)
	return 100 * (1 - violated/total)
}

// Reliability is 100 times the host's availability; an unknown one (0)
// scores a neutral 50.
type Reliability struct{}

// Name implements Scorer.
func (Reliability) Name() string { return "reliability" }

// Score implements Scorer.
func (Reliability) Score(c *Cycle, i int) float64 {
	r := c.Host(i).Reliability
	if r <= 0 {
		return 50
	}
	return 100 * min(1, r)
}

// Cost prefers cheap hosts: 100 * (1 - cost / highest cost in the set).
type Cost struct{}

// Name implements Scorer.
func (Cost) Name() string { return "cost" }

// Score implements Scorer.
func (Cost) Score(c *Cycle, i int) float64 {
	mx := c.MaxCostPerHour()
	if mx <= 0 {
		return 100
	}
	return 100 * (1 - max(0, c.Host(i).CostPerHour)/mx)
}

// DefaultScorers is bin-packing with migration cost and soft constraints
// weighed in: soft rules weigh most, then packing and migration time, then
// zone balance, reliability and price.
func DefaultScorers() []WeightedScorer {
	return []WeightedScorer{
		{SoftConstraints{}, 2},
		{MostAllocated{}, 1},
		{MigrationCost{}, 1},
		{ZoneBalance{}, 0.25},
		{Reliability{}, 0.25},
		{Cost{}, 0.25},
	}
}

// SpreadScorers is DefaultScorers with LeastAllocated in place of
// MostAllocated, for fleets that prefer headroom over packing.
func SpreadScorers() []WeightedScorer {
	s := DefaultScorers()
	s[1] = WeightedScorer{LeastAllocated{}, 1}
	return s
}
