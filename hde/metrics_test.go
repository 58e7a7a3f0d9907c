package hde

import (
	"strconv"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/dwcp/dwcp/metrics"
)

func TestMetricsRecorded(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := metrics.New(reg)
	cfg := DefaultConfig()
	enc, err := NewEncoder(cfg, m)
	if err != nil {
		t.Fatal(err)
	}
	defer enc.Close()
	dec, err := NewDecoder(cfg, m)
	if err != nil {
		t.Fatal(err)
	}
	defer dec.Close()
	cc := DefaultCorpusConfig(5)
	cc.Pages = 256
	c, _ := NewCorpus(cc)
	frame, err := enc.EncodeBatch(nil, c.Pages())
	if err != nil {
		t.Fatal(err)
	}
	if err := dec.DecodeBatch(frame, func(uint64, []byte) error { return nil }); err != nil {
		t.Fatal(err)
	}
	st := enc.Stats()
	in := float64(256 * cfg.PageSize)
	if got := testutil.ToFloat64(m.HDEInputBytes.WithLabelValues(metrics.DataClassAll)); got != in {
		t.Errorf("input bytes = %g, want %g", got, in)
	}
	if got := testutil.ToFloat64(m.HDEInputBytes.WithLabelValues(metrics.DataClassVMMemory)); got != in {
		t.Errorf("vm_memory input bytes = %g, want %g", got, in)
	}
	if got := testutil.ToFloat64(m.HDEOutputBytes.WithLabelValues(metrics.DataClassAll)); got != float64(len(frame)) {
		t.Errorf("output bytes = %g, want %d", got, len(frame))
	}
	wantRatio := 1 - float64(len(frame))/in
	if got := testutil.ToFloat64(m.HDECompressionRatio.WithLabelValues(metrics.DataClassVMMemory)); got != wantRatio {
		t.Errorf("ratio = %g, want %g", got, wantRatio)
	}
	if got := testutil.ToFloat64(m.HDEPages.WithLabelValues(metrics.PageKindZero)); got != float64(st.ZeroPages) || got == 0 {
		t.Errorf("zero pages = %g, stats say %d", got, st.ZeroPages)
	}
	wantDedup := float64(st.ZeroPages+st.DuplicatePages) / 256
	if got := testutil.ToFloat64(m.HDEDedupRatio); got != wantDedup {
		t.Errorf("dedup ratio = %g, want %g", got, wantDedup)
	}
	if n := testutil.CollectAndCount(m.HDECompressionLatency); n != 1 {
		t.Errorf("latency histogram has %d series", n)
	}
	if !strings.Contains(gather(t, reg), `dwcp_v3_hde_compression_latency_seconds_count 256`) {
		t.Errorf("latency not observed once per page")
	}
	if !strings.Contains(gather(t, reg), `dwcp_v3_migration_latency_seconds_count{component="hde"} 1`) {
		t.Errorf("batch latency not observed")
	}
	var selections float64
	for _, a := range []string{metrics.AlgorithmNone, metrics.AlgorithmSnappy, metrics.AlgorithmLZ4, metrics.AlgorithmZstd} {
		selections += testutil.ToFloat64(m.HDEAlgorithmSelections.WithLabelValues(a))
	}
	if selections != 1 {
		t.Errorf("algorithm selections = %g, want 1", selections)
	}
	// A rejected frame counts as a compression error.
	_ = dec.DecodeBatch([]byte("HDEB\x07"), nil)
	if got := testutil.ToFloat64(m.Errors.WithLabelValues(metrics.ComponentHDE, metrics.ErrorCompression)); got != 1 {
		t.Errorf("errors = %g, want 1", got)
	}
}

func gather(t *testing.T, reg *prometheus.Registry) string {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			name := mf.GetName()
			labels := ""
			for _, l := range m.GetLabel() {
				if labels != "" {
					labels += ","
				}
				labels += l.GetName() + `="` + l.GetValue() + `"`
			}
			if labels != "" {
				labels = "{" + labels + "}"
			}
			if h := m.GetHistogram(); h != nil {
				b.WriteString(name + "_count" + labels + " " + strconv.FormatUint(h.GetSampleCount(), 10) + "\n")
			}
		}
	}
	return b.String()
}
