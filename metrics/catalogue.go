package metrics

import (
	"fmt"
	"slices"
	"strconv"
)

// MetricType is the Prometheus type of a catalogue entry.
type MetricType string

// The metric types the catalogue uses.
const (
	TypeCounter   MetricType = "counter"
	TypeGauge     MetricType = "gauge"
	TypeHistogram MetricType = "histogram"
)

// MaxClusterSize is the largest value the cluster_size label of
// dwcp_v3_acp_consensus_latency_seconds takes; ClusterSizeLabel formats it.
// The bound keeps the label's cardinality finite (PBFT with f = 21 faults
// needs 64 replicas, far beyond the spec's 3, 4 and 7 node clusters).
const MaxClusterSize = 64

// ClusterSizeLabel returns the cluster_size label value for a cluster of n
// voters: the decimal number, clamped to 1..MaxClusterSize.
func ClusterSizeLabel(n int) string {
	return strconv.Itoa(min(max(n, 1), MaxClusterSize))
}

// Label is one label of a catalogue entry and every value it may take.
type Label struct {
	Name   string
	Values []string
}

// Descriptor documents one metric of the catalogue. New builds every
// collector from these descriptors, the package documentation's table is
// rendered from them, and CheckLabelValues enforces them, so the catalogue
// below is the single source of truth.
type Descriptor struct {
	Name   string
	Type   MetricType
	Labels []Label
	// Unit is the unit of the value in words ("seconds", "bytes/s",
	// "ratio 0..1", "percent 0..100", "count").
	Unit string
	Help string
	// Recorder names the package (and type) that records the metric.
	Recorder string
	// Field is the name of the Metrics field holding the collector.
	Field string
	// Buckets are the histogram bucket upper bounds in seconds.
	Buckets []float64
}

// LabelNames returns the names of d's labels in order.
func (d Descriptor) LabelNames() []string {
	names := make([]string, len(d.Labels))
	for i, l := range d.Labels {
		names[i] = l.Name
	}
	return names
}

// Allows reports whether value is a documented value of d's label name.
func (d Descriptor) Allows(label, value string) bool {
	for _, l := range d.Labels {
		if l.Name == label {
			return slices.Contains(l.Values, value)
		}
	}
	return false
}

// Label value sets shared by several entries.
var (
	pathComponents  = []string{ComponentAMST, ComponentHDE, ComponentPBA, ComponentACP, ComponentASS, ComponentITP}
	allComponents   = append(slices.Clone(pathComponents), ComponentEngine)
	transports      = []string{TransportRDMA, TransportTCP, TransportHybrid}
	errorTypes      = []string{ErrorNetworkTimeout, ErrorConsensusFailure, ErrorCompression, ErrorMemory, ErrorStateSync}
	slaTypes        = []string{SLALatency, SLAThroughput, SLAErrorRate, SLAAvailability}
	anomalyTypes    = []string{AnomalyLatencySpike, AnomalyThroughputDrop, AnomalyErrorBurst, AnomalyResourceSaturation}
	severities      = []string{SeverityWarning, SeverityCritical}
	resourceTypes   = []string{ResourceCPU, ResourceMemory, ResourceNetwork, ResourceDiskIO, ResourceGoroutines}
	modes           = []string{ModeDatacenter, ModeInternet, ModeHybrid}
	directions      = []string{DirectionSent, DirectionReceived}
	dataClasses     = []string{DataClassAll, DataClassVMMemory, DataClassText, DataClassBinary}
	pageKinds       = []string{PageKindZero, PageKindDuplicate, PageKindDelta, PageKindRaw}
	compressors     = []string{AlgorithmNone, AlgorithmSnappy, AlgorithmLZ4, AlgorithmZstd}
	workloads       = []string{WorkloadAll, WorkloadStable, WorkloadVariable, WorkloadBursty}
	predictors      = []string{PredictorLSTM, PredictorLastValue, PredictorEWMA, PredictorHarmonic, PredictorRobustMPC, PredictorHolt, PredictorEnsemble}
	consensusAlgos  = []string{ConsensusRaft, ConsensusPBFT}
	byzantineKinds  = []string{ByzantineEquivocation, ByzantineBadSignature, ByzantineConflictingDigest}
	crdtTypes       = []string{CRDTGCounter, CRDTPNCounter, CRDTLWWRegister, CRDTMVRegister, CRDTORSet, CRDTORMap}
	versions        = []string{VersionV1, VersionV3}
	results         = []string{ResultSuccess, ResultFailure}
	scenarios       = []string{ScenarioDatacenterSmall, ScenarioDatacenterLarge, ScenarioInternet, ScenarioCrossRegion}
	migrationKinds  = []string{BytesLogical, BytesWire}
	clusterSizeVals = func() []string {
		v := make([]string, MaxClusterSize)
		for i := range v {
			v[i] = strconv.Itoa(i + 1)
		}
		return v
	}()
)

// catalogue lists every metric; keep it grouped as the spec's sections are.
var catalogue = []Descriptor{
	// Cross-cutting metrics named by the Phase 6 spec.
	{
		Name: "dwcp_v3_migration_latency_seconds", Type: TypeHistogram, Field: "MigrationLatency",
		Labels:   []Label{{"component", pathComponents}},
		Unit:     "seconds",
		Help:     "Latency of one unit of a component's work on a migration's path (AMST round delivery, HDE batch encode, PBA prediction, ACP commit, ASS sync, ITP decision).",
		Recorder: "amst, hde, pba, acp, ass, itp (each its own component value)",
		Buckets:  latencyBuckets,
	},
	{
		Name: "dwcp_v3_throughput_bytes_per_second", Type: TypeGauge, Field: "Throughput",
		Labels:   []Label{{"transport", transports}},
		Unit:     "bytes/s",
		Help:     "Goodput of the migration transport over the last measurement interval, by transport.",
		Recorder: "amst",
	},
	{
		Name: "dwcp_v3_errors_total", Type: TypeCounter, Field: "Errors",
		Labels:   []Label{{"component", allComponents}, {"error_type", errorTypes}},
		Unit:     "count",
		Help:     "Errors by component and type.",
		Recorder: "every component and the engine",
	},
	{
		Name: "dwcp_v3_sla_compliance", Type: TypeGauge, Field: "SLACompliance",
		Labels:   []Label{{"sla_type", slaTypes}},
		Unit:     "ratio 0..1",
		Help:     "Fraction (0..1) of recent evaluation windows that met the SLA, by SLA type.",
		Recorder: "metrics.SLAEvaluator",
	},
	{
		Name: "dwcp_v3_anomaly_detections_total", Type: TypeCounter, Field: "AnomalyDetections",
		Labels:   []Label{{"anomaly_type", anomalyTypes}, {"severity", severities}},
		Unit:     "count",
		Help:     "Anomalies detected by the z-score detector, by type and severity.",
		Recorder: "metrics.SLAEvaluator (ZScoreDetector)",
	},
	{
		Name: "dwcp_v3_resource_utilization_percent", Type: TypeGauge, Field: "ResourceUtilization",
		Labels:   []Label{{"resource_type", resourceTypes}},
		Unit:     "percent 0..100 of configured capacity",
		Help:     "Process resource utilisation in percent of its configured capacity, by resource.",
		Recorder: "metrics.ResourceSampler",
	},
	{
		Name: "dwcp_v3_component_health", Type: TypeGauge, Field: "ComponentHealth",
		Labels:   []Label{{"component", allComponents}},
		Unit:     "1 healthy, 0.5 degraded, 0 failing",
		Help:     "Component health: 1 healthy, 0.5 degraded, 0 failing.",
		Recorder: "every component and the engine",
	},

	// AMST.
	{
		Name: "dwcp_v3_amst_throughput_gbps", Type: TypeGauge, Field: "AMSTThroughputGbps",
		Unit:     "Gbit/s",
		Help:     "AMST goodput in Gbit/s over the last measurement interval (the spec's name; the same value as dwcp_v3_throughput_bytes_per_second*8/1e9).",
		Recorder: "amst",
	},
	{
		Name: "dwcp_v3_amst_active_streams", Type: TypeGauge, Field: "AMSTActiveStreams",
		Unit:     "count",
		Help:     "TCP (or RDMA) streams currently carrying AMST sessions.",
		Recorder: "amst",
	},
	{
		Name: "dwcp_v3_amst_stream_utilization_percent", Type: TypeGauge, Field: "AMSTStreamUtilization",
		Unit:     "percent 0..100",
		Help:     "Stream efficiency: percent of the active streams' time spent sending, over the last interval.",
		Recorder: "amst",
	},
	{
		Name: "dwcp_v3_amst_mode_switches_total", Type: TypeCounter, Field: "AMSTModeSwitches",
		Labels:   []Label{{"from_mode", modes}, {"to_mode", modes}},
		Unit:     "count",
		Help:     "Network mode changes decided by AMST's mode detector.",
		Recorder: "amst",
	},
	{
		Name: "dwcp_v3_amst_mode", Type: TypeGauge, Field: "AMSTMode",
		Labels:   []Label{{"mode", modes}},
		Unit:     "1 current, 0 other",
		Help:     "1 for the network mode AMST currently detects, 0 for the others.",
		Recorder: "amst",
	},
	{
		Name: "dwcp_v3_amst_bytes_total", Type: TypeCounter, Field: "AMSTBytes",
		Labels:   []Label{{"direction", directions}},
		Unit:     "bytes",
		Help:     "Payload bytes carried by AMST sessions, by direction.",
		Recorder: "amst",
	},
	{
		Name: "dwcp_v3_amst_stream_reconnects_total", Type: TypeCounter, Field: "AMSTStreamReconnects",
		Unit:     "count",
		Help:     "Broken AMST streams that were redialled.",
		Recorder: "amst",
	},
	{
		Name: "dwcp_v3_amst_rdma_utilization_percent", Type: TypeGauge, Field: "AMSTRDMAUtilization",
		Unit:     "percent 0..100",
		Help:     "Percent of AMST traffic carried over RDMA (0 where no RDMA device exists).",
		Recorder: "amst",
	},

	// HDE.
	{
		Name: "dwcp_v3_hde_compression_ratio", Type: TypeGauge, Field: "HDECompressionRatio",
		Labels:   []Label{{"data_class", dataClasses}},
		Unit:     "ratio 0..1",
		Help:     "Fraction (0..1) of input bytes saved by HDE since start, by data class.",
		Recorder: "hde",
	},
	{
		Name: "dwcp_v3_hde_input_bytes_total", Type: TypeCounter, Field: "HDEInputBytes",
		Labels:   []Label{{"data_class", dataClasses}},
		Unit:     "bytes",
		Help:     "Bytes given to the HDE encoder, by data class.",
		Recorder: "hde",
	},
	{
		Name: "dwcp_v3_hde_output_bytes_total", Type: TypeCounter, Field: "HDEOutputBytes",
		Labels:   []Label{{"data_class", dataClasses}},
		Unit:     "bytes",
		Help:     "Bytes produced by the HDE encoder, by data class.",
		Recorder: "hde",
	},
	{
		Name: "dwcp_v3_hde_compression_latency_seconds", Type: TypeHistogram, Field: "HDECompressionLatency",
		Unit:     "seconds",
		Help:     "HDE encode time per page (batch time divided by its pages).",
		Recorder: "hde",
		Buckets:  fineBuckets,
	},
	{
		Name: "dwcp_v3_hde_dedup_ratio", Type: TypeGauge, Field: "HDEDedupRatio",
		Unit:     "ratio 0..1",
		Help:     "Fraction (0..1) of pages since start sent as zero flags or duplicate references.",
		Recorder: "hde",
	},
	{
		Name: "dwcp_v3_hde_pages_total", Type: TypeCounter, Field: "HDEPages",
		Labels:   []Label{{"kind", pageKinds}},
		Unit:     "count",
		Help:     "Pages encoded by HDE, by how they were encoded.",
		Recorder: "hde",
	},
	{
		Name: "dwcp_v3_hde_algorithm_selections_total", Type: TypeCounter, Field: "HDEAlgorithmSelections",
		Labels:   []Label{{"algorithm", compressors}},
		Unit:     "count",
		Help:     "Batches compressed with each algorithm, as chosen by HDE's adaptive selector.",
		Recorder: "hde",
	},

	// PBA.
	{
		Name: "dwcp_v3_pba_prediction_accuracy_percent", Type: TypeGauge, Field: "PBAPredictionAccuracy",
		Labels:   []Label{{"workload", workloads}},
		Unit:     "percent 0..100",
		Help:     "100*(1-min(1,WAPE)) of the shipped predictor over its recent window, by workload class.",
		Recorder: "pba",
	},
	{
		Name: "dwcp_v3_pba_inference_latency_seconds", Type: TypeHistogram, Field: "PBAInferenceLatency",
		Labels:   []Label{{"predictor", predictors}},
		Unit:     "seconds",
		Help:     "Time for one prediction, by predictor.",
		Recorder: "pba",
		Buckets:  fineBuckets,
	},
	{
		Name: "dwcp_v3_pba_bandwidth_utilization_percent", Type: TypeGauge, Field: "PBABandwidthUtilization",
		Unit:     "percent 0..100",
		Help:     "Percent of the forecast link bandwidth allocated to migrations.",
		Recorder: "pba",
	},
	{
		Name: "dwcp_v3_pba_predictions_total", Type: TypeCounter, Field: "PBAPredictions",
		Labels:   []Label{{"workload", workloads}},
		Unit:     "count",
		Help:     "Predictions scored against the actual bandwidth, by workload class.",
		Recorder: "pba",
	},
	{
		Name: "dwcp_v3_pba_prediction_misses_total", Type: TypeCounter, Field: "PBAPredictionMisses",
		Labels:   []Label{{"workload", workloads}},
		Unit:     "count",
		Help:     "Predictions that over-estimated the actual bandwidth by more than 20%, by workload class.",
		Recorder: "pba",
	},

	// ACP.
	{
		Name: "dwcp_v3_acp_consensus_latency_seconds", Type: TypeHistogram, Field: "ACPConsensusLatency",
		Labels:   []Label{{"algorithm", consensusAlgos}, {"cluster_size", clusterSizeVals}},
		Unit:     "seconds",
		Help:     "Time from proposal to committed result, by algorithm and cluster size.",
		Recorder: "acp",
		Buckets:  latencyBuckets,
	},
	{
		Name: "dwcp_v3_acp_quorum_size", Type: TypeGauge, Field: "ACPQuorumSize",
		Labels:   []Label{{"algorithm", consensusAlgos}},
		Unit:     "replicas",
		Help:     "Replicas needed for a commit in the current configuration, by algorithm.",
		Recorder: "acp",
	},
	{
		Name: "dwcp_v3_acp_byzantine_detections_total", Type: TypeCounter, Field: "ACPByzantineDetections",
		Labels:   []Label{{"detection_type", byzantineKinds}},
		Unit:     "count",
		Help:     "Byzantine behaviour detected by PBFT replicas, by kind.",
		Recorder: "acp",
	},
	{
		Name: "dwcp_v3_acp_leader_elections_total", Type: TypeCounter, Field: "ACPLeaderElections",
		Labels:   []Label{{"algorithm", consensusAlgos}},
		Unit:     "count",
		Help:     "Leader changes: Raft elections won, PBFT view changes completed.",
		Recorder: "acp",
	},
	{
		Name: "dwcp_v3_acp_consensus_failures_total", Type: TypeCounter, Field: "ACPConsensusFailures",
		Labels:   []Label{{"algorithm", consensusAlgos}},
		Unit:     "count",
		Help:     "Proposals that did not commit (timeout, lost leadership, rejected).",
		Recorder: "acp",
	},

	// ASS.
	{
		Name: "dwcp_v3_ass_sync_bytes_total", Type: TypeCounter, Field: "ASSSyncBytes",
		Labels:   []Label{{"direction", directions}},
		Unit:     "bytes",
		Help:     "Anti-entropy bytes exchanged with peers, by direction.",
		Recorder: "ass",
	},
	{
		Name: "dwcp_v3_ass_sync_latency_seconds", Type: TypeHistogram, Field: "ASSSyncLatency",
		Unit:     "seconds",
		Help:     "Time of one sync exchange with a peer (send deltas, receive acknowledgement).",
		Recorder: "ass",
		Buckets:  latencyBuckets,
	},
	{
		Name: "dwcp_v3_ass_state_size_bytes", Type: TypeGauge, Field: "ASSStateSize",
		Unit:     "bytes",
		Help:     "Encoded size of the replica's CRDT state.",
		Recorder: "ass",
	},
	{
		Name: "dwcp_v3_ass_crdt_operations_total", Type: TypeCounter, Field: "ASSCRDTOperations",
		Labels:   []Label{{"crdt_type", crdtTypes}},
		Unit:     "count",
		Help:     "Local CRDT mutations, by CRDT type.",
		Recorder: "ass",
	},

	// ITP.
	{
		Name: "dwcp_v3_itp_placement_efficiency_percent", Type: TypeGauge, Field: "ITPPlacementEfficiency",
		Unit:     "percent 0..100",
		Help:     "100 * lower bound of hosts needed / hosts used, for the last placement.",
		Recorder: "itp",
	},
	{
		Name: "dwcp_v3_itp_constraint_violations_total", Type: TypeCounter, Field: "ITPConstraintViolations",
		Unit:     "count",
		Help:     "Soft constraints a chosen placement violates (hard constraints are never violated).",
		Recorder: "itp",
	},
	{
		Name: "dwcp_v3_itp_rebalancing_events_total", Type: TypeCounter, Field: "ITPRebalancingEvents",
		Unit:     "count",
		Help:     "Migrations proposed by the rebalancing planner.",
		Recorder: "itp",
	},
	{
		Name: "dwcp_v3_itp_decision_latency_seconds", Type: TypeHistogram, Field: "ITPDecisionLatency",
		Unit:     "seconds",
		Help:     "Time to place one VM (filter, score, select).",
		Recorder: "itp",
		Buckets:  latencyBuckets,
	},

	// Migrations.
	{
		Name: "dwcp_v3_migrations_total", Type: TypeCounter, Field: "Migrations",
		Labels:   []Label{{"version", versions}, {"result", results}},
		Unit:     "count",
		Help:     "Finished migrations by protocol version and result.",
		Recorder: "engine (package dwcp)",
	},
	{
		Name: "dwcp_v3_migration_duration_seconds", Type: TypeHistogram, Field: "MigrationDuration",
		Labels:   []Label{{"scenario", scenarios}},
		Unit:     "seconds",
		Help:     "Total time of successful migrations, by scenario.",
		Recorder: "engine (package dwcp)",
		Buckets:  latencyBuckets,
	},
	{
		Name: "dwcp_v3_migration_downtime_seconds", Type: TypeHistogram, Field: "MigrationDowntime",
		Labels:   []Label{{"version", versions}},
		Unit:     "seconds",
		Help:     "Time the guest was paused during switchover, by protocol version.",
		Recorder: "engine (package dwcp)",
		Buckets:  latencyBuckets,
	},
	{
		Name: "dwcp_v3_migration_bytes_total", Type: TypeCounter, Field: "MigrationBytes",
		Labels:   []Label{{"version", versions}, {"kind", migrationKinds}},
		Unit:     "bytes",
		Help:     "Guest bytes migrated (logical) and bytes sent on the wire, by protocol version.",
		Recorder: "engine (package dwcp)",
	},
	{
		Name: "dwcp_v3_active_migrations", Type: TypeGauge, Field: "ActiveMigrations",
		Unit:     "count",
		Help:     "Migrations in progress.",
		Recorder: "engine (package dwcp)",
	},

	// Rollout.
	{
		Name: "dwcp_v3_rollout_stage", Type: TypeGauge, Field: "RolloutStage",
		Unit:     "stage 0..5",
		Help:     "Rollout stage: 0 off, 1 canary, 2 10%, 3 25%, 4 50%, 5 100%.",
		Recorder: "engine (package dwcp, rollout)",
	},
	{
		Name: "dwcp_v3_rollout_percentage", Type: TypeGauge, Field: "RolloutPercentage",
		Unit:     "percent 0..100",
		Help:     "Feature-flag percentage of VMs that migrate with v3 (0..100).",
		Recorder: "engine (package dwcp, rollout)",
	},
	{
		Name: "dwcp_v3_rollout_kill_switch", Type: TypeGauge, Field: "RolloutKillSwitch",
		Unit:     "1 on, 0 off",
		Help:     "1 when the kill switch forces every migration to v1.",
		Recorder: "engine (package dwcp, rollout)",
	},
}

// Catalogue returns a copy of every metric's descriptor, in documentation
// order. Changing the copy changes nothing in the package.
func Catalogue() []Descriptor {
	out := make([]Descriptor, len(catalogue))
	for i, d := range catalogue {
		out[i] = cloneDescriptor(d)
	}
	return out
}

// Lookup returns the descriptor of the metric called name.
func Lookup(name string) (Descriptor, bool) {
	for _, d := range catalogue {
		if d.Name == name {
			return cloneDescriptor(d), true
		}
	}
	return Descriptor{}, false
}

func cloneDescriptor(d Descriptor) Descriptor {
	labels := make([]Label, len(d.Labels))
	for i, l := range d.Labels {
		labels[i] = Label{Name: l.Name, Values: slices.Clone(l.Values)}
	}
	d.Labels = labels
	d.Buckets = slices.Clone(d.Buckets)
	return d
}

// descriptor is Lookup for New: a name missing from the catalogue is a
// programming error in this package, caught by every test.
func descriptor(name string, t MetricType) Descriptor {
	for _, d := range catalogue {
		if d.Name == name {
			if d.Type != t {
				panic(fmt.Sprintf("metrics: %s is a %s in the catalogue, built as a %s", name, d.Type, t))
			}
			return d
		}
	}
	panic("metrics: " + name + " is missing from the catalogue")
}
