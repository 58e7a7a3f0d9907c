package dwcp

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/dwcp/dwcp/amst"
	"github.com/dwcp/dwcp/metrics"
)

// memRegistry is an in-memory OwnershipRegistry with acp's semantics, for
// checking that failures leave ownership alone.
type memRegistry struct {
	mu      sync.Mutex
	owner   map[string]string
	epoch   map[string]uint64
	target  map[string]string
	handovr atomic.Int32
}

func newMemRegistry() *memRegistry {
	return &memRegistry{owner: map[string]string{}, epoch: map[string]uint64{}, target: map[string]string{}}
}

func (r *memRegistry) Owner(ctx context.Context, vm string) (string, uint64, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.owner[vm], r.epoch[vm], nil
}

func (r *memRegistry) Plan(ctx context.Context, vm, from, to string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.owner[vm] == "" {
		r.owner[vm], r.epoch[vm] = from, 1
	}
	if r.owner[vm] != from {
		return fmt.Errorf("%s not owner", from)
	}
	r.target[vm] = to
	return nil
}

func (r *memRegistry) Handover(ctx context.Context, vm, from, to string) (uint64, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.owner[vm] != from || r.target[vm] != to {
		return 0, errors.New("handover refused")
	}
	r.owner[vm] = to
	r.epoch[vm]++
	delete(r.target, vm)
	r.handovr.Add(1)
	return r.epoch[vm], nil
}

func (r *memRegistry) Abort(ctx context.Context, vm string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.target, vm)
	return nil
}

func (r *memRegistry) ConfirmResume(ctx context.Context, vm, host string, epoch uint64) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.owner[vm] != host || r.epoch[vm] != epoch {
		return fmt.Errorf("%s does not own %s at epoch %d", host, vm, epoch)
	}
	return nil
}

// cutSession breaks the whole pipe after `after` messages were sent.
type cutSession struct {
	Session
	after int64
	sent  atomic.Int64
}

func (c *cutSession) SendMessage(ctx context.Context, b []byte) error {
	if c.sent.Add(1) > c.after {
		c.Session.Close()
		return ErrSessionClosed
	}
	return c.Session.SendMessage(ctx, b)
}

// slowSession limits the send rate (a test link of fixed bandwidth).
type slowSession struct {
	Session
	bytesPerSec float64
}

func (s *slowSession) SendMessage(ctx context.Context, b []byte) error {
	d := time.Duration(float64(len(b)) / s.bytesPerSec * float64(time.Second))
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
		return ctx.Err()
	}
	return s.Session.SendMessage(ctx, b)
}

func checkSourceIntact(t *testing.T, vm *SyntheticVM, reg *memRegistry, vmID string) {
	t.Helper()
	if !vm.Running() {
		t.Fatal("source guest is not running after a failed migration")
	}
	if vm.Throttle() != 0 {
		t.Fatalf("source guest left throttled at %d%%", vm.Throttle())
	}
	if reg != nil {
		if owner, _, _ := reg.Owner(context.Background(), vmID); owner != "src" {
			t.Fatalf("owner is %q after a failed migration, want src", owner)
		}
		if reg.handovr.Load() != 0 {
			t.Fatal("a handover happened")
		}
	}
}

func TestConnectionCutMidMigration(t *testing.T) {
	for _, after := range []int64{1, 2, 9, 17} {
		t.Run(fmt.Sprint(after), func(t *testing.T) {
			reg := newMemRegistry()
			h := newHarness(t, func(c *Config) { c.Ownership = reg; c.BatchPages = 64 })
			vm := newTestVM(t, 4<<20, 8<<20, PatternHotSet)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			_, _, err, derr := h.migratePipe(ctx, MigrationRequest{VMID: "vm-cut", Memory: vm}, func(s Session) Session {
				return &cutSession{Session: s, after: after}
			})
			if err == nil || derr == nil {
				t.Fatalf("migration over a cut link succeeded: %v / %v", err, derr)
			}
			checkSourceIntact(t, vm, reg, "vm-cut")
			if dvm := h.lastIncoming(); dvm != nil && dvm.Running() {
				t.Fatal("destination copy runs after a failed migration")
			}
			if got := testutil.ToFloat64(h.src.Metrics().Migrations.WithLabelValues("v3", metrics.ResultFailure)); got != 1 {
				t.Fatalf("failure counter %v, want 1", got)
			}
		})
	}
}

func TestDestinationDies(t *testing.T) {
	reg := newMemRegistry()
	h := newHarness(t, func(c *Config) {
		c.Ownership = reg
		c.BatchPages = 32
		c.SampleInterval = 2 * time.Millisecond // progress reports often enough to strike mid-round
	})
	vm := newTestVM(t, 8<<20, 4<<20, PatternUniform)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	a, b := NewPipe(4)
	dctx, kill := context.WithCancel(ctx)
	died := make(chan error, 1)
	go func() {
		_, err := h.dst.Receive(dctx, b)
		died <- err
	}()
	var once sync.Once
	res, err := h.src.MigrateSession(ctx, &slowSession{Session: a, bytesPerSec: 64 << 20}, MigrationRequest{
		VMID: "vm-die", Memory: vm,
		Progress: func(p Progress) {
			if p.Round == 1 && p.RoundPagesSent > p.RoundPages/3 {
				// The destination process dies: no abort, the link just
				// goes away.
				once.Do(func() { kill(); b.Close() })
			}
		},
	})
	if err == nil {
		t.Fatalf("migration to a dead destination succeeded: %+v", res)
	}
	if !errors.Is(err, ErrSessionClosed) && !strings.Contains(err.Error(), "closed") {
		t.Logf("source error: %v", err)
	}
	<-died
	checkSourceIntact(t, vm, reg, "vm-die")
}

func TestGarbagePeer(t *testing.T) {
	h := newHarness(t, nil)
	vm := newTestVM(t, 1<<20, 0, PatternHotSet)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	t.Run("source faces garbage", func(t *testing.T) {
		a, b := NewPipe(4)
		go func() {
			b.ReceiveMessage(ctx)
			b.SendMessage(ctx, []byte("HTTP/1.1 400 Bad Request\r\n\r\n"))
		}()
		_, err := h.src.MigrateSession(ctx, a, MigrationRequest{VMID: "vm-g", Memory: vm})
		if !errors.Is(err, ErrProtocol) || !strings.Contains(err.Error(), "magic") {
			t.Fatalf("want a protocol error naming the bad magic, got %v", err)
		}
		checkSourceIntact(t, vm, nil, "")
	})
	t.Run("destination faces garbage", func(t *testing.T) {
		a, b := NewPipe(4)
		go a.SendMessage(ctx, appendFrame(nil, msgHello, 1, []byte{1, 2, 3}))
		_, err := h.dst.Receive(ctx, b)
		if !errors.Is(err, ErrProtocol) || !strings.Contains(err.Error(), "truncated") {
			t.Fatalf("want a protocol error about a truncated hello, got %v", err)
		}
	})
	t.Run("destination faces corrupt frame", func(t *testing.T) {
		a, b := NewPipe(4)
		f := appendFrame(nil, msgAbort, 1, abortMsg{Reason: "x"}.append(nil))
		f[len(f)-1] ^= 0xff
		go a.SendMessage(ctx, f)
		_, err := h.dst.Receive(ctx, b)
		if !errors.Is(err, ErrProtocol) || !strings.Contains(err.Error(), "checksum") {
			t.Fatalf("want a checksum error, got %v", err)
		}
	})
	t.Run("amst dial to a garbage server", func(t *testing.T) {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		go func() {
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				c.Write([]byte("SSH-2.0-OpenSSH_9.2\r\n" + strings.Repeat("garbage", 100)))
				c.Close()
			}
		}()
		tr := &AMSTTransport{Config: amst.Config{HandshakeTimeout: 2 * time.Second}}
		e, err := New(Config{NodeID: "src", Transport: tr, HandshakeTimeout: 3 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		defer e.Close()
		_, err = e.Migrate(ctx, MigrationRequest{VMID: "vm-g", Memory: vm, Destination: l.Addr().String()})
		if err == nil || !strings.Contains(err.Error(), "dial") {
			t.Fatalf("want a dial error, got %v", err)
		}
		checkSourceIntact(t, vm, nil, "")
	})
}

func TestTooHotToConverge(t *testing.T) {
	reg := newMemRegistry()
	h := newHarness(t, func(c *Config) {
		c.Ownership = reg
		c.AutoConverge = AutoConvergeConfig{Initial: 30, Increment: 30, Max: 60, TriggerRatio: 0.5, RoundsAtMax: 1}
		c.BatchPages = 64
	})
	// 1 MiB rewritten uniformly at 64 MiB/s over a 2 MB/s link: even at the
	// 60% throttle, and even if a loaded machine runs the workload at a
	// twentieth of its rate, the guest dirties every page during each round.
	vm := newTestVM(t, 1<<20, 64<<20, PatternUniform)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	res, _, err, derr := h.migratePipe(ctx, MigrationRequest{VMID: "vm-hot", Memory: vm, Version: V1}, func(s Session) Session {
		return &slowSession{Session: s, bytesPerSec: 2e6}
	})
	if !errors.Is(err, ErrNotConverged) {
		t.Fatalf("want ErrNotConverged, got %v (destination: %v)", err, derr)
	}
	if res.MaxThrottle != 60 {
		t.Fatalf("auto-converge reached %d%%, want 60%%", res.MaxThrottle)
	}
	if !errors.Is(derr, ErrAborted) {
		t.Fatalf("destination should see the abort, got %v", derr)
	}
	checkSourceIntact(t, vm, reg, "vm-hot")
	t.Logf("failed cleanly after %d rounds: %v", res.Rounds, err)
}

func TestOwnershipHandover(t *testing.T) {
	reg := newMemRegistry()
	h := newHarness(t, func(c *Config) { c.Ownership = reg })
	vm := newTestVM(t, 4<<20, 1<<20, PatternHotSet)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, dres, err, derr := h.migratePipe(ctx, MigrationRequest{VMID: "vm-own", Memory: vm}, nil)
	if err != nil || derr != nil {
		t.Fatal(err, derr)
	}
	owner, epoch, _ := reg.Owner(ctx, "vm-own")
	if owner != "dst" || epoch != 2 || res.Epoch != 2 || dres.Epoch != 2 {
		t.Fatalf("owner %q epoch %d (results %d/%d), want dst at 2", owner, epoch, res.Epoch, dres.Epoch)
	}
	// The old owner can no longer migrate the VM.
	_, _, err, _ = h.migratePipe(ctx, MigrationRequest{VMID: "vm-own", Memory: vm}, nil)
	if !errors.Is(err, ErrNotOwner) {
		t.Fatalf("stale owner migrated: %v", err)
	}
}

// TestCallerCancels cancels the migration's context in the middle of round
// 1: the source keeps running, the destination discards its copy.
func TestCallerCancels(t *testing.T) {
	reg := newMemRegistry()
	h := newHarness(t, func(c *Config) { c.Ownership = reg; c.SampleInterval = 2 * time.Millisecond })
	vm := newTestVM(t, 8<<20, 1<<20, PatternHotSet)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	_, _, err, derr := h.migratePipe(ctx, MigrationRequest{VMID: "vm-cancel", Memory: vm,
		Progress: func(p Progress) {
			if p.Round == 1 && p.RoundPagesSent > 0 {
				cancel()
			}
		}}, func(s Session) Session { return &slowSession{Session: s, bytesPerSec: 64 << 20} })
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("source: want context.Canceled, got %v", err)
	}
	if derr == nil {
		t.Fatal("destination succeeded")
	}
	checkSourceIntact(t, vm, reg, "vm-cancel")
	if dvm := h.lastIncoming(); dvm != nil && dvm.Running() {
		t.Fatal("destination copy runs")
	}
}
