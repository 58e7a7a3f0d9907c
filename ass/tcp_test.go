package ass

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"math/big"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// loopbackCluster runs real replicas on TCP loopback with durable data dirs.
type loopbackCluster struct {
	t     *testing.T
	addrs []string
	dirs  []string
	tls   *tls.Config
	mu    sync.Mutex
	reps  []*Replica
}

func newLoopbackCluster(t *testing.T, n int, tlsConf *tls.Config) *loopbackCluster {
	c := &loopbackCluster{t: t, tls: tlsConf}
	var trs []*TCPTransport
	for i := 0; i < n; i++ {
		tc := DefaultTCPConfig("127.0.0.1:0")
		tc.TLS = tlsConf
		tr, err := NewTCPTransport(tc)
		if err != nil {
			t.Fatal(err)
		}
		trs = append(trs, tr)
		c.addrs = append(c.addrs, tr.Addr())
		c.dirs = append(c.dirs, t.TempDir())
	}
	for i := 0; i < n; i++ {
		c.reps = append(c.reps, c.start(i, trs[i]))
	}
	t.Cleanup(func() {
		for _, r := range c.replicas() {
			r.Close()
		}
	})
	return c
}

func (c *loopbackCluster) start(i int, tr *TCPTransport) *Replica {
	if tr == nil {
		tc := DefaultTCPConfig(c.addrs[i])
		tc.TLS = c.tls
		var err error
		if tr, err = NewTCPTransport(tc); err != nil {
			c.t.Fatal(err)
		}
	}
	cfg := DefaultConfig(fmt.Sprintf("node%d", i), "")
	cfg.Transport = tr
	cfg.Peers = c.addrs
	cfg.DataDir = c.dirs[i]
	cfg.RetransmitTimeout = 200 * time.Millisecond
	cfg.DigestInterval = 300 * time.Millisecond
	r, err := NewReplica(cfg, nil)
	if err != nil {
		c.t.Fatal(err)
	}
	if err := r.Start(context.Background()); err != nil {
		c.t.Fatal(err)
	}
	return r
}

func (c *loopbackCluster) replica(i int) *Replica {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.reps[i]
}

func (c *loopbackCluster) replicas() []*Replica {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]*Replica(nil), c.reps...)
}

func (c *loopbackCluster) restart(i int) {
	c.mu.Lock()
	old := c.reps[i]
	c.mu.Unlock()
	if err := old.Close(); err != nil {
		c.t.Fatal(err)
	}
	r := c.start(i, nil)
	c.mu.Lock()
	c.reps[i] = r
	c.mu.Unlock()
}

func (c *loopbackCluster) waitConverged(timeout time.Duration) {
	deadline := time.Now().Add(timeout)
	for {
		reps := c.replicas()
		var first []byte
		same := true
		for i, r := range reps {
			var enc []byte
			r.View(func(s *ORMap) { enc = Marshal(s) })
			if i == 0 {
				first = enc
			} else if string(enc) != string(first) {
				same = false
			}
		}
		if same {
			return
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("replicas did not converge within %v", timeout)
		}
		time.Sleep(20 * time.Millisecond) // polling the replicas' state, not standing in for work
	}
}

// TestLoopbackFiveReplicas: five durable replicas on TCP loopback, a writer
// on each, replica 2 restarted while the others keep writing. Every write
// that returned must be in every replica at the end.
func TestLoopbackFiveReplicas(t *testing.T) {
	c := newLoopbackCluster(t, 5, nil)
	ctx := context.Background()
	var acked atomic.Int64
	var hostsWritten [5]atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var restartMu sync.RWMutex // writers of replica 2 pause while it restarts
	for w := 0; w < 5; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			cs := func() *ClusterState { return NewClusterState(c.replica(w)) }
			for j := 0; ; j++ {
				select {
				case <-stop:
					return
				default:
				}
				if w == 2 {
					restartMu.RLock()
				}
				r := c.replica(w)
				err := r.Update(ctx, "writes", TypeGCounter, func(wr Writer, v CRDT) CRDT { return v.(*GCounter).Inc(wr.Node, 1) })
				if err == nil {
					acked.Add(1)
					err = cs().SetHost(ctx, Host{ID: fmt.Sprintf("h%d-%d", w, j%50), Zone: fmt.Sprint("z", w), Capacity: Resources{CPUMillicores: int64(j)}})
					if err == nil && j < 50 {
						hostsWritten[w].Add(1)
					}
				}
				if w == 2 {
					restartMu.RUnlock()
				}
				if err != nil {
					t.Errorf("writer %d: %v", w, err)
					return
				}
			}
		}(w)
	}
	time.Sleep(400 * time.Millisecond) // let the writers run
	restartMu.Lock()
	c.restart(2)
	restartMu.Unlock()
	time.Sleep(400 * time.Millisecond)
	close(stop)
	wg.Wait()
	c.waitConverged(15 * time.Second)
	wantHosts := 0
	for w := range hostsWritten {
		wantHosts += int(hostsWritten[w].Load())
	}
	for i, r := range c.replicas() {
		v, _ := r.Get("writes")
		if got := int64(v.(*GCounter).Value()); got != acked.Load() {
			t.Fatalf("replica %d counts %d writes, %d were acknowledged", i, got, acked.Load())
		}
		if n := len(NewClusterState(r).Hosts()); n != wantHosts {
			t.Fatalf("replica %d has %d hosts, want %d", i, n, wantHosts)
		}
	}
	t.Logf("%d acknowledged writes converged on 5 replicas", acked.Load())
}

func selfSignedTLS(t testing.TB) *tls.Config {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "ass-test"},
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &tls.Config{
		Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}},
		RootCAs:      pool, ClientCAs: pool, ClientAuth: tls.RequireAndVerifyClientCert,
		ServerName: "127.0.0.1", MinVersion: tls.VersionTLS13,
	}
}

func TestLoopbackTLS(t *testing.T) {
	c := newLoopbackCluster(t, 2, selfSignedTLS(t))
	cs := NewClusterState(c.replica(0))
	if err := cs.SetVM(context.Background(), VM{ID: "vm1", Owner: "alice", Host: "h1", State: VMRunning}); err != nil {
		t.Fatal(err)
	}
	c.waitConverged(5 * time.Second)
	vm, ok := NewClusterState(c.replica(1)).VM("vm1")
	if !ok || vm.Owner != "alice" || vm.State != VMRunning {
		t.Fatalf("vm over TLS: %+v %v", vm, ok)
	}
}

func TestTCPTransportRejectsOversizedFrame(t *testing.T) {
	tc := DefaultTCPConfig("127.0.0.1:0")
	tc.MaxFrameBytes = 1024
	tr, err := NewTCPTransport(tc)
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	got := make(chan []byte, 1)
	tr.Start(func(f []byte) { got <- f })
	conn, err := net.Dial("tcp", tr.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// A header claiming 1 GiB: the reader must drop the connection, not allocate.
	conn.Write([]byte{'A', 'S', wireVersion, byte(kindAck), 0x40, 0, 0, 0, 0, 0, 0, 0})
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := conn.Read(make([]byte, 1)); err == nil {
		t.Fatal("connection stayed open after an oversized frame header")
	}
	select {
	case <-got:
		t.Fatal("oversized frame delivered")
	default:
	}
}

func TestConfigValidate(t *testing.T) {
	good := DefaultConfig("n", "127.0.0.1:0")
	tests := []struct {
		name string
		mod  func(*Config)
		ok   bool
	}{
		{"default", func(*Config) {}, true},
		{"no node", func(c *Config) { c.NodeID = "" }, false},
		{"no listen", func(c *Config) { c.ListenAddr = "" }, false},
		{"retransmit below tick", func(c *Config) { c.RetransmitTimeout = time.Millisecond }, false},
		{"batch above frame", func(c *Config) { c.MaxBatchBytes = c.MaxFrameBytes }, false},
		{"duplicate peer", func(c *Config) { c.Peers = []string{"a", "a"} }, false},
		{"zeros mean defaults", func(c *Config) { *c = Config{NodeID: "n", ListenAddr: "x"} }, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := good
			tt.mod(&c)
			if err := c.Validate(); (err == nil) != tt.ok {
				t.Fatalf("Validate() = %v, want ok=%v", err, tt.ok)
			}
		})
	}
}

// TestCloseReleasesGoroutines: replicas that synced over TCP leave no
// goroutine behind after Close, and Close twice is harmless.
func TestCloseReleasesGoroutines(t *testing.T) {
	before := runtime.NumGoroutine()
	a, b := twoTCPReplicas(t, nil)
	if err := a.SetRegister(context.Background(), "k", []byte("v")); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, ok := b.Register("k"); ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no sync")
		}
		time.Sleep(5 * time.Millisecond) // polling the replica, not standing in for work
	}
	for _, r := range []*Replica{a, b, a} {
		if err := r.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if err := a.SetRegister(context.Background(), "k", nil); !errors.Is(err, ErrClosed) {
		t.Fatalf("update after Close: %v", err)
	}
	for runtime.NumGoroutine() > before {
		if time.Now().After(deadline) {
			t.Fatalf("%d goroutines before, %d after Close", before, runtime.NumGoroutine())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestSendToDeadPeerDoesNotBlock: frames to an address nobody listens on
// are dropped without blocking the caller.
func TestSendToDeadPeerDoesNotBlock(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().String()
	ln.Close()
	tc := DefaultTCPConfig("127.0.0.1:0")
	tc.QueueFrames = 4
	tr, err := NewTCPTransport(tc)
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	tr.Start(func([]byte) {})
	start := time.Now()
	frame := encodeFrame(&message{kind: kindAck})
	for i := 0; i < 1000; i++ {
		tr.Send(context.Background(), dead, frame) // errors (queue full) are expected
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("1000 sends to a dead peer took %v", d)
	}
}
