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
// prometheus.MustRegister does. Names, help texts, labels and buckets come
// from Catalogue.
func New(reg prometheus.Registerer) *Metrics {
	b := builder{f: promauto.With(reg)}
	return &Metrics{
		MigrationLatency:    b.histogramVec("dwcp_v3_migration_latency_seconds"),
		Throughput:          b.gaugeVec("dwcp_v3_throughput_bytes_per_second"),
		Errors:              b.counterVec("dwcp_v3_errors_total"),
		SLACompliance:       b.gaugeVec("dwcp_v3_sla_compliance"),
		AnomalyDetections:   b.counterVec("dwcp_v3_anomaly_detections_total"),
		ResourceUtilization: b.gaugeVec("dwcp_v3_resource_utilization_percent"),
		ComponentHealth:     b.gaugeVec("dwcp_v3_component_health"),

		AMSTThroughputGbps:    b.gauge("dwcp_v3_amst_throughput_gbps"),
		AMSTActiveStreams:     b.gauge("dwcp_v3_amst_active_streams"),
		AMSTStreamUtilization: b.gauge("dwcp_v3_amst_stream_utilization_percent"),
		AMSTModeSwitches:      b.counterVec("dwcp_v3_amst_mode_switches_total"),
		AMSTMode:              b.gaugeVec("dwcp_v3_amst_mode"),
		AMSTBytes:             b.counterVec("dwcp_v3_amst_bytes_total"),
		AMSTStreamReconnects:  b.counter("dwcp_v3_amst_stream_reconnects_total"),
		AMSTRDMAUtilization:   b.gauge("dwcp_v3_amst_rdma_utilization_percent"),

		HDECompressionRatio:    b.gaugeVec("dwcp_v3_hde_compression_ratio"),
		HDEInputBytes:          b.counterVec("dwcp_v3_hde_input_bytes_total"),
		HDEOutputBytes:         b.counterVec("dwcp_v3_hde_output_bytes_total"),
		HDECompressionLatency:  b.histogram("dwcp_v3_hde_compression_latency_seconds"),
		HDEDedupRatio:          b.gauge("dwcp_v3_hde_dedup_ratio"),
		HDEPages:               b.counterVec("dwcp_v3_hde_pages_total"),
		HDEAlgorithmSelections: b.counterVec("dwcp_v3_hde_algorithm_selections_total"),

		PBAPredictionAccuracy:   b.gaugeVec("dwcp_v3_pba_prediction_accuracy_percent"),
		PBAInferenceLatency:     b.histogramVec("dwcp_v3_pba_inference_latency_seconds"),
		PBABandwidthUtilization: b.gauge("dwcp_v3_pba_bandwidth_utilization_percent"),
		PBAPredictions:          b.counterVec("dwcp_v3_pba_predictions_total"),
		PBAPredictionMisses:     b.counterVec("dwcp_v3_pba_prediction_misses_total"),

		ACPConsensusLatency:    b.histogramVec("dwcp_v3_acp_consensus_latency_seconds"),
		ACPQuorumSize:          b.gaugeVec("dwcp_v3_acp_quorum_size"),
		ACPByzantineDetections: b.counterVec("dwcp_v3_acp_byzantine_detections_total"),
		ACPLeaderElections:     b.counterVec("dwcp_v3_acp_leader_elections_total"),
		ACPConsensusFailures:   b.counterVec("dwcp_v3_acp_consensus_failures_total"),

		ASSSyncBytes:      b.counterVec("dwcp_v3_ass_sync_bytes_total"),
		ASSSyncLatency:    b.histogram("dwcp_v3_ass_sync_latency_seconds"),
		ASSStateSize:      b.gauge("dwcp_v3_ass_state_size_bytes"),
		ASSCRDTOperations: b.counterVec("dwcp_v3_ass_crdt_operations_total"),

		ITPPlacementEfficiency:  b.gauge("dwcp_v3_itp_placement_efficiency_percent"),
		ITPConstraintViolations: b.counter("dwcp_v3_itp_constraint_violations_total"),
		ITPRebalancingEvents:    b.counter("dwcp_v3_itp_rebalancing_events_total"),
		ITPDecisionLatency:      b.histogram("dwcp_v3_itp_decision_latency_seconds"),

		Migrations:        b.counterVec("dwcp_v3_migrations_total"),
		MigrationDuration: b.histogramVec("dwcp_v3_migration_duration_seconds"),
		MigrationDowntime: b.histogramVec("dwcp_v3_migration_downtime_seconds"),
		MigrationBytes:    b.counterVec("dwcp_v3_migration_bytes_total"),
		ActiveMigrations:  b.gauge("dwcp_v3_active_migrations"),

		RolloutStage:      b.gauge("dwcp_v3_rollout_stage"),
		RolloutPercentage: b.gauge("dwcp_v3_rollout_percentage"),
		RolloutKillSwitch: b.gauge("dwcp_v3_rollout_kill_switch"),
	}
}

// builder creates collectors from their catalogue descriptors.
type builder struct{ f promauto.Factory }

func (b builder) counter(name string) prometheus.Counter {
	d := descriptor(name, TypeCounter)
	return b.f.NewCounter(prometheus.CounterOpts{Name: d.Name, Help: d.Help})
}

func (b builder) counterVec(name string) *prometheus.CounterVec {
	d := descriptor(name, TypeCounter)
	return b.f.NewCounterVec(prometheus.CounterOpts{Name: d.Name, Help: d.Help}, d.LabelNames())
}

func (b builder) gauge(name string) prometheus.Gauge {
	d := descriptor(name, TypeGauge)
	return b.f.NewGauge(prometheus.GaugeOpts{Name: d.Name, Help: d.Help})
}

func (b builder) gaugeVec(name string) *prometheus.GaugeVec {
	d := descriptor(name, TypeGauge)
	return b.f.NewGaugeVec(prometheus.GaugeOpts{Name: d.Name, Help: d.Help}, d.LabelNames())
}

func (b builder) histogram(name string) prometheus.Histogram {
	d := descriptor(name, TypeHistogram)
	return b.f.NewHistogram(prometheus.HistogramOpts{Name: d.Name, Help: d.Help, Buckets: d.Buckets})
}

func (b builder) histogramVec(name string) *prometheus.HistogramVec {
	d := descriptor(name, TypeHistogram)
	return b.f.NewHistogramVec(prometheus.HistogramOpts{Name: d.Name, Help: d.Help, Buckets: d.Buckets}, d.LabelNames())
}
