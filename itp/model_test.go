package itp

import (
	"math"
	"math/rand/v2"
	"testing"
	"time"
)

func TestPredictMigration(t *testing.T) {
	p := Precopy{MaxRounds: 30, TargetDowntime: 300 * time.Millisecond}
	sec := func(s float64) time.Duration { return time.Duration(s * 1e9) }
	for _, tc := range []struct {
		name      string
		size      int64
		dirty     float64
		link      Link
		pre       Precopy
		total     time.Duration
		downtime  time.Duration
		rounds    int
		converged bool
	}{
		{"nothing to copy", 0, 1e9, Link{BandwidthBytesPerSec: 1e9}, p, 0, 0, 0, true},
		{"idle guest", 1e9, 0, Link{BandwidthBytesPerSec: 1e9}, p, sec(1), 0, 1, true},
		// Rounds of 8, 2, 0.5 GB; 0.125 GB fits 300 ms: the geometric
		// series 8(1-0.25^4)/0.75 = 10.625 s.
		{"geometric series", 8e9, 0.25e9, Link{BandwidthBytesPerSec: 1e9}, p, sec(10.625), sec(0.125), 3, true},
		{"dirty faster than link", 1e9, 2e9, Link{BandwidthBytesPerSec: 1e9}, p, sec(2), sec(1), 1, false},
		{"round cap", 1e9, 0.9e9, Link{BandwidthBytesPerSec: 1e9}, Precopy{MaxRounds: 2}, sec(2.71), sec(0.81), 2, true},
		{"rtt per round", 1e9, 0, Link{BandwidthBytesPerSec: 1e9, RTT: 100 * time.Millisecond}, p, sec(1.2), sec(0.1), 1, true},
		{"no bandwidth", 1e9, 0, Link{}, p, math.MaxInt64, math.MaxInt64, 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := PredictMigration(tc.size, tc.dirty, tc.link, tc.pre)
			near := func(a, b time.Duration) bool { return math.Abs(float64(a-b)) <= 1e3 }
			if !near(got.Total, tc.total) || !near(got.Downtime, tc.downtime) || got.Rounds != tc.rounds || got.Converged != tc.converged {
				t.Fatalf("got %+v, want total %v downtime %v rounds %d converged %v", got, tc.total, tc.downtime, tc.rounds, tc.converged)
			}
		})
	}
}

func TestLinksLookup(t *testing.T) {
	local := Link{BandwidthBytesPerSec: 1}
	l := Links{{"a", "b"}: {BandwidthBytesPerSec: 2}, {"c", "c"}: {BandwidthBytesPerSec: 3}}
	for _, tc := range []struct {
		from, to string
		want     float64
		ok       bool
	}{
		{"a", "b", 2, true}, {"b", "a", 2, true}, {"a", "a", 1, true}, {"c", "c", 3, true}, {"a", "c", 0, false},
	} {
		got, ok := l.lookup(tc.from, tc.to, local)
		if ok != tc.ok || got.BandwidthBytesPerSec != tc.want {
			t.Fatalf("%s->%s: %v %v", tc.from, tc.to, got, ok)
		}
	}
}

func TestFitsIn(t *testing.T) {
	capacity := Resources{MilliCPU: 10, MemoryBytes: 10, NetworkBitsPerSec: 10}
	for _, tc := range []struct {
		used, req Resources
		want      bool
	}{
		{Resources{}, Resources{10, 10, 10}, true},
		{Resources{1, 0, 0}, Resources{10, 0, 0}, false},
		{Resources{0, 5, 0}, Resources{0, 6, 0}, false},
		{Resources{0, 0, 5}, Resources{0, 0, 6}, false},
	} {
		if got := fitsIn(tc.used, tc.req, capacity); got != tc.want {
			t.Fatalf("fitsIn(%v, %v) = %v", tc.used, tc.req, got)
		}
	}
	if !fitsIn(Resources{}, Resources{0, 0, 1 << 40}, Resources{1, 1, 0}) {
		t.Fatal("a host without network accounting rejected a network request")
	}
}

func TestEfficiencyBounds(t *testing.T) {
	mk := func(cpu, mem, usedCPU, usedMem int64) Host {
		return Host{Capacity: Resources{MilliCPU: cpu, MemoryBytes: mem}, Used: Resources{MilliCPU: usedCPU, MemoryBytes: usedMem}}
	}
	for _, tc := range []struct {
		name    string
		hosts   []Host
		used    int
		simple  int
		bound   int
		percent float64
	}{
		{"empty", []Host{mk(10, 10, 0, 0)}, 0, 0, 0, 100},
		{"identical, cpu-bound", []Host{mk(10, 40, 9, 10), mk(10, 40, 9, 10), mk(10, 40, 7, 10), mk(10, 40, 0, 0)}, 3, 3, 3, 100},
		{"identical, one wasted", []Host{mk(10, 40, 5, 10), mk(10, 40, 5, 10), mk(10, 40, 0, 0)}, 2, 1, 1, 50},
		// Two shapes, each rich in one resource: the simple bound says
		// one host; the LP needs 100/110 of each, 1.82 -> 2.
		{"LP tighter", []Host{mk(100, 10, 50, 5), mk(10, 100, 5, 50), mk(100, 10, 45, 0), mk(10, 100, 0, 45)}, 4, 1, 2, 50},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := Efficiency(tc.hosts, 200)
			if r.HostsUsed != tc.used || r.SimpleBound != tc.simple || r.LowerBound != tc.bound || math.Abs(r.Percent-tc.percent) > 1e-9 {
				t.Fatalf("got %+v", r)
			}
			if tc.name == "LP tighter" && math.Abs(r.LPBound-200.0/110) > 1e-6 {
				t.Fatalf("LP optimum %v, want %v", r.LPBound, 200.0/110)
			}
			// Without the simplex the dual search gives the same bound.
			if r2 := Efficiency(tc.hosts, 0); r2.LowerBound != tc.bound || math.Abs(r2.LPBound-r.LPBound) > 1e-3*r.LPBound {
				t.Fatalf("dual bound %+v, simplex %+v", r2, r)
			}
		})
	}
}

// TestDualCoverBound checks the dual bound against gonum's simplex: never
// above the LP optimum (it is a lower bound) and within 0.1% of it.
func TestDualCoverBound(t *testing.T) {
	for seed := range uint64(40) {
		rng := rand.New(rand.NewPCG(seed, 5))
		nt := 2 + rng.IntN(30)
		caps := [][]float64{make([]float64, nt), make([]float64, nt)}
		counts := make([]float64, nt)
		var tc, tm float64
		for i := range nt {
			caps[0][i] = float64(8+rng.IntN(120)) * 1000
			caps[1][i] = float64(8+rng.IntN(1000)) * 1e9
			counts[i] = float64(1 + rng.IntN(40))
			tc += caps[0][i] * counts[i]
			tm += caps[1][i] * counts[i]
		}
		dem := []float64{tc * (0.05 + 0.9*rng.Float64()), tm * (0.05 + 0.9*rng.Float64())}
		lp, _, ok := coverLP(caps, dem, counts)
		if !ok {
			t.Fatalf("seed %d: LP failed", seed)
		}
		dual := dualCoverBound(caps, dem, counts)
		if dual > lp+1e-6 || dual < lp*0.999 {
			t.Fatalf("seed %d (%d types): dual %v, LP %v", seed, nt, dual, lp)
		}
	}
	if got := dualCoverBound([][]float64{{10}, {10}}, []float64{100, 1}, []float64{2}); got != 0 {
		t.Fatalf("infeasible demand gave %v", got)
	}
}
