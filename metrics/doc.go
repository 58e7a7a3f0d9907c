// Package metrics is the DWCP v3 metrics catalogue: every Prometheus
// collector that the components (amst, hde, pba, acp, ass, itp) and the
// engine record, the label values they may use, and the tools that turn
// those metrics into the Phase 6 production view (SLA compliance, anomaly
// detection, process resources, an HTTP exporter, recording and alerting
// rules, a Grafana dashboard).
//
// # Using it
//
// Build one Metrics per process with the registry you expose, and hand it to
// every component. Nothing is global: a nil registry gives working
// collectors registered nowhere, and two Metrics on two registries never
// collide.
//
//	reg := prometheus.NewRegistry()
//	m := metrics.New(reg)
//	m.MigrationLatency.WithLabelValues(metrics.ComponentHDE).Observe(d.Seconds())
//	m.Errors.WithLabelValues(metrics.ComponentHDE, metrics.ErrorCompression).Inc()
//
//	srv, err := metrics.Serve(ctx, "127.0.0.1:9912", reg) // GET /metrics
//	defer srv.Close()
//	err = metrics.WriteTextFile("run.prom", reg)          // a file for -metrics-file
//
// Use only the label values of the catalogue below: the package's constants
// (ComponentAMST, ErrorNetworkTimeout, ...) and ClusterSizeLabel. A test in
// any package can enforce that with
//
//	if err := metrics.CheckLabelValues(reg); err != nil { t.Fatal(err) }
//
// # Derived metrics
//
// Two long-lived helpers, ResourceSampler and SLAEvaluator, compute what no
// single component can, with ZScoreDetector underneath. Each has a Config
// with DefaultXxxConfig and Validate; the two long-lived ones have a Close
// that stops and waits for their goroutine (safe to call twice). Give them a
// clock (Config.Now) and a zero interval to drive them by hand in tests.
//
// ResourceSampler sets dwcp_v3_resource_utilization_percent every Interval
// (5 s) from real process readings, in percent of configured capacity:
//
//   - cpu: user+system CPU time of the process (getrusage) over wall time,
//     divided by GOMAXPROCS.
//   - memory: resident set (/proc/self/statm) over MemTotal (/proc/meminfo),
//     or over ResourceConfig.MemoryCapacityBytes when set (for cgroup limits).
//   - goroutines: runtime.NumGoroutine over GoroutineLimit (spec: 10K).
//   - network: bytes per second over NetworkCapacityBytesPerSecond (spec:
//     8 Gbit/s). By default the bytes are every non-loopback interface of
//     /proc/self/net/dev, which is the whole network namespace, not only this
//     process; pass ResourceConfig.NetworkBytes (for example the sum of
//     dwcp_v3_amst_bytes_total) to count the process's own traffic.
//   - disk_io: syscr+syscw of /proc/self/io per second over DiskIOPSCapacity
//     (spec: 10K). Those count every read and write system call (files,
//     sockets, pipes), so this is an upper bound on disk IOPS.
//
// A source that fails at start (no procfs) is disabled and reported by
// Unavailable; its gauge is never set rather than set to a made-up number.
//
// SLAEvaluator is fed observations (ObserveLatency, ObserveTransfer,
// ObserveOperation, ObserveRequest, ObserveUtilization) and judges fixed
// windows (10 s) against the spec's targets: P99 latency below 500 ms
// (nearest rank, decided from exact counts), throughput of at least 2.4e9
// bytes per busy second, error rate below 1%, availability above 99.9%. It
// sets dwcp_v3_sla_compliance{sla_type} to the fraction of the last History
// (60) windows that met each SLA; windows without data for an SLA do not
// count. Once per window it feeds the window's P99, throughput, error rate
// and each resource's peak into z-score detectors and counts what they flag
// in dwcp_v3_anomaly_detections_total{anomaly_type,severity}.
//
// ZScoreDetector flags a sample more than 3σ (warning) or 6σ (critical)
// from the mean of the previous Window samples. The baseline is a ring
// buffer read in chronological order, and a sample is judged before it
// joins the baseline (the earlier novacron DWCP code had both
// wrong). σ has a floor (MinStdDev, RelativeStdDevFloor) so that a flat
// baseline does not turn every wiggle into an infinite-σ event.
//
// # Concurrency
//
// Every exported function and method is safe for concurrent use. The
// collectors are client_golang's, which are lock-free for recording.
//
// # Prometheus and Grafana files
//
// prometheus/rules.yml records every query of the Phase 6 spec
// (level:metric:operation names) and alerts at the spec's thresholds: P99
// above 500 ms, throughput below 2.4 GB/s while migrations run, errors per
// operation above 1% (operations = component work units counted by the
// latency histogram's _count plus finished migrations), SLA compliance below
// 99%, availability (successful / finished migrations) below 99.9%, any
// critical anomaly, component health 0, and resource saturation.
// prometheus/rules_test.yml unit-tests every alert with promtool.
// grafana/dwcp-v3-phase6.json runs every spec query plus per-component
// panels. One spec query, max_over_time(avg(...)[24h]), is not valid PromQL
// (a range over an expression needs a subquery); the dashboard and tests
// run max_over_time(avg(...)[24h:]) instead.
//
// # Catalogue
//
// Generated from [Catalogue] by "go test ./metrics -run TestDocCatalogue
// -update"; a test fails when this table, the README's copy, the registry
// and Catalogue disagree. Counters end in _total; histograms also export
// _bucket, _sum and _count series.
//
//	| name | type | labels = allowed values | unit | meaning | recorded by |
//	|---|---|---|---|---|---|
//	| dwcp_v3_migration_latency_seconds | histogram | component = amst, hde, pba, acp, ass, itp | seconds | Latency of one unit of a component's work on a migration's path (AMST round delivery, HDE batch encode, PBA prediction, ACP commit, ASS sync, ITP decision). | amst, hde, pba, acp, ass, itp (each its own component value) |
//	| dwcp_v3_throughput_bytes_per_second | gauge | transport = rdma, tcp, hybrid | bytes/s | Goodput of the migration transport over the last measurement interval, by transport. | amst |
//	| dwcp_v3_errors_total | counter | component = amst, hde, pba, acp, ass, itp, engine; error_type = network_timeout, consensus_failure, compression_error, memory_error, state_sync_error | count | Errors by component and type. | every component and the engine |
//	| dwcp_v3_sla_compliance | gauge | sla_type = latency, throughput, error_rate, availability | ratio 0..1 | Fraction (0..1) of recent evaluation windows that met the SLA, by SLA type. | metrics.SLAEvaluator |
//	| dwcp_v3_anomaly_detections_total | counter | anomaly_type = latency_spike, throughput_drop, error_burst, resource_saturation; severity = warning, critical | count | Anomalies detected by the z-score detector, by type and severity. | metrics.SLAEvaluator (ZScoreDetector) |
//	| dwcp_v3_resource_utilization_percent | gauge | resource_type = cpu, memory, network, disk_io, goroutines | percent 0..100 of configured capacity | Process resource utilisation in percent of its configured capacity, by resource. | metrics.ResourceSampler |
//	| dwcp_v3_component_health | gauge | component = amst, hde, pba, acp, ass, itp, engine | 1 healthy, 0.5 degraded, 0 failing | Component health: 1 healthy, 0.5 degraded, 0 failing. | every component and the engine |
//	| dwcp_v3_amst_throughput_gbps | gauge | - | Gbit/s | AMST goodput in Gbit/s over the last measurement interval (the spec's name; the same value as dwcp_v3_throughput_bytes_per_second*8/1e9). | amst |
//	| dwcp_v3_amst_active_streams | gauge | - | count | TCP (or RDMA) streams currently carrying AMST sessions. | amst |
//	| dwcp_v3_amst_stream_utilization_percent | gauge | - | percent 0..100 | Stream efficiency: percent of the active streams' time spent sending, over the last interval. | amst |
//	| dwcp_v3_amst_mode_switches_total | counter | from_mode = datacenter, internet, hybrid; to_mode = datacenter, internet, hybrid | count | Network mode changes decided by AMST's mode detector. | amst |
//	| dwcp_v3_amst_mode | gauge | mode = datacenter, internet, hybrid | 1 current, 0 other | 1 for the network mode AMST currently detects, 0 for the others. | amst |
//	| dwcp_v3_amst_bytes_total | counter | direction = sent, received | bytes | Payload bytes carried by AMST sessions, by direction. | amst |
//	| dwcp_v3_amst_stream_reconnects_total | counter | - | count | Broken AMST streams that were redialled. | amst |
//	| dwcp_v3_amst_rdma_utilization_percent | gauge | - | percent 0..100 | Percent of AMST traffic carried over RDMA (0 where no RDMA device exists). | amst |
//	| dwcp_v3_hde_compression_ratio | gauge | data_class = all, vm_memory, text, binary | ratio 0..1 | Fraction (0..1) of input bytes saved by HDE since start, by data class. | hde |
//	| dwcp_v3_hde_input_bytes_total | counter | data_class = all, vm_memory, text, binary | bytes | Bytes given to the HDE encoder, by data class. | hde |
//	| dwcp_v3_hde_output_bytes_total | counter | data_class = all, vm_memory, text, binary | bytes | Bytes produced by the HDE encoder, by data class. | hde |
//	| dwcp_v3_hde_compression_latency_seconds | histogram | - | seconds | HDE encode time per page (batch time divided by its pages). | hde |
//	| dwcp_v3_hde_dedup_ratio | gauge | - | ratio 0..1 | Fraction (0..1) of pages since start sent as zero flags or duplicate references. | hde |
//	| dwcp_v3_hde_pages_total | counter | kind = zero, duplicate, delta, raw | count | Pages encoded by HDE, by how they were encoded. | hde |
//	| dwcp_v3_hde_algorithm_selections_total | counter | algorithm = none, snappy, lz4, zstd | count | Batches compressed with each algorithm, as chosen by HDE's adaptive selector. | hde |
//	| dwcp_v3_pba_prediction_accuracy_percent | gauge | workload = all, stable, variable, bursty | percent 0..100 | 100*(1-min(1,WAPE)) of the shipped predictor over its recent window, by workload class. | pba |
//	| dwcp_v3_pba_inference_latency_seconds | histogram | predictor = lstm, last_value, ewma, harmonic_mean, robust_mpc, holt, ensemble | seconds | Time for one prediction, by predictor. | pba |
//	| dwcp_v3_pba_bandwidth_utilization_percent | gauge | - | percent 0..100 | Percent of the forecast link bandwidth allocated to migrations. | pba |
//	| dwcp_v3_pba_predictions_total | counter | workload = all, stable, variable, bursty | count | Predictions scored against the actual bandwidth, by workload class. | pba |
//	| dwcp_v3_pba_prediction_misses_total | counter | workload = all, stable, variable, bursty | count | Predictions that over-estimated the actual bandwidth by more than 20%, by workload class. | pba |
//	| dwcp_v3_acp_consensus_latency_seconds | histogram | algorithm = raft, pbft; cluster_size = 1..64 | seconds | Time from proposal to committed result, by algorithm and cluster size. | acp |
//	| dwcp_v3_acp_quorum_size | gauge | algorithm = raft, pbft | replicas | Replicas needed for a commit in the current configuration, by algorithm. | acp |
//	| dwcp_v3_acp_byzantine_detections_total | counter | detection_type = equivocation, bad_signature, conflicting_digest | count | Byzantine behaviour detected by PBFT replicas, by kind. | acp |
//	| dwcp_v3_acp_leader_elections_total | counter | algorithm = raft, pbft | count | Leader changes: Raft elections won, PBFT view changes completed. | acp |
//	| dwcp_v3_acp_consensus_failures_total | counter | algorithm = raft, pbft | count | Proposals that did not commit (timeout, lost leadership, rejected). | acp |
//	| dwcp_v3_ass_sync_bytes_total | counter | direction = sent, received | bytes | Anti-entropy bytes exchanged with peers, by direction. | ass |
//	| dwcp_v3_ass_sync_latency_seconds | histogram | - | seconds | Time of one sync exchange with a peer (send deltas, receive acknowledgement). | ass |
//	| dwcp_v3_ass_state_size_bytes | gauge | - | bytes | Encoded size of the replica's CRDT state. | ass |
//	| dwcp_v3_ass_crdt_operations_total | counter | crdt_type = gcounter, pncounter, lww_register, mv_register, or_set, or_map | count | Local CRDT mutations, by CRDT type. | ass |
//	| dwcp_v3_itp_placement_efficiency_percent | gauge | - | percent 0..100 | 100 * lower bound of hosts needed / hosts used, for the last placement. | itp |
//	| dwcp_v3_itp_constraint_violations_total | counter | - | count | Soft constraints a chosen placement violates (hard constraints are never violated). | itp |
//	| dwcp_v3_itp_rebalancing_events_total | counter | - | count | Migrations proposed by the rebalancing planner. | itp |
//	| dwcp_v3_itp_decision_latency_seconds | histogram | - | seconds | Time to place one VM (filter, score, select). | itp |
//	| dwcp_v3_migrations_total | counter | version = v1, v3; result = success, failure | count | Finished migrations by protocol version and result. | engine (package dwcp) |
//	| dwcp_v3_migration_duration_seconds | histogram | scenario = datacenter_small_vm, datacenter_large_vm, internet, cross_region | seconds | Total time of successful migrations, by scenario. | engine (package dwcp) |
//	| dwcp_v3_migration_downtime_seconds | histogram | version = v1, v3 | seconds | Time the guest was paused during switchover, by protocol version. | engine (package dwcp) |
//	| dwcp_v3_migration_bytes_total | counter | version = v1, v3; kind = logical, wire | bytes | Guest bytes migrated (logical) and bytes sent on the wire, by protocol version. | engine (package dwcp) |
//	| dwcp_v3_active_migrations | gauge | - | count | Migrations in progress. | engine (package dwcp) |
//	| dwcp_v3_rollout_stage | gauge | - | stage 0..5 | Rollout stage: 0 off, 1 canary, 2 10%, 3 25%, 4 50%, 5 100%. | engine (package dwcp, rollout) |
//	| dwcp_v3_rollout_percentage | gauge | - | percent 0..100 | Feature-flag percentage of VMs that migrate with v3 (0..100). | engine (package dwcp, rollout) |
//	| dwcp_v3_rollout_kill_switch | gauge | - | 1 on, 0 off | 1 when the kill switch forces every migration to v1. | engine (package dwcp, rollout) |
//
// Histogram buckets: dwcp_v3_migration_latency_seconds and the other
// second-scale histograms use LatencyBuckets (50 µs to 300 s, with
// boundaries at the spec's 200, 300, 400, 450, 500 and 750 ms targets);
// per-page and per-inference histograms resolve 1 µs to 1 s.
package metrics
