package itp

import (
	"context"
	"sync"
	"time"

	"github.com/dwcp/dwcp/metrics"
	"github.com/prometheus/client_golang/prometheus"
)

// Placer chooses hosts for VMs. It keeps no cluster state between calls:
// every call gets the hosts as they are now. A Placer is safe for concurrent
// use and owns no goroutines, so it needs no Close.
type Placer struct {
	cfg        Config
	m          *metrics.Metrics
	migLatency prometheus.Observer
	states     sync.Pool // *clusterState, reused to keep Place allocation-free
}

// NewPlacer validates cfg and returns a Placer that records into m (nil m
// records into a private, unregistered metrics.Metrics).
func NewPlacer(cfg Config, m *metrics.Metrics) (*Placer, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if m == nil {
		m = metrics.New(nil)
	}
	cfg.Scorers = append([]WeightedScorer(nil), cfg.Scorers...)
	cfg.ExtraFilters = append([]Filter(nil), cfg.ExtraFilters...)
	p := &Placer{cfg: cfg, m: m, migLatency: m.MigrationLatency.WithLabelValues(metrics.ComponentITP)}
	p.states.New = func() any { return newClusterState(&p.cfg) }
	return p, nil
}

// Config returns a copy of the Placer's configuration.
func (p *Placer) Config() Config {
	c := p.cfg
	c.Scorers = append([]WeightedScorer(nil), c.Scorers...)
	c.ExtraFilters = append([]Filter(nil), c.ExtraFilters...)
	return c
}

// Decision is the outcome of placing one VM.
type Decision struct {
	VMID   string
	HostID string
	// HostIndex is the chosen host's index in the slice given to Place.
	HostIndex int
	// Score is the chosen host's weighted score, 0..100.
	Score float64
	// Feasible counts the hosts that passed every filter.
	Feasible int
	// Migrates is true when the VM has a source (CurrentHost or
	// SourceSite); Prediction is then the predicted migration.
	Migrates   bool
	Prediction Prediction
	// SoftViolations counts the soft rules the chosen host violates.
	SoftViolations int
}

// Place runs filter -> score -> select for one VM over hosts and returns the
// best host. Hard constraints hold for the returned host; when no host
// passes every filter the error is a *NoFitError (errors.Is ErrNoFit) that
// says which filter excluded how many hosts. Ties go to the earlier host.
// The VM's own rules and the Host.RunningRules that name it are enforced.
//
// It records itp_decision_latency_seconds, migration_latency_seconds
// {component="itp"} and, for the soft rules the choice violates,
// itp_constraint_violations_total.
func (p *Placer) Place(ctx context.Context, vm VM, hosts []Host, links Links) (Decision, error) {
	start := time.Now()
	if err := vm.Validate(); err != nil {
		return Decision{}, err
	}
	if err := validateHosts(hosts); err != nil {
		return Decision{}, err
	}
	if err := ctx.Err(); err != nil {
		return Decision{}, err
	}
	st := p.states.Get().(*clusterState)
	defer func() {
		st.hosts = nil
		st.links = nil
		p.states.Put(st)
	}()
	st.reset(hosts, links, false, &vm)
	var cy Cycle
	st.prepare(&cy, &vm)

	nf := numCoreFilters + len(p.cfg.ExtraFilters)
	counts := st.scratch.counts[:0]
	for range nf {
		counts = append(counts, 0)
	}
	st.scratch.counts = counts
	best, bestScore, feasible := -1, -1.0, 0
	for i := range hosts {
		if i&2047 == 2047 {
			if err := ctx.Err(); err != nil {
				return Decision{}, err
			}
		}
		if k := cy.firstFailure(i); k >= 0 {
			counts[k]++
			continue
		}
		feasible++
		if s := cy.score(i); s > bestScore {
			best, bestScore = i, s
		}
	}
	if best < 0 {
		return Decision{}, cy.noFit(counts)
	}
	d := Decision{VMID: vm.ID, HostID: hosts[best].ID, HostIndex: best, Score: bestScore, Feasible: feasible}
	d.Prediction, _ = cy.Prediction(best)
	d.Migrates = cy.Migrates()
	d.SoftViolations, _, _ = cy.SoftViolations(best)
	if d.SoftViolations > 0 {
		p.m.ITPConstraintViolations.Add(float64(d.SoftViolations))
	}
	elapsed := time.Since(start).Seconds()
	p.m.ITPDecisionLatency.Observe(elapsed)
	p.migLatency.Observe(elapsed)
	return d, nil
}

func (c *Cycle) noFit(counts []int) *NoFitError {
	e := &NoFitError{VMID: c.vm.ID, Hosts: len(c.st.hosts)}
	for k, n := range counts {
		if n > 0 {
			e.Exclusions = append(e.Exclusions, Exclusion{Filter: c.filterName(k), Hosts: n})
		}
	}
	return e
}
