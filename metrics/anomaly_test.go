package metrics

import (
	"math"
	"slices"
	"strings"
	"testing"
)

func newDetector(t testing.TB, mutate func(*AnomalyConfig)) *ZScoreDetector {
	t.Helper()
	cfg := DefaultAnomalyConfig()
	if mutate != nil {
		mutate(&cfg)
	}
	d, err := NewZScoreDetector(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// TestBaselineIsChronologicalAfterWrap is the regression test for the old
// implementation's ring-order bug (study section 2e): after the buffer
// wrapped, its Values() were not in time order, so "latest" was wrong.
func TestBaselineIsChronologicalAfterWrap(t *testing.T) {
	d := newDetector(t, func(c *AnomalyConfig) { c.Window = 10 })
	var fed []float64
	for i := range 27 {
		v := float64(i)
		fed = append(fed, v)
		d.Observe(v)
		want := fed[max(0, len(fed)-10):]
		if got := d.Baseline(); !slices.Equal(got, want) {
			t.Fatalf("after %d samples baseline = %v, want %v", i+1, got, want)
		}
	}
}

// alternating returns n samples alternating mean-1, mean+1 (σ = 1).
func alternating(n int, mean float64) []float64 {
	out := make([]float64, n)
	for i := range out {
		out[i] = mean - 1 + 2*float64(i%2)
	}
	return out
}

// TestNewSampleNotInItsOwnBaseline: 3.5σ above a mean-10, σ-1 baseline is
// a warning. Had the sample been averaged into its own baseline, z would
// be about 2.3 and nothing would be reported.
func TestNewSampleNotInItsOwnBaseline(t *testing.T) {
	d := newDetector(t, func(c *AnomalyConfig) { c.Window = 10 })
	for _, v := range alternating(10, 10) {
		if det := d.Observe(v); det.Anomalous() {
			t.Fatalf("baseline sample %v flagged: %+v", v, det)
		}
	}
	det := d.Observe(13.5)
	if det.Severity != SeverityWarning || math.Abs(det.Z-3.5) > 1e-9 || det.Mean != 10 || det.StdDev != 1 {
		t.Fatalf("13.5 over mean 10 σ 1: %+v, want a 3.5σ warning", det)
	}
}

func TestZScoreSeverities(t *testing.T) {
	tests := []struct {
		name  string
		side  Side
		value float64
		want  string
	}{
		{"within 3σ", SideBoth, 12.9, ""},
		{"warning above", SideBoth, 13.5, SeverityWarning},
		{"critical above", SideBoth, 16.5, SeverityCritical},
		{"warning below", SideBoth, 6.5, SeverityWarning},
		{"critical below", SideBoth, 3.5, SeverityCritical},
		{"upper ignores drops", SideUpper, 3.5, ""},
		{"upper flags spikes", SideUpper, 16.5, SeverityCritical},
		{"lower ignores spikes", SideLower, 16.5, ""},
		{"lower flags drops", SideLower, 3.5, SeverityCritical},
		{"exactly 3σ is not above 3σ", SideBoth, 13, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := newDetector(t, func(c *AnomalyConfig) { c.Window = 20; c.Side = tt.side })
			for _, v := range alternating(20, 10) {
				d.Observe(v)
			}
			if got := d.Observe(tt.value); got.Severity != tt.want {
				t.Fatalf("Observe(%v) = %+v, want severity %q", tt.value, got, tt.want)
			}
		})
	}
}

func TestZScoreBaselineEdgeCases(t *testing.T) {
	// Too few samples: nothing is reported, however extreme.
	d := newDetector(t, nil)
	for range 9 {
		d.Observe(1)
	}
	if det := d.Observe(1e9); det.Anomalous() {
		t.Fatalf("flagged with 9 baseline samples: %+v", det)
	}

	// A flat baseline uses the relative floor: 1% of 100 = 1, so 104 is
	// a 4σ warning and 107 a 7σ critical.
	d = newDetector(t, nil)
	for range 20 {
		d.Observe(100)
	}
	if det := d.Observe(104); det.Severity != SeverityWarning {
		t.Fatalf("104 over flat 100: %+v", det)
	}
	d = newDetector(t, nil)
	for range 20 {
		d.Observe(100)
	}
	if det := d.Observe(107); det.Severity != SeverityCritical {
		t.Fatalf("107 over flat 100: %+v", det)
	}

	// A flat zero baseline with no absolute floor reports nothing; with
	// MinStdDev it does.
	d = newDetector(t, nil)
	for range 20 {
		d.Observe(0)
	}
	if det := d.Observe(5); det.Anomalous() {
		t.Fatalf("flat zero baseline without a floor flagged %+v", det)
	}
	d = newDetector(t, func(c *AnomalyConfig) { c.MinStdDev = 0.5 })
	for range 20 {
		d.Observe(0)
	}
	if det := d.Observe(5); det.Severity != SeverityCritical {
		t.Fatalf("5 over flat 0 with σ floor 0.5: %+v", det)
	}

	// NaN and Inf are ignored and do not enter the baseline.
	n := len(d.Baseline())
	for _, v := range []float64{math.NaN(), math.Inf(1), math.Inf(-1)} {
		if det := d.Observe(v); det.Anomalous() {
			t.Fatalf("%v flagged", v)
		}
	}
	if len(d.Baseline()) != n {
		t.Fatal("non-finite samples entered the baseline")
	}
}

func TestAnomalyConfigValidate(t *testing.T) {
	if err := DefaultAnomalyConfig().Validate(); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		mutate func(*AnomalyConfig)
		want   string
	}{
		{"window", func(c *AnomalyConfig) { c.Window = 1 }, "Window 1"},
		{"min samples above window", func(c *AnomalyConfig) { c.MinSamples = 101 }, "MinSamples 101"},
		{"warning", func(c *AnomalyConfig) { c.WarningZ = 0 }, "WarningZ 0"},
		{"critical below warning", func(c *AnomalyConfig) { c.CriticalZ = 2 }, "CriticalZ 2"},
		{"side", func(c *AnomalyConfig) { c.Side = 7 }, "Side Side(7)"},
		{"min stddev", func(c *AnomalyConfig) { c.MinStdDev = -1 }, "MinStdDev -1"},
		{"relative floor", func(c *AnomalyConfig) { c.RelativeStdDevFloor = math.NaN() }, "RelativeStdDevFloor NaN"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := DefaultAnomalyConfig()
			tt.mutate(&cfg)
			if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Validate = %v, want %q", err, tt.want)
			}
			if _, err := NewZScoreDetector(cfg); err == nil {
				t.Fatal("NewZScoreDetector accepted it")
			}
		})
	}
}
