package dwcp

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/dwcp/dwcp/metrics"
)

func TestLinkCapacity(t *testing.T) {
	for _, tc := range []struct {
		name     string
		bytes    int64
		busy     time.Duration
		interval time.Duration
		want     float64
	}{
		{"link-bound sender", 100 << 20, time.Second, time.Second, 100 << 20},
		{"half blocked", 100 << 20, 500 * time.Millisecond, time.Second, 200 << 20},
		{"cpu-bound sender is capped at 8x", 100 << 20, 0, time.Second, 800 << 20},
		{"no interval", 1, 0, 0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := linkCapacity(tc.bytes, tc.busy, tc.interval); got != tc.want {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
		})
	}
}

func TestStreamsFor(t *testing.T) {
	for _, tc := range []struct {
		bps  float64
		rtt  time.Duration
		want int
	}{
		{1e9, 100 * time.Microsecond, 1},
		{125e6, 50 * time.Millisecond, 2},
		{1.25e9, 150 * time.Millisecond, 16},
	} {
		if got := streamsFor(tc.bps, tc.rtt); got != tc.want {
			t.Errorf("streamsFor(%v, %v) = %d, want %d", tc.bps, tc.rtt, got, tc.want)
		}
	}
}

func TestClassifyScenario(t *testing.T) {
	for _, tc := range []struct {
		rtt  time.Duration
		size int64
		want string
	}{
		{time.Millisecond, 512 << 20, metrics.ScenarioDatacenterSmall},
		{time.Millisecond, 4 << 30, metrics.ScenarioDatacenterLarge},
		{50 * time.Millisecond, 2 << 30, metrics.ScenarioInternet},
		{150 * time.Millisecond, 2 << 30, metrics.ScenarioCrossRegion},
	} {
		if got := classifyScenario(tc.rtt, tc.size); got != tc.want {
			t.Errorf("classifyScenario(%v, %d) = %s, want %s", tc.rtt, tc.size, got, tc.want)
		}
	}
}

func TestPredict(t *testing.T) {
	stat := RoundStat{Pages: 1000, WireBytes: 1000 * 2048, Rate: 2048 * 1000, CPU: 100 * time.Millisecond}
	s := &source{req: MigrationRequest{Version: V1}, fc: &LastRoundRate{}}
	if d, _ := s.predict(stat, 100); d != 100*time.Millisecond {
		t.Fatalf("v1: 100 pages of 2 KiB at 1000 pages/s predicted %v, want 100ms", d)
	}
	fc := &LastRoundRate{}
	fc.Observe(time.Now(), 2048*100) // the forecast says the link is 10x slower
	s = &source{req: MigrationRequest{Version: V3}, fc: fc}
	if d, bw := s.predict(stat, 100); d != time.Second || bw != 2048*100 {
		t.Fatalf("v3 uses the forecast: got %v at %v B/s, want 1s", d, bw)
	}
	stat.CPU = 20 * time.Second // encoding is the bottleneck
	if d, _ := s.predict(stat, 100); d != 2*time.Second {
		t.Fatalf("v3 with slow encoding predicted %v, want 2s", d)
	}
	if d, _ := s.predict(stat, 0); d != 0 {
		t.Fatalf("empty dirty set predicted %v", d)
	}
}

// TestMetricsOfAMigration checks what one success and one failure leave in
// the catalogue.
func TestMetricsOfAMigration(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := metrics.New(reg)
	h := newHarness(t, func(c *Config) {
		if c.NodeID == "src" {
			c.Metrics = m
		}
	})
	vm := newTestVM(t, 2<<20, 0, PatternHotSet)
	ctx := context.Background()
	if _, _, err, derr := h.migratePipe(ctx, MigrationRequest{VMID: "vm-m", Memory: vm, Version: V3, Scenario: metrics.ScenarioInternet}, nil); err != nil || derr != nil {
		t.Fatal(err, derr)
	}
	vm.Resume(ctx)
	h.migratePipe(ctx, MigrationRequest{VMID: "vm-m", Memory: vm, Version: V1}, func(s Session) Session { return &cutSession{Session: s, after: 2} })
	for _, c := range []struct {
		name string
		got  float64
		want float64
	}{
		{"v3 successes", testutil.ToFloat64(m.Migrations.WithLabelValues("v3", "success")), 1},
		{"v1 failures", testutil.ToFloat64(m.Migrations.WithLabelValues("v1", "failure")), 1},
		{"engine network errors", testutil.ToFloat64(m.Errors.WithLabelValues("engine", metrics.ErrorNetworkTimeout)), 1},
		{"active", testutil.ToFloat64(m.ActiveMigrations), 0},
	} {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}
	if testutil.ToFloat64(m.MigrationBytes.WithLabelValues("v3", "logical")) < 2<<20 ||
		testutil.ToFloat64(m.MigrationBytes.WithLabelValues("v3", "wire")) <= 0 {
		t.Error("bytes not recorded")
	}
	if n := testutil.CollectAndCount(m.MigrationDuration); n != 1 {
		t.Errorf("%d duration series, want 1 (internet)", n)
	}
	if n := testutil.CollectAndCount(m.MigrationDowntime); n != 1 {
		t.Errorf("%d downtime series, want 1 (v3)", n)
	}
}

func TestServeStopsOnClose(t *testing.T) {
	e, err := New(Config{NodeID: "dst"})
	if err != nil {
		t.Fatal(err)
	}
	l, err := (&TCPTransport{}).Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	done := make(chan error, 1)
	go func() { done <- e.Serve(context.Background(), l, nil) }()
	time.Sleep(20 * time.Millisecond)
	e.Close()
	e.Close()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Serve after Close: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not stop on Close")
	}
	if err := e.Serve(context.Background(), l, nil); err != ErrClosed {
		t.Fatalf("Serve on a closed engine: %v", err)
	}
}
