package dwcp

import (
	"context"
	"testing"
	"time"

	"github.com/dwcp/dwcp/metrics"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestMigrationFeedsSLAEvaluator(t *testing.T) {
	m := metrics.New(nil)
	now := time.Unix(2_000_000, 0)
	cfg := metrics.DefaultSLAConfig()
	cfg.EvaluateInterval = 0
	cfg.Now = func() time.Time { return now }
	sla, err := metrics.NewSLAEvaluator(m, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer sla.Close()
	h := newHarness(t, func(c *Config) {
		if c.NodeID == "src" {
			c.Metrics = m
			c.SLA = sla
		}
	})
	vm := newTestVM(t, 4<<20, 0, PatternHotSet)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if _, _, err, derr := h.migratePipe(ctx, MigrationRequest{VMID: "vm-sla", Memory: vm, Version: V3}, nil); err != nil || derr != nil {
		t.Fatalf("source: %v, destination: %v", err, derr)
	}
	now = now.Add(cfg.Window + time.Second)
	results := sla.Evaluate()
	if len(results) == 0 {
		t.Fatal("no SLA window closed")
	}
	// One successful migration with a downtime far under 500 ms: the
	// availability, error-rate and latency SLAs are met in that window.
	for _, typ := range []string{metrics.SLAAvailability, metrics.SLAErrorRate, metrics.SLALatency} {
		if got := testutil.ToFloat64(m.SLACompliance.WithLabelValues(typ)); got != 1 {
			t.Errorf("sla_compliance{%s} = %v, want 1", typ, got)
		}
	}
}
