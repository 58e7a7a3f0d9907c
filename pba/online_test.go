package pba

import (
	"errors"
	"math"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/dwcp/dwcp/metrics"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestSelectorFallsBack gives the selector an untrained (random) model: it
// must notice and forecast about as well as the best baseline.
func TestSelectorFallsBack(t *testing.T) {
	bad, err := NewModel(DefaultModelShape(), 99)
	if err != nil {
		t.Fatal(err)
	}
	traces, err := ReadTraceDir("testdata/traces")
	if err != nil {
		t.Fatal(err)
	}
	sel, err := NewSelector(SelectorConfig{}, bad)
	if err != nil {
		t.Fatal(err)
	}
	out, err := Evaluate(traces, []Predictor{&LastValue{}, NewLSTMPredictor(bad), sel}, EvalOptions{TrainFrac: 0.3, Horizon: 1})
	if err != nil {
		t.Fatal(err)
	}
	last, lstm, ens := out[0].Scores.All.WAPE(), out[1].Scores.All.WAPE(), out[3].Scores.All.WAPE()
	t.Logf("last value %.3f, random LSTM %.3f, selector %.3f", last, lstm, ens)
	if lstm < 1.5*last {
		t.Fatalf("the random model is not bad enough (%.3f vs %.3f) for this test", lstm, last)
	}
	if ens > 1.15*last {
		t.Errorf("selector WAPE %.3f, last value %.3f: it did not fall back", ens, last)
	}
}

func TestOnline(t *testing.T) {
	reg := prometheus.NewRegistry()
	met := metrics.New(reg)
	o, err := NewOnline(DefaultConfig(), met)
	if err != nil {
		t.Fatal(err)
	}
	if p, l := o.Forecast(time.Second); p != 0 || l != 0 {
		t.Fatalf("forecast before samples: %v, %v", p, l)
	}
	tr, err := ReadTrace("bus", mustOpen(t, "testdata/traces/norway_bus_1.txt"))
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Unix(1_700_000_000, 0)
	for i, v := range tr.Throughput {
		s := Sample{Time: t0.Add(time.Duration(tr.Times[i] * float64(time.Second))), BytesPerSecond: v * 1e6 / 8, RTT: 40 * time.Millisecond}
		if err := o.Observe(s); err != nil {
			t.Fatal(err)
		}
	}
	point, lower := o.Forecast(time.Second)
	last := tr.Throughput[len(tr.Throughput)-1] * 1e6 / 8
	if !(point > 0.3*last && point < 3*last) || !(lower > 0 && lower <= point) {
		t.Fatalf("forecast %v lower %v, last sample %v bytes/s", point, lower, last)
	}
	if o.RTT() != 40*time.Millisecond {
		t.Errorf("RTT %v", o.RTT())
	}
	if a := o.Accuracy(); !(a > 50 && a <= 100) {
		t.Errorf("accuracy %v", a)
	}
	n := testutil.ToFloat64(met.PBAPredictions.WithLabelValues(metrics.WorkloadAll))
	if int(n) != len(tr.Throughput)-1 {
		t.Errorf("predictions_total %v, want %d", n, len(tr.Throughput)-1)
	}
	if c := testutil.CollectAndCount(met.PBAInferenceLatency); c < 2 {
		t.Errorf("inference latency series %d", c)
	}
	if c := testutil.CollectAndCount(met.MigrationLatency); c != 1 {
		t.Errorf("migration latency series %d", c)
	}
	for _, bad := range []Sample{
		{Time: t0.Add(time.Hour), BytesPerSecond: math.NaN()},
		{Time: t0.Add(time.Hour), BytesPerSecond: -1},
		{Time: t0, BytesPerSecond: 1}, // time goes backwards
	} {
		if err := o.Observe(bad); !errors.Is(err, ErrBadSample) {
			t.Errorf("sample %+v: %v", bad, err)
		}
	}
}

func mustOpen(t *testing.T, name string) *os.File {
	t.Helper()
	f, err := os.Open(name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

func TestOnlineConcurrent(t *testing.T) {
	o, err := NewOnline(Config{DisableLSTM: true, SampleInterval: time.Second}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Unix(0, 0)
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		for i := 0; i < 500; i++ {
			_ = o.Observe(Sample{Time: t0.Add(time.Duration(i+1) * time.Second), BytesPerSecond: float64(1e6 + i%7*1e5)})
		}
	}()
	go func() {
		defer wg.Done()
		for i := 0; i < 500; i++ {
			if p, l := o.Forecast(5 * time.Second); l > p || p < 0 {
				t.Errorf("forecast %v lower %v", p, l)
				return
			}
		}
	}()
	wg.Wait()
	if o.Chosen(time.Second) == metrics.PredictorLSTM {
		t.Error("LSTM chosen while disabled")
	}
}

func TestConfigValidate(t *testing.T) {
	for _, c := range []Config{
		{SampleInterval: -1},
		{Selector: SelectorConfig{Horizons: []int{5, 1}}},
		{Selector: SelectorConfig{MissTarget: 2}},
		{Selector: SelectorConfig{ErrorWindow: -3}},
	} {
		if _, err := NewOnline(c, nil); err == nil {
			t.Errorf("config %+v accepted", c)
		}
	}
}

func TestAllocate(t *testing.T) {
	for _, tc := range []struct {
		name     string
		capacity float64
		reqs     []Request
		want     []float64
		util     float64
	}{
		{"equal weights unlimited", 90, []Request{{"a", 1, 0}, {"b", 1, 0}, {"c", 1, 0}}, []float64{30, 30, 30}, 100},
		{"weights", 100, []Request{{"hi", 3, 0}, {"lo", 1, 0}}, []float64{75, 25}, 100},
		{"small demand frees capacity", 100, []Request{{"a", 1, 10}, {"b", 1, 0}, {"c", 2, 0}}, []float64{10, 30, 60}, 100},
		{"all satisfied", 100, []Request{{"a", 1, 20}, {"b", 5, 30}}, []float64{20, 30}, 50},
		{"cascade", 100, []Request{{"a", 1, 10}, {"b", 1, 25}, {"c", 1, 0}}, []float64{10, 25, 65}, 100},
		{"no requests", 100, nil, nil, 0},
		{"no capacity", 0, []Request{{"a", 1, 5}}, []float64{0}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			al, err := Allocate(tc.capacity, tc.reqs)
			if err != nil {
				t.Fatal(err)
			}
			for i, g := range al.Grants {
				if math.Abs(g.Rate-tc.want[i]) > 1e-9 || g.ID != tc.reqs[i].ID {
					t.Fatalf("grants %+v, want %v", al.Grants, tc.want)
				}
			}
			if math.Abs(al.Utilization-tc.util) > 1e-9 {
				t.Errorf("utilisation %v, want %v", al.Utilization, tc.util)
			}
		})
	}
	for _, bad := range [][]Request{{{"a", 0, 1}}, {{"a", 1, -1}}, {{"a", math.NaN(), 1}}} {
		if _, err := Allocate(10, bad); err == nil {
			t.Errorf("%+v accepted", bad)
		}
	}
	if _, err := Allocate(math.Inf(1), nil); err == nil {
		t.Error("infinite capacity accepted")
	}
	met := metrics.New(nil)
	if _, err := NewAllocator(met).Allocate(100, []Request{{"a", 1, 40}}); err != nil {
		t.Fatal(err)
	}
	if u := testutil.ToFloat64(met.PBABandwidthUtilization); u != 40 {
		t.Errorf("utilisation gauge %v", u)
	}
}
