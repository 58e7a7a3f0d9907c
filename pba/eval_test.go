package pba

import (
	"math"
	"testing"
	"time"
)

func TestClassify(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   []float64
		want Workload
	}{
		{"constant", []float64{5, 5, 5, 5}, Stable},
		{"cv 0.1", []float64{9, 11}, Stable},
		{"cv exactly 0.15 is variable", []float64{8.5, 11.5}, Variable},
		{"cv 0.4", []float64{6, 14}, Variable},
		{"cv exactly 0.5 is bursty", []float64{5, 15}, Bursty},
		{"on-off", []float64{0, 10, 0, 10}, Bursty},
		{"empty", nil, Bursty},
		{"all zero", []float64{0, 0}, Bursty},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := Classify(tc.in); got != tc.want {
				t.Fatalf("cv %v: got %v, want %v", CoefficientOfVariation(tc.in), got, tc.want)
			}
		})
	}
}

func TestScore(t *testing.T) {
	var s Score
	s.Add(12.5, 10) // miss: 12.5 > 12
	s.Add(11, 10)   // not a miss
	s.Add(5, 10)
	s.Add(10, 10)
	if got, want := s.WAPE(), (2.5+1+5+0)/40; math.Abs(got-want) > 1e-12 {
		t.Errorf("WAPE %v, want %v", got, want)
	}
	if got := s.MissPercent(); got != 25 {
		t.Errorf("misses %v%%, want 25%%", got)
	}
	if got := s.Accuracy(); math.Abs(got-(100-100*8.5/40)) > 1e-9 {
		t.Errorf("accuracy %v", got)
	}
	var bad Score
	bad.Add(100, 1)
	if bad.Accuracy() != 0 {
		t.Errorf("accuracy with WAPE > 1 is %v, want 0", bad.Accuracy())
	}
	s.Latencies = []time.Duration{1, 2, 3, 4, 100}
	if q := s.LatencyQuantile(0.99); q != 100 {
		t.Errorf("p99 %v", q)
	}
}

func TestEvaluateSplitAndHorizon(t *testing.T) {
	tr := &Trace{Name: "ramp"}
	for i := 0; i < 100; i++ {
		tr.Times = append(tr.Times, float64(i))
		tr.Throughput = append(tr.Throughput, float64(i+1))
	}
	for _, tc := range []struct {
		horizon int
		n       int
		wape    float64 // last value lags a ramp by (h+1)/2
	}{
		{1, 30, 30.0 / sumRange(71, 100)},
		{5, 26, 26 * 3 / sumMeans(71, 96, 5)},
	} {
		res, err := Evaluate([]*Trace{tr}, []Predictor{&LastValue{}}, EvalOptions{TrainFrac: 0.7, Horizon: tc.horizon})
		if err != nil {
			t.Fatal(err)
		}
		s := res[0].Scores.All
		if s.Predictions != tc.n || math.Abs(s.WAPE()-tc.wape) > 1e-12 {
			t.Errorf("horizon %d: n %d WAPE %v, want %d %v", tc.horizon, s.Predictions, s.WAPE(), tc.n, tc.wape)
		}
	}
	if _, err := Evaluate(nil, nil, EvalOptions{TrainFrac: 1, Horizon: 1}); err == nil {
		t.Error("train fraction 1 accepted")
	}
	if _, err := Evaluate(nil, nil, EvalOptions{TrainFrac: 0.5}); err == nil {
		t.Error("horizon 0 accepted")
	}
}

func sumRange(a, b int) float64 {
	s := 0.0
	for i := a; i <= b; i++ {
		s += float64(i)
	}
	return s
}

// sumMeans sums, for start a..b, the mean of start..start+h-1.
func sumMeans(a, b, h int) float64 {
	s := 0.0
	for i := a; i <= b; i++ {
		s += sumRange(i, i+h-1) / float64(h)
	}
	return s
}
