package pba_test

import (
	"fmt"
	"time"

	"github.com/dwcp/dwcp/pba"
)

// The engine feeds the transport's throughput samples to an Online
// forecaster, asks it for the next seconds, and divides the conservative
// forecast among concurrent migrations.
func Example() {
	f, err := pba.NewOnline(pba.DefaultConfig(), nil) // nil: private metrics
	if err != nil {
		panic(err)
	}
	start := time.Unix(1_700_000_000, 0)
	for i := 0; i < 60; i++ { // a steady 100 Mbit/s link, one sample a second
		f.Observe(pba.Sample{Time: start.Add(time.Duration(i) * time.Second), BytesPerSecond: 12.5e6, RTT: 20 * time.Millisecond})
	}
	point, lower := f.Forecast(5 * time.Second)
	fmt.Printf("next 5 s: about %.0f Mbit/s, at least %.0f Mbit/s (class %v)\n", point*8/1e6, lower*8/1e6, f.Workload())

	alloc, err := pba.NewAllocator(nil).Allocate(lower, []pba.Request{
		{ID: "vm-gold", Weight: 3},
		{ID: "vm-bronze", Weight: 1},
	})
	if err != nil {
		panic(err)
	}
	for _, g := range alloc.Grants {
		fmt.Printf("%s: %.0f%%\n", g.ID, 100*g.Rate/lower)
	}
	// Output:
	// next 5 s: about 100 Mbit/s, at least 100 Mbit/s (class stable)
	// vm-gold: 75%
	// vm-bronze: 25%
}

// Baselines and the LSTM share one interface, so one evaluation loop scores
// them all the same way.
func ExampleEvaluate() {
	tr := &pba.Trace{Name: "sawtooth"}
	for i := 0; i < 100; i++ {
		tr.Times = append(tr.Times, float64(i))
		tr.Throughput = append(tr.Throughput, 10+float64(i%4))
	}
	res, _ := pba.Evaluate([]*pba.Trace{tr}, pba.Baselines(), pba.EvalOptions{TrainFrac: 0.7, Horizon: 1})
	for _, r := range res {
		fmt.Printf("%-14s WAPE %5.1f%%\n", r.Label(), 100*r.Scores.All.WAPE())
	}
	// Output:
	// last_value     WAPE  12.7%
	// ewma           WAPE   9.9%
	// harmonic_mean  WAPE   8.6%
	// robust_mpc     WAPE  15.6%
	// holt           WAPE  12.3%
}
