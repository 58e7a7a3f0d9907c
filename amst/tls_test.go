package amst

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"io"
	"math/big"
	mrand "math/rand/v2"
	"net"
	"testing"
	"time"
)

type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pool *x509.CertPool
}

func newTestCA(t *testing.T, name string) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		KeyUsage:              x509.KeyUsageCertSign,
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &testCA{cert: cert, key: key, pool: pool}
}

func (ca *testCA) issue(t *testing.T, name string, usage x509.ExtKeyUsage) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: name},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{usage},
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		DNSNames:     []string{name},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

func TestTLSMutualAuth(t *testing.T) {
	ca := newTestCA(t, "amst test CA")
	other := newTestCA(t, "stranger CA")
	serverTLS := &tls.Config{
		Certificates: []tls.Certificate{ca.issue(t, "server", x509.ExtKeyUsageServerAuth)},
		ClientCAs:    ca.pool,
		ClientAuth:   tls.RequireAndVerifyClientCert,
	}
	clientTLS := func(cert tls.Certificate) *tls.Config {
		return &tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: ca.pool, ServerName: "server"}
	}
	cfg := testConfig(4, nil)
	cfg.TLS = serverTLS
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	l, err := Listen(ctx, "127.0.0.1:0", cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	addr := l.Addr().String()

	t.Run("trusted client gets a session", func(t *testing.T) {
		ccfg := testConfig(4, nil)
		ccfg.TLS = clientTLS(ca.issue(t, "client", x509.ExtKeyUsageClientAuth))
		client, err := Dial(ctx, addr, ccfg, nil)
		if err != nil {
			t.Fatal(err)
		}
		server, err := l.Accept(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer server.Close()
		client.mu.Lock()
		tc, ok := client.streams[0].conn.(*tls.Conn)
		client.mu.Unlock()
		if !ok || tc.ConnectionState().Version != tls.VersionTLS13 {
			t.Fatalf("stream is not TLS 1.3: %T", client.streams[0].conn)
		}
		data := randomBytes(2<<20, 5)
		go func() { client.Write(data); client.Close() }()
		got, err := io.ReadAll(server)
		if err != nil || sha256.Sum256(got) != sha256.Sum256(data) {
			t.Fatalf("received %d bytes (err %v), want %d identical", len(got), err, len(data))
		}
	})
	refused := []struct {
		name string
		tls  *tls.Config
	}{
		{"certificate from another CA", clientTLS(other.issue(t, "client", x509.ExtKeyUsageClientAuth))},
		{"no certificate", &tls.Config{RootCAs: ca.pool, ServerName: "server", GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &tls.Certificate{}, nil }}},
	}
	for _, tt := range refused {
		t.Run(tt.name, func(t *testing.T) {
			ccfg := testConfig(1, nil)
			ccfg.TLS = tt.tls
			s, err := Dial(ctx, addr, ccfg, nil)
			if err == nil {
				s.Close()
				t.Fatal("Dial succeeded without a trusted client certificate")
			}
			actx, acancel := context.WithTimeout(ctx, 100*time.Millisecond)
			defer acancel()
			if s, err := l.Accept(actx); err == nil {
				s.Close()
				t.Fatal("listener accepted a session from an untrusted client")
			}
		})
	}
	t.Run("killed connections are redialled under TLS", func(t *testing.T) {
		kt := &killTransport{Transport: &TCPTransport{}}
		ccfg := testConfig(8, kt)
		ccfg.TLS = clientTLS(ca.issue(t, "client", x509.ExtKeyUsageClientAuth))
		client, err := Dial(ctx, addr, ccfg, nil)
		if err != nil {
			t.Fatal(err)
		}
		server, err := l.Accept(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer server.Close()
		data := randomBytes(8<<20, 11)
		go func() { client.Write(data); client.Close() }()
		go func() {
			r := mrand.New(mrand.NewPCG(3, 4))
			for i := 0; i < 4; i++ {
				time.Sleep(10 * time.Millisecond)
				kt.killRandom(r)
			}
		}()
		got, err := io.ReadAll(server)
		if err != nil || sha256.Sum256(got) != sha256.Sum256(data) {
			t.Fatalf("received %d bytes (err %v), want %d identical", len(got), err, len(data))
		}
	})
	t.Run("plain TCP client", func(t *testing.T) {
		s, err := Dial(ctx, addr, testConfig(1, nil), nil)
		if err == nil {
			s.Close()
			t.Fatal("plain client got a session from a TLS listener")
		}
	})
	t.Run("listener without client auth is refused", func(t *testing.T) {
		bad := testConfig(1, nil)
		bad.TLS = &tls.Config{Certificates: serverTLS.Certificates}
		if l, err := Listen(ctx, "127.0.0.1:0", bad, nil); err == nil {
			l.Close()
			t.Fatal("Listen accepted a TLS config without client authentication")
		}
	})
}
