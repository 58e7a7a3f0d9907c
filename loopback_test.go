package dwcp

import (
	"context"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/dwcp/dwcp/acp"
	"github.com/dwcp/dwcp/amst"
)

// killableTCP is amst's TCP transport with a switch that kills every
// connection dialled so far, as a flaky network does.
type killableTCP struct {
	amst.TCPTransport
	mu    sync.Mutex
	conns []net.Conn
}

func (k *killableTCP) Dial(ctx context.Context, addr string) (net.Conn, error) {
	c, err := k.TCPTransport.Dial(ctx, addr)
	if err == nil {
		k.mu.Lock()
		k.conns = append(k.conns, c)
		k.mu.Unlock()
	}
	return c, err
}

func (k *killableTCP) killAll() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	for _, c := range k.conns {
		c.Close()
	}
	n := len(k.conns)
	k.conns = nil
	return n
}

// TestAMSTStreamsKilledRecover kills every TCP connection of the session in
// the middle of round 1: amst redials and the migration completes, verified
// byte for byte; if amst cannot recover the migration must fail cleanly.
func TestAMSTStreamsKilledRecover(t *testing.T) {
	for _, v := range []Version{V1, V3} {
		t.Run(v.String(), func(t *testing.T) {
			kt := &killableTCP{}
			h := newHarness(t, func(c *Config) {
				ac := amst.Config{LingerTimeout: 2 * time.Second, ReconnectTimeout: 10 * time.Second, Transport: kt}
				c.Transport = &AMSTTransport{Config: ac, Metrics: c.Metrics}
				c.Codecs = nil
				*c = WithComponents(*c, c.Metrics)
				c.BatchPages = 64
				c.SampleInterval = 2 * time.Millisecond // progress reports often enough to strike mid-round
			})
			vm := newTestVM(t, 16<<20, 2<<20, PatternHotSet)
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			killed := 0
			res, dres, err, derr := h.migrateLoopback(ctx, MigrationRequest{VMID: "vm-kill", Memory: vm, Version: v,
				Progress: func(p Progress) {
					if killed == 0 && p.Round == 1 && p.RoundPagesSent > 0 {
						killed = kt.killAll()
					}
				}})
			if killed == 0 {
				t.Fatal("no connection was killed")
			}
			if err != nil {
				// Not recovered: it must have failed cleanly.
				checkSourceIntact(t, vm, nil, "")
				t.Fatalf("amst did not recover from %d killed connections: %v / %v", killed, err, derr)
			}
			if derr != nil || !res.Verified || res.MemoryHash != dres.MemoryHash {
				t.Fatalf("destination: %v, verified %v", derr, res.Verified)
			}
			dvm := h.lastIncoming()
			dvm.Pause(ctx)
			sameMemory(t, vm, dvm)
			t.Logf("recovered from %d killed connections; %d rounds, %v", killed, res.Rounds, res.Duration)
		})
	}
}

// TestEngineTCPTransportTLSAndCut runs the engine's own single-stream
// transport with TLS, then cuts its connection mid-round.
func TestEngineTCPTransportTLSAndCut(t *testing.T) {
	tlsCfg, err := SelfSignedTLS(time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	h := newHarness(t, func(c *Config) {
		c.Transport = &TCPTransport{ServerTLS: tlsCfg, ClientTLS: tlsCfg}
		c.Codecs = &HDECodecs{Metrics: c.Metrics}
		c.BatchPages = 64
	})
	vm := newTestVM(t, 4<<20, 1<<20, PatternHotSet)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, _, err, derr := h.migrateLoopback(ctx, MigrationRequest{VMID: "vm-tls", Memory: vm, Version: V1})
	if err != nil || derr != nil || !res.Verified {
		t.Fatalf("%v / %v", err, derr)
	}
	dvm := h.lastIncoming()
	dvm.Pause(ctx)
	sameMemory(t, vm, dvm)

	// A single TCP stream has no redial: a cut must fail cleanly.
	vm2 := newTestVM(t, 4<<20, 1<<20, PatternHotSet)
	l, err := h.dst.Config().Transport.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	done := make(chan error, 1)
	go func() {
		s, err := l.Accept(ctx)
		if err != nil {
			done <- err
			return
		}
		_, err = h.dst.Receive(ctx, &cutSession{Session: s, after: 1})
		s.Close()
		done <- err
	}()
	_, err = h.src.Migrate(ctx, MigrationRequest{VMID: "vm-cut", Memory: vm2, Destination: l.Addr(), Version: V1})
	if err == nil {
		t.Fatal("migration over a cut connection succeeded")
	}
	if derr := <-done; derr == nil {
		t.Fatal("destination succeeded over a cut connection")
	}
	checkSourceIntact(t, vm2, nil, "")
}

// TestACPHandover migrates with a real 3-replica Raft ownership registry:
// the fencing epoch rises and the source can no longer resume.
func TestACPHandover(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	rc := acp.DefaultRaftConfig("", "")
	rc.HeartbeatTimeout, rc.ElectionTimeout, rc.LeaderLeaseTimeout = 100*time.Millisecond, 100*time.Millisecond, 50*time.Millisecond
	rc.CommitTimeout, rc.NoSync = 5*time.Millisecond, true
	cluster, err := acp.NewRaftCluster(ctx, 3, t.TempDir(), rc, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer cluster.Close()
	own := &ACPOwnership{Client: acp.NewOwnershipClient(cluster)}
	if _, err := own.Client.Register(ctx, "vm-acp", "src"); err != nil {
		t.Fatal(err)
	}
	h := newHarness(t, func(c *Config) { c.Ownership = own })
	vm := newTestVM(t, 4<<20, 1<<20, PatternHotSet)
	res, dres, err, derr := h.migratePipe(ctx, MigrationRequest{VMID: "vm-acp", Memory: vm}, nil)
	if err != nil || derr != nil {
		t.Fatal(err, derr)
	}
	owner, epoch, _ := own.Owner(ctx, "vm-acp")
	if owner != "dst" || epoch != 2 || res.Epoch != 2 || dres.Epoch != 2 {
		t.Fatalf("owner %q at epoch %d (results %d, %d), want dst at 2", owner, epoch, res.Epoch, dres.Epoch)
	}
	if err := own.ConfirmResume(ctx, "vm-acp", "src", 1); err == nil {
		t.Fatal("the old owner may still resume at its old epoch")
	}
}
