package dwcp

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/dwcp/dwcp/amst"
	"github.com/dwcp/dwcp/metrics"
)

// harness is a source and a destination engine plus the incoming guests the
// destination created.
type harness struct {
	t        testing.TB
	src, dst *Engine
	mu       sync.Mutex
	incoming []*SyntheticVM
}

func newHarness(t testing.TB, mutate func(c *Config)) *harness {
	t.Helper()
	h := &harness{t: t}
	base := func(node string) Config {
		c := testConfig()
		c.NodeID = node
		c.Metrics = metrics.New(nil)
		c.Incoming = func(ctx context.Context, spec IncomingSpec) (IncomingMemory, error) {
			vm, err := NewIncomingSyntheticVM(spec, SyntheticConfig{})
			if err != nil {
				return nil, err
			}
			h.mu.Lock()
			h.incoming = append(h.incoming, vm)
			h.mu.Unlock()
			return vm, nil
		}
		if mutate != nil {
			mutate(&c)
		}
		return c
	}
	var err error
	if h.src, err = New(base("src")); err != nil {
		t.Fatal(err)
	}
	if h.dst, err = New(base("dst")); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		h.src.Close()
		h.dst.Close()
		h.mu.Lock()
		for _, vm := range h.incoming {
			vm.Close()
		}
		h.mu.Unlock()
	})
	return h
}

func (h *harness) lastIncoming() *SyntheticVM {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.incoming) == 0 {
		return nil
	}
	return h.incoming[len(h.incoming)-1]
}

// migratePipe runs a migration over an in-memory pipe (optionally wrapped).
func (h *harness) migratePipe(ctx context.Context, req MigrationRequest, wrap func(Session) Session) (srcRes, dstRes *Result, srcErr, dstErr error) {
	a, b := NewPipe(16)
	var sa Session = a
	if wrap != nil {
		sa = wrap(a)
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		dstRes, dstErr = h.dst.Receive(ctx, b)
		b.Close()
	})
	srcRes, srcErr = h.src.MigrateSession(ctx, sa, req)
	a.Close()
	wg.Wait()
	return
}

func newTestVM(t testing.TB, size int64, rate float64, pattern DirtyPattern) *SyntheticVM {
	t.Helper()
	vm, err := NewSyntheticVM(SyntheticConfig{Size: size, Seed: 42, DirtyRate: rate, Pattern: pattern})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { vm.Close() })
	return vm
}

// sameMemory compares two guests byte for byte.
func sameMemory(t *testing.T, a GuestMemory, b *SyntheticVM) {
	t.Helper()
	pa := make([]byte, a.PageSize())
	for i := range a.PageCount() {
		if err := a.ReadPage(i, pa); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(pa, b.page(i)) {
			t.Fatalf("page %d differs between source and destination", i)
		}
	}
}

func TestMigratePipeBothVersions(t *testing.T) {
	for _, tc := range []struct {
		name    string
		version Version
		rate    float64
		pattern DirtyPattern
	}{
		{"v1 idle", V1, 0, PatternHotSet},
		{"v3 idle", V3, 0, PatternHotSet},
		{"v1 hotset", V1, 32 << 20, PatternHotSet},
		{"v3 hotset", V3, 32 << 20, PatternHotSet},
		{"v3 uniform", V3, 16 << 20, PatternUniform},
		{"v1 sequential", V1, 16 << 20, PatternSequential},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, nil)
			vm := newTestVM(t, 8<<20, tc.rate, tc.pattern)
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			res, dres, err, derr := h.migratePipe(ctx, MigrationRequest{VMID: "vm-1", Memory: vm, Version: tc.version}, nil)
			if err != nil || derr != nil {
				t.Fatalf("source: %v, destination: %v", err, derr)
			}
			if !res.Verified || !dres.Verified || res.MemoryHash != dres.MemoryHash {
				t.Fatalf("not verified: %+v / %+v", res, dres)
			}
			if vm.Running() {
				t.Fatal("source still running after a successful migration")
			}
			dvm := h.lastIncoming()
			if !dvm.Running() {
				t.Fatal("destination not resumed")
			}
			dvm.Pause(ctx)
			sameMemory(t, vm, dvm)
			if res.Version != tc.version || res.Rounds < 2 {
				t.Fatalf("version %v rounds %d", res.Version, res.Rounds)
			}
		})
	}
}

func TestDestinationRejects(t *testing.T) {
	h := newHarness(t, func(c *Config) {
		c.Incoming = func(ctx context.Context, spec IncomingSpec) (IncomingMemory, error) {
			return nil, errors.New("no room")
		}
	})
	vm := newTestVM(t, 1<<20, 0, PatternHotSet)
	_, _, err, derr := h.migratePipe(context.Background(), MigrationRequest{VMID: "vm-r", Memory: vm}, nil)
	if !errors.Is(err, ErrRejected) || !errors.Is(derr, ErrRejected) {
		t.Fatalf("want rejection, got %v / %v", err, derr)
	}
	if !vm.Running() {
		t.Fatal("source not running after a rejected migration")
	}
}

func testConfig() Config {
	c := DefaultConfig()
	c.HandshakeTimeout = 5 * time.Second
	c.ReplyTimeout = 10 * time.Second
	return c
}

// withComponents switches a harness config to the real data path: amst,
// hde and pba.
func withComponents(tlsCfg *tls.Config) func(c *Config) {
	return func(c *Config) {
		ac := amst.Config{LingerTimeout: 2 * time.Second, ReconnectTimeout: 5 * time.Second, TLS: tlsCfg}
		c.Transport = &AMSTTransport{Config: ac, Metrics: c.Metrics}
		c.Codecs = nil
		*c = WithComponents(*c, c.Metrics)
	}
}

type outcome struct {
	res *Result
	err error
}

// migrateLoopback serves the destination on a loopback listener of its
// transport and migrates to it.
func (h *harness) migrateLoopback(ctx context.Context, req MigrationRequest) (srcRes, dstRes *Result, srcErr, dstErr error) {
	h.t.Helper()
	l, err := h.dst.Config().Transport.Listen("127.0.0.1:0")
	if err != nil {
		h.t.Fatal(err)
	}
	defer l.Close()
	results := make(chan outcome, 4)
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	served := make(chan struct{})
	go func() {
		defer close(served)
		h.dst.Serve(sctx, l, func(r *Result, err error) { results <- outcome{r, err} })
	}()
	req.Destination = l.Addr()
	srcRes, srcErr = h.src.Migrate(ctx, req)
	select {
	case o := <-results:
		dstRes, dstErr = o.res, o.err
	case <-time.After(30 * time.Second):
		dstErr = errors.New("test: destination never finished")
	}
	cancel()
	<-served
	return
}

func TestMigrateLoopbackComponents(t *testing.T) {
	tlsCfg, err := SelfSignedTLS(time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		version Version
		tls     bool
	}{
		{"v1", V1, false},
		{"v3", V3, false},
		{"v3 tls", V3, true},
		{"v1 tls", V1, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var tc2 *tls.Config
			if tc.tls {
				tc2 = tlsCfg
			}
			h := newHarness(t, withComponents(tc2))
			vm := newTestVM(t, 8<<20, 2<<20, PatternHotSet)
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			res, dres, err, derr := h.migrateLoopback(ctx, MigrationRequest{VMID: "vm-" + tc.name, Memory: vm, Version: tc.version})
			if err != nil || derr != nil {
				t.Fatalf("source: %v, destination: %v", err, derr)
			}
			if !res.Verified || res.MemoryHash != dres.MemoryHash {
				t.Fatalf("not verified: %+v", res)
			}
			dvm := h.lastIncoming()
			dvm.Pause(ctx)
			sameMemory(t, vm, dvm)
			if res.WireBytes >= res.LogicalBytes {
				t.Errorf("%s sent %d wire bytes for %d logical: no compression", tc.name, res.WireBytes, res.LogicalBytes)
			}
			t.Logf("%s: rounds %d, logical %d, wire %d (ratio %.2f), duration %v, downtime %v",
				tc.name, res.Rounds, res.LogicalBytes, res.WireBytes, res.Ratio(), res.Duration, res.Downtime)
		})
	}
}
