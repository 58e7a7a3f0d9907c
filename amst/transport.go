package amst

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/dwcp/dwcp/metrics"
)

// Transport carries the connections of a session. The production
// implementation is TCPTransport; MemTransport runs everything in memory for
// tests. An RDMA backend would implement Transport with a reliable, ordered
// byte stream per connection (for example rsocket or a verbs queue pair
// wrapped as net.Conn) and return "rdma" from Name.
type Transport interface {
	// Name is the value of the metrics "transport" label: tcp or rdma.
	Name() string
	// Listen opens a listener on addr.
	Listen(ctx context.Context, addr string) (net.Listener, error)
	// Dial opens one connection to addr.
	Dial(ctx context.Context, addr string) (net.Conn, error)
}

// TCPTransport is the kernel-TCP transport with per-socket options.
type TCPTransport struct {
	// Congestion is the TCP_CONGESTION algorithm of each socket ("" keeps
	// the system default).
	Congestion string
	// SocketBuffer sets SO_SNDBUF/SO_RCVBUF when positive.
	SocketBuffer int
	// UnsentLimit sets TCP_NOTSENT_LOWAT when positive: a socket accepts
	// more data only while less than this many bytes wait unsent in it.
	// It keeps the kernel from queueing seconds of data in one stream, so
	// that readiness-based striping sees which streams really drain.
	UnsentLimit int
	// KeepAlive is the TCP keep-alive period (0 means 15 s).
	KeepAlive time.Duration
}

// Name returns "tcp".
func (t *TCPTransport) Name() string { return metrics.TransportTCP }

func (t *TCPTransport) keepAlive() time.Duration {
	if t.KeepAlive == 0 {
		return 15 * time.Second
	}
	return t.KeepAlive
}

// Dial connects to addr with TCP_NODELAY and the configured socket options.
func (t *TCPTransport) Dial(ctx context.Context, addr string) (net.Conn, error) {
	d := net.Dialer{KeepAlive: t.keepAlive()}
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	if err := t.configure(c); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// Listen listens on addr; accepted sockets get the configured options.
func (t *TCPTransport) Listen(ctx context.Context, addr string) (net.Listener, error) {
	lc := net.ListenConfig{KeepAlive: t.keepAlive()}
	l, err := lc.Listen(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	return &tcpListener{Listener: l, t: t}, nil
}

func (t *TCPTransport) configure(c net.Conn) error {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return nil
	}
	if err := tc.SetNoDelay(true); err != nil {
		return err
	}
	if t.SocketBuffer > 0 {
		if err := tc.SetReadBuffer(t.SocketBuffer); err != nil {
			return err
		}
		if err := tc.SetWriteBuffer(t.SocketBuffer); err != nil {
			return err
		}
	}
	if t.UnsentLimit > 0 {
		if err := setUnsentLimit(tc, t.UnsentLimit); err != nil {
			return fmt.Errorf("amst: set TCP_NOTSENT_LOWAT %d: %w", t.UnsentLimit, err)
		}
	}
	if t.Congestion != "" {
		if err := setCongestion(tc, t.Congestion); err != nil {
			return fmt.Errorf("amst: set congestion control %q: %w", t.Congestion, err)
		}
	}
	return nil
}

type tcpListener struct {
	net.Listener
	t *TCPTransport
}

func (l *tcpListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if err := l.t.configure(c); err != nil {
			// A socket we cannot configure is dropped; the dialler retries.
			c.Close()
			continue
		}
		return c, nil
	}
}

// CongestionControl returns the TCP congestion control algorithm in use on
// conn (a *net.TCPConn, possibly under TLS).
func CongestionControl(conn net.Conn) (string, error) {
	tc, ok := underlyingTCP(conn)
	if !ok {
		return "", errors.New("amst: not a TCP connection")
	}
	return getCongestion(tc)
}

type netConner interface{ NetConn() net.Conn }

func underlyingTCP(c net.Conn) (*net.TCPConn, bool) {
	for i := 0; i < 4; i++ {
		if tc, ok := c.(*net.TCPConn); ok {
			return tc, true
		}
		nc, ok := c.(netConner)
		if !ok {
			return nil, false
		}
		c = nc.NetConn()
	}
	return nil, false
}

// MemTransport is an in-memory Transport built on net.Pipe: no sockets, no
// kernel, for unit tests. Addresses are arbitrary strings; ":0" or "" picks
// a fresh one. It is safe for concurrent use.
type MemTransport struct {
	mu        sync.Mutex
	listeners map[string]*memListener
	next      int
}

// NewMemTransport returns an empty in-memory network.
func NewMemTransport() *MemTransport {
	return &MemTransport{listeners: make(map[string]*memListener)}
}

// Name returns "tcp": the in-memory network stands in for TCP in tests.
func (m *MemTransport) Name() string { return metrics.TransportTCP }

// Listen registers a listener under addr.
func (m *MemTransport) Listen(ctx context.Context, addr string) (net.Listener, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if addr == "" || addr == ":0" {
		m.next++
		addr = "mem-" + strconv.Itoa(m.next)
	}
	if _, ok := m.listeners[addr]; ok {
		return nil, fmt.Errorf("amst: mem address %q in use", addr)
	}
	l := &memListener{m: m, addr: memAddr(addr), conns: make(chan net.Conn), done: make(chan struct{})}
	m.listeners[addr] = l
	return l, nil
}

// Dial connects to the listener registered under addr.
func (m *MemTransport) Dial(ctx context.Context, addr string) (net.Conn, error) {
	m.mu.Lock()
	l := m.listeners[addr]
	m.mu.Unlock()
	if l == nil {
		return nil, &net.OpError{Op: "dial", Net: "mem", Err: errors.New("connection refused")}
	}
	client, server := net.Pipe()
	select {
	case l.conns <- server:
		return client, nil
	case <-l.done:
		client.Close()
		server.Close()
		return nil, &net.OpError{Op: "dial", Net: "mem", Err: errors.New("connection refused")}
	case <-ctx.Done():
		client.Close()
		server.Close()
		return nil, ctx.Err()
	}
}

type memAddr string

func (a memAddr) Network() string { return "mem" }
func (a memAddr) String() string  { return string(a) }

type memListener struct {
	m     *MemTransport
	addr  memAddr
	conns chan net.Conn
	done  chan struct{}
	once  sync.Once
}

func (l *memListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *memListener) Close() error {
	l.once.Do(func() {
		close(l.done)
		l.m.mu.Lock()
		delete(l.m.listeners, string(l.addr))
		l.m.mu.Unlock()
	})
	return nil
}

func (l *memListener) Addr() net.Addr { return l.addr }

// RDMADevice is an RDMA-capable device found under /sys/class/infiniband.
type RDMADevice struct {
	Name  string
	Ports []string
}

// DefaultRDMASysfs is where Linux lists RDMA devices.
const DefaultRDMASysfs = "/sys/class/infiniband"

// DetectRDMA lists the RDMA devices under sysfsDir (DefaultRDMASysfs when
// empty). A missing directory means no devices and no error.
func DetectRDMA(sysfsDir string) ([]RDMADevice, error) {
	if sysfsDir == "" {
		sysfsDir = DefaultRDMASysfs
	}
	entries, err := os.ReadDir(sysfsDir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var devs []RDMADevice
	for _, e := range entries {
		d := RDMADevice{Name: e.Name()}
		ports, _ := os.ReadDir(filepath.Join(sysfsDir, e.Name(), "ports"))
		for _, p := range ports {
			d.Ports = append(d.Ports, p.Name())
		}
		sort.Strings(d.Ports)
		devs = append(devs, d)
	}
	return devs, nil
}

// SelectTransport picks the transport for a session: rdma when a backend is
// given and DetectRDMA finds a device, otherwise tcp. The returned reason
// says why, for logs. This package ships no RDMA backend (the machines it
// was built on have no RDMA hardware), so with rdma == nil the answer is
// always tcp.
func SelectTransport(rdma Transport, tcp Transport, sysfsDir string) (Transport, string) {
	if tcp == nil {
		tcp = &TCPTransport{}
	}
	if rdma == nil {
		return tcp, "no RDMA backend configured: using TCP"
	}
	devs, err := DetectRDMA(sysfsDir)
	if err != nil {
		return tcp, fmt.Sprintf("RDMA detection failed (%v): using TCP", err)
	}
	if len(devs) == 0 {
		return tcp, "no RDMA device found: using TCP"
	}
	return rdma, fmt.Sprintf("RDMA device %s found: using %s", devs[0].Name, rdma.Name())
}
