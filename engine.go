package dwcp

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"time"

	"github.com/dwcp/dwcp/metrics"
)

// AutoConvergeConfig is QEMU's auto-converge: once the guest dirties more
// than TriggerRatio of what a round sent, in two rounds running, throttle it
// to Initial percent, then Increment more per trigger, up to Max.
type AutoConvergeConfig struct {
	Initial      int
	Increment    int
	Max          int
	TriggerRatio float64
	// RoundsAtMax is how many more rounds the engine tries at Max before
	// it gives up.
	RoundsAtMax int
}

// Config configures an Engine. The zero value of a field means its default
// (DefaultConfig); components left nil are simply not used.
type Config struct {
	// NodeID names this host in ownership records and handshakes.
	NodeID string
	// Metrics receives every migration metric; nil creates private ones.
	Metrics *metrics.Metrics

	// Transport dials destinations and listens for sources.
	Transport Transport
	// Codecs builds the page codecs of v1 and v3.
	Codecs CodecProvider
	// NewForecaster builds the bandwidth forecaster for one migration of
	// version v. nil: LastRoundRate for both versions.
	NewForecaster func(v Version) BandwidthForecaster

	// Optional cluster components.
	Ownership OwnershipRegistry
	State     ClusterState
	Placer    Placer

	// Incoming builds the destination memory of an offered migration;
	// required to receive.
	Incoming IncomingFunc

	// DowntimeTarget is the longest pause the engine plans for (300 ms,
	// QEMU's default downtime-limit).
	DowntimeTarget time.Duration
	// MaxRounds bounds pre-copy rounds before the engine gives up.
	MaxRounds int
	// BatchPages is how many pages go into one codec frame.
	BatchPages int
	// Pipeline is how many encoded batches may wait for the transport.
	Pipeline int
	// Lanes is how many pages encoders (and decoders) v3 runs in parallel,
	// like QEMU's multifd channels; v1 always uses one. Default
	// min(GOMAXPROCS, 4).
	Lanes int
	// AutoConverge throttles guests that dirty too fast.
	AutoConverge AutoConvergeConfig
	// HandshakeTimeout bounds the hello exchange; ReplyTimeout bounds each
	// wait for a reply once everything it answers has been sent.
	HandshakeTimeout time.Duration
	ReplyTimeout     time.Duration
	// SampleInterval is how often v3 feeds the forecaster during a round.
	SampleInterval time.Duration

	// Rollout chooses versions for VersionAuto requests.
	Rollout Rollout

	// SLA, if set, is told of every migration the engine sends: the
	// switchover downtime (the guest-visible latency), the guest bytes and
	// the time they took, and whether it succeeded. *metrics.SLAEvaluator
	// (or metrics.Monitor.SLA) implements it.
	SLA SLAObserver
}

// SLAObserver receives what the SLA evaluation needs from each migration.
type SLAObserver interface {
	ObserveLatency(d time.Duration)
	ObserveTransfer(bytes uint64, busy time.Duration)
	ObserveOperation(failed bool)
	ObserveRequest(served bool)
}

// DefaultConfig returns the defaults every zero field stands for, with the
// engine's own single-stream TCP transport and raw codecs. DefaultComponents
// (components.go) wires the DWCP components instead.
func DefaultConfig() Config {
	return Config{
		NodeID:           "node",
		Transport:        &TCPTransport{},
		Codecs:           RawCodecs{},
		DowntimeTarget:   300 * time.Millisecond,
		MaxRounds:        30,
		BatchPages:       256,
		Pipeline:         8,
		Lanes:            min(runtime.GOMAXPROCS(0), 4),
		AutoConverge:     AutoConvergeConfig{Initial: 20, Increment: 10, Max: 99, TriggerRatio: 0.5, RoundsAtMax: 2},
		HandshakeTimeout: 10 * time.Second,
		ReplyTimeout:     60 * time.Second,
		SampleInterval:   100 * time.Millisecond,
		Rollout:          Rollout{Percentage: 100},
	}
}

func (c Config) withDefaults() Config {
	d := DefaultConfig()
	if c.NodeID == "" {
		c.NodeID = d.NodeID
	}
	if c.Transport == nil {
		c.Transport = d.Transport
	}
	if c.Codecs == nil {
		c.Codecs = d.Codecs
	}
	if c.DowntimeTarget == 0 {
		c.DowntimeTarget = d.DowntimeTarget
	}
	if c.MaxRounds == 0 {
		c.MaxRounds = d.MaxRounds
	}
	if c.BatchPages == 0 {
		c.BatchPages = d.BatchPages
	}
	if c.Pipeline == 0 {
		c.Pipeline = d.Pipeline
	}
	if c.Lanes == 0 {
		c.Lanes = d.Lanes
	}
	if c.AutoConverge == (AutoConvergeConfig{}) {
		c.AutoConverge = d.AutoConverge
	}
	if c.HandshakeTimeout == 0 {
		c.HandshakeTimeout = d.HandshakeTimeout
	}
	if c.ReplyTimeout == 0 {
		c.ReplyTimeout = d.ReplyTimeout
	}
	if c.SampleInterval == 0 {
		c.SampleInterval = d.SampleInterval
	}
	return c
}

// Validate reports the first bad value (after defaults are applied).
func (c Config) Validate() error {
	c = c.withDefaults()
	switch {
	case c.DowntimeTarget < time.Millisecond:
		return fmt.Errorf("dwcp: downtime target %v is below 1ms", c.DowntimeTarget)
	case c.MaxRounds < 1 || c.MaxRounds > 10000:
		return fmt.Errorf("dwcp: max rounds %d is outside [1, 10000]", c.MaxRounds)
	case c.BatchPages < 1 || c.BatchPages > 4096:
		return fmt.Errorf("dwcp: batch pages %d is outside [1, 4096]", c.BatchPages)
	case c.Pipeline < 1 || c.Pipeline > 1024:
		return fmt.Errorf("dwcp: pipeline %d is outside [1, 1024]", c.Pipeline)
	case c.Lanes < 1 || c.Lanes > maxLanes:
		return fmt.Errorf("dwcp: lanes %d is outside [1, %d]", c.Lanes, maxLanes)
	case c.HandshakeTimeout < 0 || c.ReplyTimeout < 0 || c.SampleInterval < 0:
		return fmt.Errorf("dwcp: negative timeout or interval")
	case len(c.NodeID) > maxString:
		return fmt.Errorf("dwcp: node id of %d bytes exceeds %d", len(c.NodeID), maxString)
	}
	ac := c.AutoConverge
	if ac.Initial < 0 || ac.Initial > 99 || ac.Increment < 0 || ac.Max < ac.Initial || ac.Max > 99 {
		return fmt.Errorf("dwcp: auto-converge %+v: want 0 <= initial <= max <= 99 and increment >= 0", ac)
	}
	if ac.TriggerRatio <= 0 || ac.RoundsAtMax < 0 {
		return fmt.Errorf("dwcp: auto-converge trigger ratio %v must be > 0 and rounds at max %d >= 0", ac.TriggerRatio, ac.RoundsAtMax)
	}
	return c.Rollout.Validate()
}

// Engine runs migrations, as a source (Migrate) and as a destination
// (Serve, Receive). Safe for concurrent use; several migrations may run at
// once. Close waits for the migrations it serves.
type Engine struct {
	cfg Config
	m   *metrics.Metrics

	mu      sync.Mutex
	rollout Rollout
	closed  bool
	stop    chan struct{}
	wg      sync.WaitGroup
}

// New validates cfg and builds an engine.
func New(cfg Config) (*Engine, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	m := cfg.Metrics
	if m == nil {
		m = metrics.New(nil)
	}
	e := &Engine{cfg: cfg, m: m, stop: make(chan struct{})}
	e.SetRollout(cfg.Rollout)
	m.ComponentHealth.WithLabelValues(metrics.ComponentEngine).Set(1)
	return e, nil
}

// Config returns the engine's configuration (with defaults applied).
func (e *Engine) Config() Config { return e.cfg }

// Metrics returns the collectors the engine records into.
func (e *Engine) Metrics() *metrics.Metrics { return e.m }

// SetRollout changes the rollout (percentage, kill switch) for migrations
// that start afterwards, and publishes it on the rollout gauges.
func (e *Engine) SetRollout(r Rollout) error {
	if err := r.Validate(); err != nil {
		return err
	}
	e.mu.Lock()
	e.rollout = r
	e.mu.Unlock()
	e.m.RolloutPercentage.Set(float64(r.Percentage))
	e.m.RolloutStage.Set(float64(r.Stage()))
	kill := 0.0
	if r.KillSwitch {
		kill = 1
	}
	e.m.RolloutKillSwitch.Set(kill)
	return nil
}

// Rollout returns the current rollout.
func (e *Engine) Rollout() Rollout {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.rollout
}

// Close stops Serve loops and waits for the migrations they run. Safe to
// call twice.
func (e *Engine) Close() error {
	e.mu.Lock()
	if !e.closed {
		e.closed = true
		close(e.stop)
	}
	e.mu.Unlock()
	e.wg.Wait()
	return nil
}

// ErrClosed is returned by an engine after Close.
var ErrClosed = errors.New("dwcp: engine closed")

// Errors of a migration. Every failure wraps one of these (or ErrProtocol,
// or a transport or memory error) and leaves the source running and owner,
// except ErrCommitUnknown.
var (
	// ErrNotConverged: the guest dirtied memory faster than it could be
	// sent, even after auto-converge.
	ErrNotConverged = errors.New("dwcp: migration did not converge")
	// ErrRejected: the destination refused the migration.
	ErrRejected = errors.New("dwcp: destination rejected the migration")
	// ErrVerification: the destination's memory did not match the source's.
	ErrVerification = errors.New("dwcp: switchover verification failed")
	// ErrAborted: the peer aborted the migration.
	ErrAborted = errors.New("dwcp: migration aborted by peer")
	// ErrCommitUnknown: the commit was sent but not confirmed and no
	// ownership registry can tell who owns the VM; the source stays paused
	// (never both running) and an operator must decide.
	ErrCommitUnknown = errors.New("dwcp: commit sent but not confirmed; source left paused")
)

// Phase of a migration, as reported in Progress.
type Phase string

const (
	PhaseHandshake   Phase = "handshake"
	PhasePreCopy     Phase = "pre-copy"
	PhaseStopAndCopy Phase = "stop-and-copy"
	PhaseVerify      Phase = "verify"
	PhaseCommit      Phase = "commit"
	PhaseDone        Phase = "done"
)

// Progress is a snapshot of a running migration, given to
// MigrationRequest.Progress about every 100 ms and at phase changes.
type Progress struct {
	Phase          Phase
	Round          int
	RoundPages     int // pages to send this round
	RoundPagesSent int
	TotalPages     int // the guest's pages
	LogicalBytes   int64
	WireBytes      int64
	Elapsed        time.Duration
	// WireRate is the recent send rate on the wire, bytes per second.
	WireRate float64
	// DirtyPages is the dirty set found at the end of the last round.
	DirtyPages int
	Throttle   int
	// Streams is the transport's live stream count (0 if it does not say).
	Streams int
}

// RoundStat describes one pre-copy round.
type RoundStat struct {
	Round        int
	Pages        int
	WireBytes    int64
	Duration     time.Duration
	CPU          time.Duration // reading, hashing and encoding the round's pages
	Rate         float64       // wire bytes per second, delivery acknowledged
	Forecast     float64       // bandwidth the stop decision used (bytes/s)
	DirtyAfter   int           // dirty pages found when the round ended
	Throttle     int
	PredictedEnd time.Duration // predicted time to send the dirty set
}

// Result describes a finished migration (successful or not, as far as it
// got).
type Result struct {
	MigrationID  string
	VMID         string
	Version      Version
	Scenario     string
	Source       string
	Destination  string
	Rounds       int
	PagesSent    int64
	LogicalBytes int64 // guest bytes sent, all rounds
	WireBytes    int64 // engine frames on the session, both directions
	MemoryBytes  int64
	Duration     time.Duration
	Downtime     time.Duration
	MaxThrottle  int
	// Streams is the most transport streams seen (0 if the transport does
	// not report them).
	Streams int
	// Verified is true when the destination matched every page hash and
	// the whole-memory hash.
	Verified   bool
	MemoryHash uint64
	Epoch      uint64
	RoundStats []RoundStat
}

// Ratio is logical bytes over wire bytes (the compression achieved).
func (r *Result) Ratio() float64 {
	if r.WireBytes == 0 {
		return 0
	}
	return float64(r.LogicalBytes) / float64(r.WireBytes)
}

// Throughput is the guest's memory size over the total time: the effective
// migration throughput of the scenario benchmarks.
func (r *Result) Throughput() float64 {
	if r.Duration <= 0 {
		return 0
	}
	return float64(r.MemoryBytes) / r.Duration.Seconds()
}

func newMigrationID() string {
	var b [8]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// classifyScenario labels a migration for dwcp_v3_migration_duration_seconds
// when the caller did not: by the handshake round trip (datacenter below
// 10 ms, internet below 100 ms, cross-region above) and, in the datacenter,
// by size (large from 2 GiB).
func classifyScenario(rtt time.Duration, memBytes int64) string {
	switch {
	case rtt < 10*time.Millisecond:
		if memBytes >= 2<<30 {
			return metrics.ScenarioDatacenterLarge
		}
		return metrics.ScenarioDatacenterSmall
	case rtt < 100*time.Millisecond:
		return metrics.ScenarioInternet
	}
	return metrics.ScenarioCrossRegion
}

func validScenario(s string) bool {
	switch s {
	case metrics.ScenarioDatacenterSmall, metrics.ScenarioDatacenterLarge, metrics.ScenarioInternet, metrics.ScenarioCrossRegion:
		return true
	}
	return false
}

// errorType maps a failure to the catalogue's error_type label.
func errorType(err error) string {
	var ce *classifiedError
	if errors.As(err, &ce) {
		return ce.kind
	}
	return metrics.ErrorNetworkTimeout
}

// classifiedError tags an error with its error_type label.
type classifiedError struct {
	kind string
	err  error
}

func (c *classifiedError) Error() string { return c.err.Error() }
func (c *classifiedError) Unwrap() error { return c.err }

func classify(kind string, err error) error {
	if err == nil {
		return nil
	}
	var ce *classifiedError
	if errors.As(err, &ce) {
		return err
	}
	return &classifiedError{kind: kind, err: err}
}

// waitCtx returns a context bounded by d (no bound when d is 0).
func waitCtx(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	if d <= 0 {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, d)
}
