package acp

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkCommit measures propose-to-committed-result latency (p50, p99)
// and throughput on loopback: Raft with fsync'd BoltDB in b.TempDir(),
// PBFT over TCP with ed25519 on every message. The baseline is the same
// command applied to a bare Registry (no consensus), in the same run.
//
//	go test -run '^$' -bench BenchmarkCommit -benchtime 2s ./acp/
func BenchmarkCommit(b *testing.B) {
	b.Run("baseline=registry-apply", func(b *testing.B) {
		r := NewRegistry()
		cmds := benchCommands(b, b.N)
		b.SetBytes(int64(len(cmds[0])))
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			r.Apply(cmds[i])
		}
	})
	// The disk's floor for Raft: one 4 KiB write plus fsync in b.TempDir().
	b.Run("baseline=fsync-4KiB", func(b *testing.B) {
		f, err := os.Create(filepath.Join(b.TempDir(), "fsync"))
		if err != nil {
			b.Fatal(err)
		}
		defer f.Close()
		buf := make([]byte, 4096)
		b.SetBytes(int64(len(buf)))
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			if _, err := f.WriteAt(buf, 0); err != nil {
				b.Fatal(err)
			}
			if err := f.Sync(); err != nil {
				b.Fatal(err)
			}
		}
	})
	for _, tc := range []struct {
		algo string
		n    int
	}{{AlgorithmRaft, 3}, {AlgorithmRaft, 7}, {AlgorithmPBFT, 4}} {
		for _, proposers := range []int{1, 8} {
			b.Run(fmt.Sprintf("%s-%d/proposers=%d", tc.algo, tc.n, proposers), func(b *testing.B) {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
				defer cancel()
				var c Consensus
				var err error
				if tc.algo == AlgorithmRaft {
					c, err = NewRaftCluster(ctx, tc.n, b.TempDir(), fastRaftConfig(b), nil)
				} else {
					cfg := fastPBFTConfig()
					cfg.CheckpointInterval, cfg.Window = 64, 256
					c, err = NewPBFTCluster(ctx, tc.n, cfg, nil)
				}
				if err != nil {
					b.Fatal(err)
				}
				defer c.Close()
				benchPropose(b, ctx, c, proposers)
			})
		}
	}
}

func benchCommands(b *testing.B, n int) [][]byte {
	cmds := make([][]byte, n)
	for i := range cmds {
		var err error
		cmds[i], err = EncodeCommand(Command{Op: OpRegister, VMID: fmt.Sprintf("vm-%08d", i), From: "host-a"})
		if err != nil {
			b.Fatal(err)
		}
	}
	return cmds
}

func benchPropose(b *testing.B, ctx context.Context, c Consensus, proposers int) {
	// Warm up: connections, leader lease, first fsyncs.
	for i := 0; i < 5; i++ {
		if _, err := c.Propose(ctx, benchCommands(b, 1)[0]); err != nil {
			b.Fatal(err)
		}
	}
	cmds := benchCommands(b, b.N)
	lat := make([]time.Duration, b.N)
	var next atomic.Int64
	var wg sync.WaitGroup
	var failed atomic.Value
	b.SetBytes(int64(len(cmds[0])))
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	for w := 0; w < proposers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= b.N {
					return
				}
				t0 := time.Now()
				if _, err := c.Propose(ctx, cmds[i]); err != nil {
					failed.Store(err)
					return
				}
				lat[i] = time.Since(t0)
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	if err, ok := failed.Load().(error); ok {
		b.Fatal(err)
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	pct := func(p float64) float64 { return float64(lat[int(p*float64(len(lat)-1))]) / 1e6 }
	b.ReportMetric(pct(0.50), "p50-ms")
	b.ReportMetric(pct(0.99), "p99-ms")
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "commits/s")
}
