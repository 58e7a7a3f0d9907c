// Package itp is DWCP's intelligent task placement: it chooses the host a
// VM should run on (or migrate to), places batches of VMs so that they use
// as few hosts as the constraints allow, and plans the migrations that
// relieve hot spots or empty lightly used hosts when that pays for itself.
//
// itp imports no other DWCP component. The engine converts its cluster
// state into itp's model: Host (capacity, current load, zone, region,
// site, labels, price, reliability, the VMs it runs), VM (request, size,
// dirty rate, priority, allowed zones, reliability floor, downtime ceiling,
// affinity and anti-affinity Rules to VMs, host labels or zones, each hard
// or soft) and Links (forecast bandwidth and RTT between sites, fed from
// pba).
//
// # Usage
//
//	p, err := itp.NewPlacer(itp.DefaultConfig(), m) // m *metrics.Metrics, nil allowed
//	dec, err := p.Place(ctx, vm, hosts, links)      // one VM: dec.HostID, dec.Score, dec.Prediction
//	var nf *itp.NoFitError
//	if errors.As(err, &nf) { /* nf says which filter excluded how many hosts */ }
//	res, err := p.PlaceBatch(ctx, vms, hosts, links) // many VMs: res.Assignments, res.Efficiency
//	plan, err := p.PlanRebalance(ctx, itp.RebalanceRequest{Hosts: hosts, VMs: running, Links: links})
//
// # The pipeline
//
// Place follows the Kubernetes scheduler framework: every host runs through
// the filters; the survivors are scored by weighted scorers (each 0..100);
// the best score wins, ties to the earlier host. The built-in filters
// (cordoned, current-host, resource-fit, allowed-zones, min-reliability,
// label-rules, zone-rules, vm-affinity, vm-anti-affinity, link,
// max-downtime) always run, so hard constraints cannot be configured away;
// Config.ExtraFilters add more. The scorers (MostAllocated for bin-packing,
// LeastAllocated for spreading, ZoneBalance, MigrationCost, SoftConstraints,
// Reliability, Cost, or your own) and their weights come from
// Config.Scorers. When no host passes, the *NoFitError charges each host to
// the first filter that rejected it.
//
// Migration cost comes from PredictMigration, a pre-copy model: round k
// copies what was dirtied during round k-1, V*(d/b)^k for size V, dirty
// rate d and forecast bandwidth b (a geometric series), until the rest fits
// the target downtime or the round limit is reached; the rest is sent with
// the guest paused. Each round pays an RTT.
//
// PlaceBatch runs best-fit decreasing (priority, then size), opens hosts
// in the mix the LP relaxation of the batch's demand asks for, improves the
// result with a local search that empties lightly loaded hosts, and for
// small batches runs a budgeted exact branch and bound. PlanRebalance
// proposes moves priced in the currency of Host.CostPerHour: a move is
// proposed only when its benefit (overload removed, or a host's price over
// the horizon) beats the predicted migration time and downtime cost.
//
// Rules are enforced both ways: a VM's own rules, and the rules of VMs
// already running that name it, which the engine lists in
// Host.RunningRules (PlaceBatch and PlanRebalance also use the rules of
// every VM of the call). A running VM's rule that the engine leaves out
// cannot be honoured.
//
// # Efficiency
//
// Efficiency reports 100 * lower bound / hosts used. The lower bound is the
// larger of max over CPU and memory of ceil(total demand / largest host
// capacity) and the rounded-up optimum of an LP relaxation over host types
// (gonum's simplex; for many types a bound on it from its dual), which is
// tighter when hosts differ in shape. The
// bound ignores item sizes and anti-affinity, so the percentage can only
// understate how good a placement is.
//
// # Concurrency
//
// A Placer is safe for concurrent use; it keeps no cluster state between
// calls, starts no goroutines and needs no Close. Calls never modify the
// hosts or VMs they are given (results carry copies). Filters and scorers
// must be safe for concurrent use and must not keep the *Cycle.
//
// # Metrics
//
// Place observes dwcp_v3_itp_decision_latency_seconds and
// dwcp_v3_migration_latency_seconds{component="itp"} and adds the soft
// rules its choice violates to dwcp_v3_itp_constraint_violations_total.
// PlaceBatch sets dwcp_v3_itp_placement_efficiency_percent and adds its soft
// violations to the same counter. PlanRebalance adds its proposed moves to
// dwcp_v3_itp_rebalancing_events_total.
package itp
