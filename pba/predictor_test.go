package pba

import (
	"math"
	"os"
	"path/filepath"
	"testing"
)

func feed(p Predictor, xs ...float64) {
	for i, x := range xs {
		p.Observe(float64(i), x)
	}
}

func TestBaselines(t *testing.T) {
	ewma, _ := NewEWMA(0.5)
	holt, _ := NewHolt(1, 1)
	for _, tc := range []struct {
		name    string
		p       Predictor
		in      []float64
		horizon int
		want    float64
	}{
		{"last value", &LastValue{}, []float64{3, 7, 5}, 1, 5},
		{"last value empty", &LastValue{}, nil, 1, 0},
		{"ewma", ewma, []float64{4, 8, 0}, 1, 3}, // 4 -> 6 -> 3
		{"harmonic of fewer than 5", &Harmonic{}, []float64{1, 4, 4}, 1, 2},
		{"harmonic keeps last 5", &Harmonic{}, []float64{100, 2, 2, 2, 2, 2}, 1, 2},
		{"harmonic with idle sample", &Harmonic{}, []float64{5, 0, 5}, 1, 0},
		// Estimates 4 vs 2 (error 1), 8/3 vs 2 (1/3), 3 vs 6 (0.5): the
		// largest error, 1, halves the harmonic mean.
		{"robust mpc discount", &RobustMPC{}, []float64{4, 2, 2, 6}, 1, (4.0 / (0.25 + 0.5 + 0.5 + 1.0/6)) / 2},
		// With alpha = beta = 1 Holt follows the last slope exactly.
		{"holt trend h1", holt, []float64{1, 2, 3}, 1, 4},
		{"holt trend h3 mean", holt, []float64{1, 2, 3}, 3, 5}, // mean of 4,5,6
		{"holt floors at zero", holt, []float64{9, 5, 1}, 3, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.p.Reset()
			feed(tc.p, tc.in...)
			if got := tc.p.Predict(tc.horizon); math.Abs(got-tc.want) > 1e-12 {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
		})
	}
	if _, err := NewEWMA(0); err == nil {
		t.Error("EWMA alpha 0 accepted")
	}
	if _, err := NewHolt(0.5, 1.5); err == nil {
		t.Error("Holt beta 1.5 accepted")
	}
}

// TestAnchors reproduces the table of baseline results on the
// shared traces, which pins the definitions of WAPE, misses and the split.
func TestAnchors(t *testing.T) {
	root := filepath.Join("..", "..", "shared", "traces")
	if _, err := os.Stat(root); err != nil {
		t.Skip("shared traces absent:", err)
	}
	for _, tc := range []struct {
		dir    string
		wape   [4]float64 // last value, EWMA(0.3), harmonic, RobustMPC
		misses [4]float64
	}{
		{"norway-hsdpa", [4]float64{14.2, 16.7, 18.2, 28.4}, [4]float64{17.1, 22.1, 19.7, 4.1}},
		{"oboe", [4]float64{11.0, 13.5, 14.9, 23.1}, [4]float64{10.6, 15.9, 14.5, 2.4}},
	} {
		t.Run(tc.dir, func(t *testing.T) {
			trs, err := ReadTraceDir(filepath.Join(root, tc.dir))
			if err != nil {
				t.Fatal(err)
			}
			res, err := Evaluate(trs, Baselines()[:4], EvalOptions{TrainFrac: 0.7, Horizon: 1})
			if err != nil {
				t.Fatal(err)
			}
			for i, r := range res {
				w, m := 100*r.Scores.All.WAPE(), r.Scores.All.MissPercent()
				if math.Abs(w-tc.wape[i]) > 0.05 || math.Abs(m-tc.misses[i]) > 0.05 {
					t.Errorf("%s: WAPE %.2f%% misses %.2f%%, anchors say %.1f%% / %.1f%%", r.Label(), w, m, tc.wape[i], tc.misses[i])
				}
			}
		})
	}
}
