package metrics

import (
	"math"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func newTestEvaluator(t testing.TB, mutate func(*SLAConfig)) (*SLAEvaluator, *Metrics, *prometheus.Registry, *fakeClock) {
	t.Helper()
	clock := newFakeClock()
	cfg := DefaultSLAConfig()
	cfg.EvaluateInterval = 0
	cfg.Now = clock.Now
	if mutate != nil {
		mutate(&cfg)
	}
	reg := prometheus.NewRegistry()
	m := New(reg)
	e, err := NewSLAEvaluator(m, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	return e, m, reg, clock
}

// closeWindow moves the clock to the next window and evaluates.
func closeWindow(t testing.TB, e *SLAEvaluator, clock *fakeClock) WindowResult {
	t.Helper()
	clock.Advance(e.cfg.Window)
	res := e.Evaluate()
	if len(res) != 1 {
		t.Fatalf("Evaluate closed %d windows, want 1", len(res))
	}
	return res[0]
}

func TestSLAWindowVerdicts(t *testing.T) {
	ms := time.Millisecond
	tests := []struct {
		name    string
		observe func(e *SLAEvaluator)
		check   func(r WindowResult) bool
	}{
		{"p99 below 500ms: 99 fast, 1 slow", func(e *SLAEvaluator) {
			for range 99 {
				e.ObserveLatency(100 * ms)
			}
			e.ObserveLatency(900 * ms)
		}, func(r WindowResult) bool { return r.HasLatency && r.LatencyMet && r.LatencyQuantile == 100*ms }},
		{"p99 above 500ms: 98 fast, 2 slow", func(e *SLAEvaluator) {
			for range 98 {
				e.ObserveLatency(100 * ms)
			}
			e.ObserveLatency(900 * ms)
			e.ObserveLatency(900 * ms)
		}, func(r WindowResult) bool { return r.HasLatency && !r.LatencyMet && r.LatencyQuantile == 900*ms }},
		{"p99 exactly 500ms is not below it", func(e *SLAEvaluator) {
			for range 100 {
				e.ObserveLatency(500 * ms)
			}
		}, func(r WindowResult) bool { return !r.LatencyMet }},
		{"throughput 2.5 GB/s meets 2.4", func(e *SLAEvaluator) {
			e.ObserveTransfer(1_250_000_000, 250*ms)
			e.ObserveTransfer(1_250_000_000, 750*ms)
		}, func(r WindowResult) bool { return r.HasThroughput && r.ThroughputMet && r.Throughput == 2.5e9 }},
		{"throughput 2.0 GB/s misses", func(e *SLAEvaluator) {
			e.ObserveTransfer(2_000_000_000, time.Second)
		}, func(r WindowResult) bool { return r.HasThroughput && !r.ThroughputMet }},
		{"1 error in 100 is not below 1%", func(e *SLAEvaluator) {
			for i := range 100 {
				e.ObserveOperation(i == 0)
			}
		}, func(r WindowResult) bool { return r.HasErrorRate && !r.ErrorRateMet && r.ErrorRate == 0.01 }},
		{"1 error in 101 is below 1%", func(e *SLAEvaluator) {
			for i := range 101 {
				e.ObserveOperation(i == 0)
			}
		}, func(r WindowResult) bool { return r.ErrorRateMet }},
		{"999 of 1000 served is not above 99.9%", func(e *SLAEvaluator) {
			for i := range 1000 {
				e.ObserveRequest(i != 0)
			}
		}, func(r WindowResult) bool { return r.HasAvailability && !r.AvailabilityMet }},
		{"all served", func(e *SLAEvaluator) {
			for range 10 {
				e.ObserveRequest(true)
			}
		}, func(r WindowResult) bool { return r.AvailabilityMet && r.Availability == 1 }},
		{"nothing observed evaluates nothing", func(e *SLAEvaluator) {},
			func(r WindowResult) bool {
				return !r.HasLatency && !r.HasThroughput && !r.HasErrorRate && !r.HasAvailability
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, _, _, clock := newTestEvaluator(t, nil)
			tt.observe(e)
			if r := closeWindow(t, e, clock); !tt.check(r) {
				t.Fatalf("window result %+v", r)
			}
		})
	}
}

func TestSLAComplianceGauge(t *testing.T) {
	e, m, reg, clock := newTestEvaluator(t, func(c *SLAConfig) { c.History = 4 })
	gauge := func(sla string) float64 { return testutil.ToFloat64(m.SLACompliance.WithLabelValues(sla)) }
	if _, ok := e.Compliance(SLAErrorRate); ok {
		t.Fatal("compliance before any window")
	}
	// Error-rate verdicts per window: met, missed, met, met, met, missed.
	for i, failed := range []bool{false, true, false, false, false, true} {
		for j := range 10 {
			e.ObserveOperation(failed && j == 0)
		}
		closeWindow(t, e, clock)
		want := map[int]float64{0: 1, 1: 0.5, 2: 2.0 / 3, 3: 0.75, 4: 0.75, 5: 0.75}[i]
		if got := gauge(SLAErrorRate); math.Abs(got-want) > 1e-12 {
			t.Fatalf("after window %d: compliance %v, want %v", i, got, want)
		}
	}
	// Idle windows do not dilute it, however long the gap.
	clock.Advance(1000 * e.cfg.Window)
	e.Evaluate()
	if c, _ := e.Compliance(SLAErrorRate); c != 0.75 {
		t.Fatalf("after an idle gap compliance = %v", c)
	}
	// Only the SLA types that had data have a gauge.
	if n := testutil.CollectAndCount(m.SLACompliance); n != 1 {
		t.Fatalf("%d sla_type series, want 1", n)
	}
	if err := CheckLabelValues(reg); err != nil {
		t.Fatal(err)
	}
}

func TestSLAWindowBoundaries(t *testing.T) {
	e, _, _, clock := newTestEvaluator(t, nil)
	clock.Advance(e.cfg.Window - time.Nanosecond)
	e.ObserveOperation(true) // last instant of window 0
	if res := e.Evaluate(); res != nil {
		t.Fatalf("window closed early: %+v", res)
	}
	clock.Advance(time.Nanosecond)
	e.ObserveOperation(false) // first instant of window 1: closes window 0
	res := e.Evaluate()
	if res != nil {
		t.Fatalf("Evaluate found another window: %+v", res)
	}
	if c, ok := e.Compliance(SLAErrorRate); !ok || c != 0 {
		t.Fatalf("window 0 (1 failure in 1) compliance %v %v, want 0", c, ok)
	}
	r := closeWindow(t, e, clock)
	if !r.ErrorRateMet || r.Start != e.start.Add(e.cfg.Window) || r.End != e.start.Add(2*e.cfg.Window) {
		t.Fatalf("window 1: %+v", r)
	}
	// A clock that steps back keeps the current window.
	clock.Advance(-5 * e.cfg.Window)
	e.ObserveOperation(false)
	if res := e.Evaluate(); res != nil {
		t.Fatalf("backwards clock closed a window: %+v", res)
	}
}

// TestSLAReservoirKeepsVerdictExact: with a 100-sample reservoir and 10000
// observations, 2% slow ones must still miss the P99 SLA.
func TestSLAReservoirKeepsVerdictExact(t *testing.T) {
	e, _, _, clock := newTestEvaluator(t, func(c *SLAConfig) { c.MaxLatencySamples = 100 })
	for i := range 10_000 {
		d := 10 * time.Millisecond
		if i%50 == 0 {
			d = 2 * time.Second
		}
		e.ObserveLatency(d)
	}
	if n := len(e.cur.latencies); n != 100 {
		t.Fatalf("reservoir holds %d samples, want 100", n)
	}
	r := closeWindow(t, e, clock)
	if r.LatencyMet {
		t.Fatalf("2%% of samples at 2 s met P99 < 500 ms: %+v", r)
	}
}

func TestSLAAnomalies(t *testing.T) {
	e, m, reg, clock := newTestEvaluator(t, nil)
	count := func(typ, sev string) float64 {
		return testutil.ToFloat64(m.AnomalyDetections.WithLabelValues(typ, sev))
	}
	// 20 normal windows: latency around 100 ms, 3 GB/s, no errors, CPU ~20%.
	for i := range 20 {
		jitter := time.Duration(i%3) * time.Millisecond
		e.ObserveLatency(100*time.Millisecond + jitter)
		e.ObserveTransfer(3_000_000_000+uint64(i%3)*10_000_000, time.Second)
		for range 100 {
			e.ObserveOperation(false)
		}
		e.ObserveUtilization(ResourceCPU, 20+float64(i%2))
		if r := closeWindow(t, e, clock); len(r.Anomalies) != 0 {
			t.Fatalf("normal window %d flagged: %+v", i, r.Anomalies)
		}
	}
	// One bad window: 1 s latency, 1 GB/s, 5% errors, CPU 95%.
	e.ObserveLatency(time.Second)
	e.ObserveTransfer(1_000_000_000, time.Second)
	for i := range 100 {
		e.ObserveOperation(i < 5)
	}
	e.ObserveUtilization(ResourceCPU, 50)
	e.ObserveUtilization(ResourceCPU, 95) // the window's peak counts
	e.ObserveUtilization("bogus", 100)    // not a documented resource: ignored
	r := closeWindow(t, e, clock)
	got := map[string]string{}
	for _, a := range r.Anomalies {
		got[a.Type] = a.Severity
	}
	want := map[string]string{
		AnomalyLatencySpike:       SeverityCritical,
		AnomalyThroughputDrop:     SeverityCritical,
		AnomalyErrorBurst:         SeverityCritical,
		AnomalyResourceSaturation: SeverityCritical,
	}
	for typ, sev := range want {
		if got[typ] != sev {
			t.Errorf("%s: severity %q, want %q (all: %+v)", typ, got[typ], sev, r.Anomalies)
		}
		if c := count(typ, sev); c != 1 {
			t.Errorf("counter %s/%s = %v, want 1", typ, sev, c)
		}
	}
	if err := CheckLabelValues(reg); err != nil {
		t.Fatal(err)
	}

	// A mild error burst (2%) after clean windows is 0.02 over a 0.5-point
	// σ floor: a 4σ warning.
	e, m, reg, clock = newTestEvaluator(t, nil)
	for range 20 {
		for range 100 {
			e.ObserveOperation(false)
		}
		closeWindow(t, e, clock)
	}
	for i := range 100 {
		e.ObserveOperation(i < 2)
	}
	closeWindow(t, e, clock)
	if c := count(AnomalyErrorBurst, SeverityWarning); c != 1 {
		t.Errorf("mild burst: warning counter %v, want 1", c)
	}
	if err := CheckLabelValues(reg); err != nil {
		t.Fatal(err)
	}
}

func TestSLAConcurrentObservers(t *testing.T) {
	e, _, reg, clock := newTestEvaluator(t, nil)
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 500 {
				e.ObserveLatency(time.Duration(i) * time.Microsecond)
				e.ObserveOperation(i%100 == g)
				e.ObserveRequest(true)
				e.ObserveTransfer(1000, time.Millisecond)
				e.ObserveUtilization(ResourceMemory, float64(i%7))
				if i%50 == 0 {
					clock.Advance(time.Second)
					e.Evaluate()
				}
			}
		})
	}
	wg.Wait()
	if _, ok := e.Compliance(SLAAvailability); !ok {
		t.Fatal("no window evaluated")
	}
	if err := CheckLabelValues(reg); err != nil {
		t.Fatal(err)
	}
}

// TestSLABackgroundEvaluation uses the real clock: the background goroutine
// must close windows without further observations. It polls instead of
// sleeping a fixed time.
func TestSLABackgroundEvaluation(t *testing.T) {
	cfg := DefaultSLAConfig()
	cfg.Window = 5 * time.Millisecond
	cfg.EvaluateInterval = time.Millisecond
	e, err := NewSLAEvaluator(nil, cfg)
	if err != nil {
		t.Fatal(err)
	}
	e.ObserveRequest(true)
	deadline := time.Now().Add(5 * time.Second)
	for {
		if c, ok := e.Compliance(SLAAvailability); ok {
			if c != 1 {
				t.Fatalf("compliance %v", c)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("background evaluation never closed the window")
		}
		time.Sleep(time.Millisecond)
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	e.ObserveRequest(false) // still accepted after Close
}

func TestSLAConfigValidate(t *testing.T) {
	if err := DefaultSLAConfig().Validate(); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		mutate func(*SLAConfig)
		want   string
	}{
		{"window", func(c *SLAConfig) { c.Window = 0 }, "Window 0s"},
		{"history", func(c *SLAConfig) { c.History = -1 }, "History -1"},
		{"quantile", func(c *SLAConfig) { c.LatencyQuantile = 1 }, "LatencyQuantile 1"},
		{"latency target", func(c *SLAConfig) { c.LatencyTarget = -time.Second }, "LatencyTarget -1s"},
		{"throughput", func(c *SLAConfig) { c.ThroughputTarget = math.Inf(1) }, "ThroughputTarget +Inf"},
		{"error rate", func(c *SLAConfig) { c.ErrorRateTarget = 1.5 }, "ErrorRateTarget 1.5"},
		{"availability", func(c *SLAConfig) { c.AvailabilityTarget = 0 }, "AvailabilityTarget 0"},
		{"samples", func(c *SLAConfig) { c.MaxLatencySamples = 0 }, "MaxLatencySamples 0"},
		{"interval", func(c *SLAConfig) { c.EvaluateInterval = -time.Second }, "EvaluateInterval -1s"},
		{"nested", func(c *SLAConfig) { c.ErrorAnomaly.WarningZ = -3 }, "ErrorAnomaly: metrics: AnomalyConfig.WarningZ -3"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := DefaultSLAConfig()
			tt.mutate(&cfg)
			if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Validate = %v, want %q", err, tt.want)
			}
			if _, err := NewSLAEvaluator(nil, cfg); err == nil {
				t.Fatal("NewSLAEvaluator accepted it")
			}
		})
	}
}

// TestResourceSamplerFeedsEvaluator wires the two together as the engine
// does.
func TestResourceSamplerFeedsEvaluator(t *testing.T) {
	e, m, _, clock := newTestEvaluator(t, nil)
	rcfg := DefaultResourceConfig()
	rcfg.Interval = 0
	rcfg.Now = clock.Now
	rcfg.Observer = e
	f := &fakeSources{procs: 1, total: 100, rss: 20}
	s := newResourceSampler(m, rcfg, f.sources())
	for range 15 {
		clock.Advance(e.cfg.Window)
		f.rss = 20
		if _, err := s.Sample(); err != nil {
			t.Fatal(err)
		}
	}
	clock.Advance(e.cfg.Window)
	f.rss = 90
	s.Sample()
	clock.Advance(e.cfg.Window)
	e.Evaluate()
	if c := testutil.ToFloat64(m.AnomalyDetections.WithLabelValues(AnomalyResourceSaturation, SeverityCritical)); c != 1 {
		t.Fatalf("memory jump 20%% -> 90%%: critical saturation count %v, want 1", c)
	}
}
