package metrics

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// Label values. Each label of the catalogue takes only the values listed in
// Catalogue; these constants are the ones components use.
const (
	ComponentAMST = "amst"
	ComponentHDE  = "hde"
	ComponentPBA  = "pba"
	ComponentACP  = "acp"
	ComponentASS  = "ass"
	ComponentITP  = "itp"
	// ComponentEngine is the migration engine in the root package; it is a
	// valid value of the error and health "component" labels only.
	ComponentEngine = "engine"

	TransportRDMA   = "rdma"
	TransportTCP    = "tcp"
	TransportHybrid = "hybrid"

	ErrorNetworkTimeout   = "network_timeout"
	ErrorConsensusFailure = "consensus_failure"
	ErrorCompression      = "compression_error"
	ErrorMemory           = "memory_error"
	ErrorStateSync        = "state_sync_error"

	SLALatency      = "latency"
	SLAThroughput   = "throughput"
	SLAErrorRate    = "error_rate"
	SLAAvailability = "availability"

	AnomalyLatencySpike       = "latency_spike"
	AnomalyThroughputDrop     = "throughput_drop"
	AnomalyErrorBurst         = "error_burst"
	AnomalyResourceSaturation = "resource_saturation"
	SeverityWarning           = "warning"
	SeverityCritical          = "critical"

	ResourceCPU        = "cpu"
	ResourceMemory     = "memory"
	ResourceNetwork    = "network"
	ResourceDiskIO     = "disk_io"
	ResourceGoroutines = "goroutines"

	ModeDatacenter = "datacenter"
	ModeInternet   = "internet"
	ModeHybrid     = "hybrid"

	DirectionSent     = "sent"
	DirectionReceived = "received"

	DataClassAll      = "all"
	DataClassVMMemory = "vm_memory"
	DataClassText     = "text"
	DataClassBinary   = "binary"

	PageKindZero      = "zero"
	PageKindDuplicate = "duplicate"
	PageKindDelta     = "delta"
	PageKindRaw       = "raw"

	AlgorithmNone   = "none"
	AlgorithmSnappy = "snappy"
	AlgorithmLZ4    = "lz4"
	AlgorithmZstd   = "zstd"

	WorkloadAll      = "all"
	WorkloadStable   = "stable"
	WorkloadVariable = "variable"
	WorkloadBursty   = "bursty"

	PredictorLSTM      = "lstm"
	PredictorLastValue = "last_value"
	PredictorEWMA      = "ewma"
	PredictorHarmonic  = "harmonic_mean"
	PredictorRobustMPC = "robust_mpc"
	PredictorHolt      = "holt"
	PredictorEnsemble  = "ensemble"

	ConsensusRaft = "raft"
	ConsensusPBFT = "pbft"

	ByzantineEquivocation      = "equivocation"
	ByzantineBadSignature      = "bad_signature"
	ByzantineConflictingDigest = "conflicting_digest"

	CRDTGCounter    = "gcounter"
	CRDTPNCounter   = "pncounter"
	CRDTLWWRegister = "lww_register"
	CRDTMVRegister  = "mv_register"
	CRDTORSet       = "or_set"
	CRDTORMap       = "or_map"

	VersionV1 = "v1"
	VersionV3 = "v3"

	ResultSuccess = "success"
	ResultFailure = "failure"

	ScenarioDatacenterSmall = "datacenter_small_vm"
	ScenarioDatacenterLarge = "datacenter_large_vm"
	ScenarioInternet        = "internet"
	ScenarioCrossRegion     = "cross_region"

	BytesLogical = "logical"
	BytesWire    = "wire"
)

// LatencyBuckets resolve 50 µs to 300 s, with extra boundaries at the spec's
// targets (200, 300, 400, 450, 500, 750 ms) so that histogram_quantile over
// them is exact where operators compare it with a threshold.
var latencyBuckets = []float64{
	0.00005, 0.0001, 0.00025, 0.0005,
	0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
	0.1, 0.2, 0.3, 0.4, 0.45, 0.5, 0.75,
	1, 2.5, 5, 10, 30, 60, 120, 300,
}

// LatencyBuckets returns a copy of the bucket boundaries (in seconds) of
// dwcp_v3_migration_latency_seconds.
func LatencyBuckets() []float64 { return append([]float64(nil), latencyBuckets...) }

// fineBuckets resolve 1 µs to 1 s, for per-page and per-inference work.
var fineBuckets = []float64{
	0.000001, 0.0000025, 0.000005, 0.00001, 0.000025, 0.00005,
	0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
	0.05, 0.1, 0.25, 0.5, 1,
}

// Metrics holds every collector of the dwcp_v3 catalogue. Build it with New;
// all fields are safe for concurrent use. Use only the label values that
// Catalogue documents (the constants of this package).
type Metrics struct {
	// Cross-cutting metrics named by the Phase 6 spec.
	MigrationLatency    *prometheus.HistogramVec // component
	Throughput          *prometheus.GaugeVec     // transport
	Errors              *prometheus.CounterVec   // component, error_type
	SLACompliance       *prometheus.GaugeVec     // sla_type
	AnomalyDetections   *prometheus.CounterVec   // anomaly_type, severity
	ResourceUtilization *prometheus.GaugeVec     // resource_type
	ComponentHealth     *prometheus.GaugeVec     // component

	// AMST.
	AMSTThroughputGbps    prometheus.Gauge
	AMSTActiveStreams     prometheus.Gauge
	AMSTStreamUtilization prometheus.Gauge
	AMSTModeSwitches      *prometheus.CounterVec // from_mode, to_mode
	AMSTMode              *prometheus.GaugeVec   // mode (1 for the current one)
	AMSTBytes             *prometheus.CounterVec // direction
	AMSTStreamReconnects  prometheus.Counter
	AMSTRDMAUtilization   prometheus.Gauge

	// HDE.
	HDECompressionRatio    *prometheus.GaugeVec   // data_class
	HDEInputBytes          *prometheus.CounterVec // data_class
	HDEOutputBytes         *prometheus.CounterVec // data_class
	HDECompressionLatency  prometheus.Histogram
	HDEDedupRatio          prometheus.Gauge
	HDEPages               *prometheus.CounterVec // kind
	HDEAlgorithmSelections *prometheus.CounterVec // algorithm

	// PBA.
	PBAPredictionAccuracy   *prometheus.GaugeVec     // workload
	PBAInferenceLatency     *prometheus.HistogramVec // predictor
	PBABandwidthUtilization prometheus.Gauge
	PBAPredictions          *prometheus.CounterVec // workload
	PBAPredictionMisses     *prometheus.CounterVec // workload

	// ACP.
	ACPConsensusLatency    *prometheus.HistogramVec // algorithm, cluster_size
	ACPQuorumSize          *prometheus.GaugeVec     // algorithm
	ACPByzantineDetections *prometheus.CounterVec   // detection_type
	ACPLeaderElections     *prometheus.CounterVec   // algorithm
	ACPConsensusFailures   *prometheus.CounterVec   // algorithm

	// ASS.
	ASSSyncBytes      *prometheus.CounterVec // direction
	ASSSyncLatency    prometheus.Histogram
	ASSStateSize      prometheus.Gauge
	ASSCRDTOperations *prometheus.CounterVec // crdt_type

	// ITP.
	ITPPlacementEfficiency  prometheus.Gauge
	ITPConstraintViolations prometheus.Counter
	ITPRebalancingEvents    prometheus.Counter
	ITPDecisionLatency      prometheus.Histogram

	// Migrations (recorded by the engine).
	Migrations        *prometheus.CounterVec   // version, result
	MigrationDuration *prometheus.HistogramVec // scenario
	MigrationDowntime *prometheus.HistogramVec // version
	MigrationBytes    *prometheus.CounterVec   // version, kind
	ActiveMigrations  prometheus.Gauge

	// Rollout.
	RolloutStage      prometheus.Gauge
	RolloutPercentage prometheus.Gauge
	RolloutKillSwitch prometheus.Gauge
}

// New creates every collector of the catalogue and registers it with reg.
// A nil reg gives working collectors that are registered nowhere, which is
// what tests and components used on their own want. Two Metrics built on two
// registries never collide; building two on the same registry panics, as
// prometheus.MustRegister does.
func New(reg prometheus.Registerer) *Metrics {
	f := promauto.With(reg)
	return &Metrics{
		MigrationLatency: f.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "dwcp_v3_migration_latency_seconds",
			Help:    "Latency of one unit of a component's work on a migration's path (AMST round delivery, HDE batch encode, PBA prediction, ACP commit, ASS sync, ITP decision).",
			Buckets: latencyBuckets,
		}, []string{"component"}),
		Throughput: f.NewGaugeVec(prometheus.GaugeOpts{
			Name: "dwcp_v3_throughput_bytes_per_second",
			Help: "Goodput of the migration transport over the last measurement interval, by transport.",
		}, []string{"transport"}),
		Errors: f.NewCounterVec(prometheus.CounterOpts{
			Name: "dwcp_v3_errors_total",
			Help: "Errors by component and type.",
		}, []string{"component", "error_type"}),
		SLACompliance: f.NewGaugeVec(prometheus.GaugeOpts{
			Name: "dwcp_v3_sla_compliance",
			Help: "Fraction (0..1) of recent evaluation windows that met the SLA, by SLA type.",
		}, []string{"sla_type"}),
		AnomalyDetections: f.NewCounterVec(prometheus.CounterOpts{
			Name: "dwcp_v3_anomaly_detections_total",
			Help: "Anomalies detected by the z-score detector, by type and severity.",
		}, []string{"anomaly_type", "severity"}),
		ResourceUtilization: f.NewGaugeVec(prometheus.GaugeOpts{
			Name: "dwcp_v3_resource_utilization_percent",
			Help: "Process resource utilisation in percent of its configured capacity, by resource.",
		}, []string{"resource_type"}),
		ComponentHealth: f.NewGaugeVec(prometheus.GaugeOpts{
			Name: "dwcp_v3_component_health",
			Help: "Component health: 1 healthy, 0.5 degraded, 0 failing.",
		}, []string{"component"}),

		AMSTThroughputGbps: f.NewGauge(prometheus.GaugeOpts{
			Name: "dwcp_v3_amst_throughput_gbps",
			Help: "AMST goodput in Gbit/s over the last measurement interval (the spec's name; the same value as dwcp_v3_throughput_bytes_per_second*8/1e9).",
		}),
		AMSTActiveStreams: f.NewGauge(prometheus.GaugeOpts{
			Name: "dwcp_v3_amst_active_streams",
			Help: "TCP (or RDMA) streams currently carrying AMST sessions.",
		}),
		AMSTStreamUtilization: f.NewGauge(prometheus.GaugeOpts{
			Name: "dwcp_v3_amst_stream_utilization_percent",
			Help: "Stream efficiency: percent of the active streams' time spent sending, over the last interval.",
		}),
		AMSTModeSwitches: f.NewCounterVec(prometheus.CounterOpts{
			Name: "dwcp_v3_amst_mode_switches_total",
			Help: "Network mode changes decided by AMST's mode detector.",
		}, []string{"from_mode", "to_mode"}),
		AMSTMode: f.NewGaugeVec(prometheus.GaugeOpts{
			Name: "dwcp_v3_amst_mode",
			Help: "1 for the network mode AMST currently detects, 0 for the others.",
		}, []string{"mode"}),
		AMSTBytes: f.NewCounterVec(prometheus.CounterOpts{
			Name: "dwcp_v3_amst_bytes_total",
			Help: "Payload bytes carried by AMST sessions, by direction.",
		}, []string{"direction"}),
		AMSTStreamReconnects: f.NewCounter(prometheus.CounterOpts{
			Name: "dwcp_v3_amst_stream_reconnects_total",
			Help: "Broken AMST streams that were redialled.",
		}),
		AMSTRDMAUtilization: f.NewGauge(prometheus.GaugeOpts{
			Name: "dwcp_v3_amst_rdma_utilization_percent",
			Help: "Percent of AMST traffic carried over RDMA (0 where no RDMA device exists).",
		}),

		HDECompressionRatio: f.NewGaugeVec(prometheus.GaugeOpts{
			Name: "dwcp_v3_hde_compression_ratio",
			Help: "Fraction (0..1) of input bytes saved by HDE since start, by data class.",
		}, []string{"data_class"}),
		HDEInputBytes: f.NewCounterVec(prometheus.CounterOpts{
			Name: "dwcp_v3_hde_input_bytes_total",
			Help: "Bytes given to the HDE encoder, by data class.",
		}, []string{"data_class"}),
		HDEOutputBytes: f.NewCounterVec(prometheus.CounterOpts{
			Name: "dwcp_v3_hde_output_bytes_total",
			Help: "Bytes produced by the HDE encoder, by data class.",
		}, []string{"data_class"}),
		HDECompressionLatency: f.NewHistogram(prometheus.HistogramOpts{
			Name:    "dwcp_v3_hde_compression_latency_seconds",
			Help:    "HDE encode time per page (batch time divided by its pages).",
			Buckets: fineBuckets,
		}),
		HDEDedupRatio: f.NewGauge(prometheus.GaugeOpts{
			Name: "dwcp_v3_hde_dedup_ratio",
			Help: "Fraction (0..1) of pages since start sent as zero flags or duplicate references.",
		}),
		HDEPages: f.NewCounterVec(prometheus.CounterOpts{
			Name: "dwcp_v3_hde_pages_total",
			Help: "Pages encoded by HDE, by how they were encoded.",
		}, []string{"kind"}),
		HDEAlgorithmSelections: f.NewCounterVec(prometheus.CounterOpts{
			Name: "dwcp_v3_hde_algorithm_selections_total",
			Help: "Batches compressed with each algorithm, as chosen by HDE's adaptive selector.",
		}, []string{"algorithm"}),

		PBAPredictionAccuracy: f.NewGaugeVec(prometheus.GaugeOpts{
			Name: "dwcp_v3_pba_prediction_accuracy_percent",
			Help: "100*(1-min(1,WAPE)) of the shipped predictor over its recent window, by workload class.",
		}, []string{"workload"}),
		PBAInferenceLatency: f.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "dwcp_v3_pba_inference_latency_seconds",
			Help:    "Time for one prediction, by predictor.",
			Buckets: fineBuckets,
		}, []string{"predictor"}),
		PBABandwidthUtilization: f.NewGauge(prometheus.GaugeOpts{
			Name: "dwcp_v3_pba_bandwidth_utilization_percent",
			Help: "Percent of the forecast link bandwidth allocated to migrations.",
		}),
		PBAPredictions: f.NewCounterVec(prometheus.CounterOpts{
			Name: "dwcp_v3_pba_predictions_total",
			Help: "Predictions scored against the actual bandwidth, by workload class.",
		}, []string{"workload"}),
		PBAPredictionMisses: f.NewCounterVec(prometheus.CounterOpts{
			Name: "dwcp_v3_pba_prediction_misses_total",
			Help: "Predictions that over-estimated the actual bandwidth by more than 20%, by workload class.",
		}, []string{"workload"}),

		ACPConsensusLatency: f.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "dwcp_v3_acp_consensus_latency_seconds",
			Help:    "Time from proposal to committed result, by algorithm and cluster size.",
			Buckets: latencyBuckets,
		}, []string{"algorithm", "cluster_size"}),
		ACPQuorumSize: f.NewGaugeVec(prometheus.GaugeOpts{
			Name: "dwcp_v3_acp_quorum_size",
			Help: "Replicas needed for a commit in the current configuration, by algorithm.",
		}, []string{"algorithm"}),
		ACPByzantineDetections: f.NewCounterVec(prometheus.CounterOpts{
			Name: "dwcp_v3_acp_byzantine_detections_total",
			Help: "Byzantine behaviour detected by PBFT replicas, by kind.",
		}, []string{"detection_type"}),
		ACPLeaderElections: f.NewCounterVec(prometheus.CounterOpts{
			Name: "dwcp_v3_acp_leader_elections_total",
			Help: "Leader changes: Raft elections won, PBFT view changes completed.",
		}, []string{"algorithm"}),
		ACPConsensusFailures: f.NewCounterVec(prometheus.CounterOpts{
			Name: "dwcp_v3_acp_consensus_failures_total",
			Help: "Proposals that did not commit (timeout, lost leadership, rejected).",
		}, []string{"algorithm"}),

		ASSSyncBytes: f.NewCounterVec(prometheus.CounterOpts{
			Name: "dwcp_v3_ass_sync_bytes_total",
			Help: "Anti-entropy bytes exchanged with peers, by direction.",
		}, []string{"direction"}),
		ASSSyncLatency: f.NewHistogram(prometheus.HistogramOpts{
			Name:    "dwcp_v3_ass_sync_latency_seconds",
			Help:    "Time of one sync exchange with a peer (send deltas, receive acknowledgement).",
			Buckets: latencyBuckets,
		}),
		ASSStateSize: f.NewGauge(prometheus.GaugeOpts{
			Name: "dwcp_v3_ass_state_size_bytes",
			Help: "Encoded size of the replica's CRDT state.",
		}),
		ASSCRDTOperations: f.NewCounterVec(prometheus.CounterOpts{
			Name: "dwcp_v3_ass_crdt_operations_total",
			Help: "Local CRDT mutations, by CRDT type.",
		}, []string{"crdt_type"}),

		ITPPlacementEfficiency: f.NewGauge(prometheus.GaugeOpts{
			Name: "dwcp_v3_itp_placement_efficiency_percent",
			Help: "100 * lower bound of hosts needed / hosts used, for the last placement.",
		}),
		ITPConstraintViolations: f.NewCounter(prometheus.CounterOpts{
			Name: "dwcp_v3_itp_constraint_violations_total",
			Help: "Soft constraints a chosen placement violates (hard constraints are never violated).",
		}),
		ITPRebalancingEvents: f.NewCounter(prometheus.CounterOpts{
			Name: "dwcp_v3_itp_rebalancing_events_total",
			Help: "Migrations proposed by the rebalancing planner.",
		}),
		ITPDecisionLatency: f.NewHistogram(prometheus.HistogramOpts{
			Name:    "dwcp_v3_itp_decision_latency_seconds",
			Help:    "Time to place one VM (filter, score, select).",
			Buckets: latencyBuckets,
		}),

		Migrations: f.NewCounterVec(prometheus.CounterOpts{
			Name: "dwcp_v3_migrations_total",
			Help: "Finished migrations by protocol version and result.",
		}, []string{"version", "result"}),
		MigrationDuration: f.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "dwcp_v3_migration_duration_seconds",
			Help:    "Total time of successful migrations, by scenario.",
			Buckets: latencyBuckets,
		}, []string{"scenario"}),
		MigrationDowntime: f.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "dwcp_v3_migration_downtime_seconds",
			Help:    "Time the guest was paused during switchover, by protocol version.",
			Buckets: latencyBuckets,
		}, []string{"version"}),
		MigrationBytes: f.NewCounterVec(prometheus.CounterOpts{
			Name: "dwcp_v3_migration_bytes_total",
			Help: "Guest bytes migrated (logical) and bytes sent on the wire, by protocol version.",
		}, []string{"version", "kind"}),
		ActiveMigrations: f.NewGauge(prometheus.GaugeOpts{
			Name: "dwcp_v3_active_migrations",
			Help: "Migrations in progress.",
		}),

		RolloutStage: f.NewGauge(prometheus.GaugeOpts{
			Name: "dwcp_v3_rollout_stage",
			Help: "Rollout stage: 0 off, 1 canary, 2 10%, 3 25%, 4 50%, 5 100%.",
		}),
		RolloutPercentage: f.NewGauge(prometheus.GaugeOpts{
			Name: "dwcp_v3_rollout_percentage",
			Help: "Feature-flag percentage of VMs that migrate with v3 (0..100).",
		}),
		RolloutKillSwitch: f.NewGauge(prometheus.GaugeOpts{
			Name: "dwcp_v3_rollout_kill_switch",
			Help: "1 when the kill switch forces every migration to v1.",
		}),
	}
}
