package metrics_test

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/dwcp/dwcp/metrics"
	"github.com/prometheus/client_golang/prometheus"
)

// A component takes a *metrics.Metrics, records with the documented label
// constants, and its tests check the label values against the catalogue.
func ExampleNew() {
	reg := prometheus.NewRegistry()
	m := metrics.New(reg)
	m.MigrationLatency.WithLabelValues(metrics.ComponentHDE).Observe(0.004)
	m.Errors.WithLabelValues(metrics.ComponentHDE, metrics.ErrorCompression).Inc()
	fmt.Println("documented labels:", metrics.CheckLabelValues(reg) == nil)

	m.Errors.WithLabelValues(metrics.ComponentHDE, "oops").Inc()
	fmt.Println("after an undocumented value:", metrics.CheckLabelValues(reg) == nil)
	// Output:
	// documented labels: true
	// after an undocumented value: false
}

func ExampleServe() {
	reg := prometheus.NewRegistry()
	m := metrics.New(reg)
	m.AMSTActiveStreams.Set(8)

	srv, err := metrics.Serve(context.Background(), "127.0.0.1:0", reg)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer srv.Close()
	resp, err := http.Get(srv.URL())
	if err != nil {
		fmt.Println(err)
		return
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if strings.HasPrefix(sc.Text(), "dwcp_v3_amst_active_streams ") {
			fmt.Println(sc.Text())
		}
	}
	// Output: dwcp_v3_amst_active_streams 8
}

// The SLA evaluator judges fixed windows; here with a manual clock.
func ExampleSLAEvaluator() {
	now := time.Date(2025, 11, 10, 0, 0, 0, 0, time.UTC)
	cfg := metrics.DefaultSLAConfig()
	cfg.Now = func() time.Time { return now }
	cfg.EvaluateInterval = 0 // no background goroutine: windows close on use
	e, err := metrics.NewSLAEvaluator(nil, cfg)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer e.Close()

	for window := range 4 {
		for i := range 100 {
			e.ObserveLatency(120 * time.Millisecond)
			e.ObserveOperation(window == 3 && i < 5) // window 3: 5% errors
		}
		now = now.Add(cfg.Window)
		for _, r := range e.Evaluate() {
			fmt.Printf("window %d: p99 %v met=%v, error rate %.2f met=%v\n",
				window, r.LatencyQuantile, r.LatencyMet, r.ErrorRate, r.ErrorRateMet)
		}
	}
	c, _ := e.Compliance(metrics.SLAErrorRate)
	fmt.Printf("error-rate compliance: %.2f\n", c)
	// Output:
	// window 0: p99 120ms met=true, error rate 0.00 met=true
	// window 1: p99 120ms met=true, error rate 0.00 met=true
	// window 2: p99 120ms met=true, error rate 0.00 met=true
	// window 3: p99 120ms met=true, error rate 0.05 met=false
	// error-rate compliance: 0.75
}

func ExampleZScoreDetector() {
	cfg := metrics.DefaultAnomalyConfig()
	cfg.Side = metrics.SideUpper
	d, _ := metrics.NewZScoreDetector(cfg)
	for i := range 20 {
		d.Observe(100 + float64(i%2)*2) // 100, 102, 100, ...: mean 101, σ 1
	}
	// Each sample is judged against the samples before it, then joins them.
	for _, v := range []float64{102, 105, 108} {
		det := d.Observe(v)
		fmt.Printf("%v: z=%.1f severity=%q\n", v, det.Z, det.Severity)
	}
	// Output:
	// 102: z=1.0 severity=""
	// 105: z=3.9 severity="warning"
	// 108: z=5.3 severity="warning"
}
