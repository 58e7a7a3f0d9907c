package metrics

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestMonitorFeedsComplianceAndResources(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := New(reg)
	now := time.Unix(1_000_000, 0)
	sla := DefaultSLAConfig()
	sla.EvaluateInterval = 0
	sla.Now = func() time.Time { return now }
	res := DefaultResourceConfig()
	res.Interval = 0
	mo, err := NewMonitor(m, sla, res)
	if err != nil {
		t.Fatal(err)
	}
	defer mo.Close()
	mo.SLA.ObserveOperation(false)
	mo.SLA.ObserveRequest(true)
	mo.SLA.ObserveLatency(20 * time.Millisecond)
	if _, err := mo.Resources.Sample(); err != nil && len(mo.Resources.Unavailable()) == 0 {
		t.Fatal(err)
	}
	now = now.Add(sla.Window + time.Second)
	mo.SLA.Evaluate()
	if got := testutil.ToFloat64(m.SLACompliance.WithLabelValues(SLAAvailability)); got != 1 {
		t.Errorf("availability compliance = %v, want 1", got)
	}
	if got := testutil.ToFloat64(m.SLACompliance.WithLabelValues(SLALatency)); got != 1 {
		t.Errorf("latency compliance = %v, want 1", got)
	}
	if err := mo.Close(); err != nil {
		t.Fatal(err)
	}
	if err := mo.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}
