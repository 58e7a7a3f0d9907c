package dwcp

import (
	"context"
	"fmt"
	"testing"
	"time"
)

// BenchmarkMigrate runs whole migrations, v1 and v3 side by side, in one
// process: over amst on loopback with hde and pba (the scenario path of
// bench/scenarios at small sizes), and over an in-memory pipe with the same
// codecs (no transport). b.SetBytes is the guest size, so MB/s is the
// effective migration throughput; downtime and wire bytes are reported per
// migration. Compare v1 and v3 rows of the same run.
func BenchmarkMigrate(b *testing.B) {
	for _, size := range []int64{32 << 20} {
		for _, path := range []string{"amst", "pipe"} {
			for _, v := range []Version{V1, V3} {
				b.Run(fmt.Sprintf("%s/%dMiB/%s", path, size>>20, v), func(b *testing.B) {
					benchMigrate(b, path, v, size)
				})
			}
		}
	}
}

func benchMigrate(b *testing.B, path string, v Version, size int64) {
	h := newHarness(b, func(c *Config) {
		if path == "amst" {
			withComponents(nil)(c)
			return
		}
		c.Codecs = &HDECodecs{Metrics: c.Metrics}
		c.NewForecaster = PBAForecasters(c.Metrics)
	})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	b.SetBytes(size)
	b.ReportAllocs()
	var downtime time.Duration
	var wire, rounds int64
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		vm, err := NewSyntheticVM(SyntheticConfig{Size: size, Seed: uint64(i), DirtyRate: 8 << 20})
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		var res *Result
		var derr error
		req := MigrationRequest{VMID: fmt.Sprint("vm-", i), Memory: vm, Version: v}
		if path == "amst" {
			res, _, err, derr = h.migrateLoopback(ctx, req)
		} else {
			res, _, err, derr = h.migratePipe(ctx, req, nil)
		}
		b.StopTimer()
		if err != nil || derr != nil || !res.Verified {
			b.Fatal(err, derr)
		}
		downtime += res.Downtime
		wire += res.WireBytes
		rounds += int64(res.Rounds)
		vm.Close()
		if in := h.lastIncoming(); in != nil {
			in.Close()
		}
		b.StartTimer()
	}
	b.ReportMetric(float64(downtime.Milliseconds())/float64(b.N), "downtime-ms/op")
	b.ReportMetric(float64(wire)/float64(b.N)/(1<<20), "wire-MiB/op")
	b.ReportMetric(float64(rounds)/float64(b.N), "rounds/op")
}

// BenchmarkPageRoundTrip measures the engine's per-page overhead apart from
// the codecs: read, hash, frame, parse, verify, write, with the raw codec.
func BenchmarkPageRoundTrip(b *testing.B) {
	vm, err := NewSyntheticVM(SyntheticConfig{Size: 4 << 20, Seed: 1})
	if err != nil {
		b.Fatal(err)
	}
	defer vm.Close()
	h := newHarness(b, nil)
	ctx := context.Background()
	b.SetBytes(4 << 20)
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		res, _, err, derr := h.migratePipe(ctx, MigrationRequest{VMID: "vm", Memory: vm, Version: V1}, nil)
		if err != nil || derr != nil || !res.Verified {
			b.Fatal(err, derr)
		}
		vm.Resume(ctx)
		h.lastIncoming().Close()
	}
}
