package amst

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/dwcp/dwcp/metrics"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func testConfig(streams int, tr Transport) Config {
	cfg := DefaultConfig()
	cfg.Streams = streams
	cfg.Transport = tr
	cfg.FrameSize = 64 << 10
	cfg.ReceiveWindow = 4 << 20
	cfg.MeasureInterval = 50 * time.Millisecond
	cfg.HandshakeTimeout = 5 * time.Second
	cfg.ReconnectTimeout = 10 * time.Second
	cfg.LingerTimeout = 5 * time.Second
	return cfg
}

// pair returns a connected client and server session.
func pair(t testing.TB, cfg Config, m *metrics.Metrics) (client, server *Session, l *Listener) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	addr := "127.0.0.1:0"
	if _, mem := cfg.Transport.(*MemTransport); mem {
		addr = ""
	}
	l, err := Listen(ctx, addr, cfg, m)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	client, err = Dial(ctx, l.Addr().String(), cfg, m)
	if err != nil {
		t.Fatal(err)
	}
	server, err = l.Accept(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close(); server.Close() })
	return client, server, l
}

func randomBytes(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, seed+1))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func transports() map[string]func() Transport {
	return map[string]func() Transport{
		"mem": func() Transport { return NewMemTransport() },
		"tcp": func() Transport { return &TCPTransport{} },
	}
}

func TestRoundTripBytes(t *testing.T) {
	for name, mk := range transports() {
		for _, streams := range []int{1, 4, 16, 64} {
			t.Run(name+"/"+itoa(streams), func(t *testing.T) {
				t.Parallel()
				client, server, _ := pair(t, testConfig(streams, mk()), nil)
				if got := client.Stats().Streams; got != streams {
					t.Fatalf("client has %d streams, want %d", got, streams)
				}
				data := randomBytes(3<<20+12345, uint64(streams))
				want := sha256.Sum256(data)
				errc := make(chan error, 1)
				go func() {
					_, err := client.Write(data[:1000])
					if err == nil {
						_, err = io.Copy(client, bytes.NewReader(data[1000:]))
					}
					if err == nil {
						err = client.Close()
					}
					errc <- err
				}()
				h := sha256.New()
				n, err := io.Copy(h, server)
				if err != nil {
					t.Fatal(err)
				}
				if err := <-errc; err != nil {
					t.Fatal(err)
				}
				if n != int64(len(data)) || !bytes.Equal(h.Sum(nil), want[:]) {
					t.Fatalf("received %d bytes with a different hash, want %d", n, len(data))
				}
				if _, err := server.Read(make([]byte, 1)); err != io.EOF {
					t.Fatalf("Read after end: %v, want io.EOF", err)
				}
			})
		}
	}
}

func itoa(n int) string {
	b := []byte{}
	if n == 0 {
		return "0"
	}
	for n > 0 {
		b = append([]byte{byte('0' + n%10)}, b...)
		n /= 10
	}
	return string(b)
}

func TestMessagesBothDirections(t *testing.T) {
	for name, mk := range transports() {
		t.Run(name, func(t *testing.T) {
			reg := prometheus.NewRegistry()
			m := metrics.New(reg)
			client, server, _ := pair(t, testConfig(4, mk()), m)
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			sizes := []int{0, 1, 100, 64<<10 - 1, 64 << 10, 64<<10 + 1, 300 << 10, 1 << 20}
			var wg sync.WaitGroup
			for _, dir := range []struct{ from, to *Session }{{client, server}, {server, client}} {
				wg.Add(2)
				go func() {
					defer wg.Done()
					for i, n := range sizes {
						if err := dir.from.SendMessage(ctx, randomBytes(n, uint64(i))); err != nil {
							t.Error(err)
							return
						}
					}
				}()
				go func() {
					defer wg.Done()
					for i, n := range sizes {
						got, err := dir.to.ReceiveMessage(ctx)
						if err != nil {
							t.Error(err)
							return
						}
						if !bytes.Equal(got, randomBytes(n, uint64(i))) || got == nil {
							t.Errorf("message %d: got %d bytes, want %d", i, len(got), n)
						}
					}
				}()
			}
			wg.Wait()
			if err := client.Close(); err != nil {
				t.Fatal(err)
			}
			if _, err := server.ReceiveMessage(ctx); err != io.EOF {
				t.Fatalf("ReceiveMessage after peer close: %v, want io.EOF", err)
			}
			total := 0
			for _, n := range sizes {
				total += n
			}
			if got := testutil.ToFloat64(m.AMSTBytes.WithLabelValues(metrics.DirectionReceived)); got != float64(2*total) {
				t.Errorf("amst_bytes_total{received} = %v, want %d", got, 2*total)
			}
			if got := testutil.CollectAndCount(m.MigrationLatency); got != 1 {
				t.Errorf("latency series = %d, want 1", got)
			}
			// Every message of both directions is delivered and acknowledged
			// before Close returns, so each one has a latency sample.
			h, _ := reg.Gather()
			for _, mf := range h {
				if mf.GetName() == "dwcp_v3_migration_latency_seconds" {
					if c := mf.GetMetric()[0].GetHistogram().GetSampleCount(); c < uint64(len(sizes)) {
						t.Errorf("latency samples %d, want >= %d", c, len(sizes))
					}
				}
			}
		})
	}
}

func TestMixedItemsNeedTheRightCall(t *testing.T) {
	client, server, _ := pair(t, testConfig(2, NewMemTransport()), nil)
	ctx := context.Background()
	if _, err := client.Write([]byte("bytes")); err != nil {
		t.Fatal(err)
	}
	if err := client.SendMessage(ctx, []byte("msg")); err != nil {
		t.Fatal(err)
	}
	if _, err := server.ReceiveMessage(ctx); !errors.Is(err, ErrBytesPending) {
		t.Fatalf("ReceiveMessage before bytes: %v, want ErrBytesPending", err)
	}
	buf := make([]byte, 10)
	n, err := server.Read(buf)
	if err != nil || string(buf[:n]) != "bytes" {
		t.Fatalf("Read = %q, %v", buf[:n], err)
	}
	if _, err := server.Read(buf); !errors.Is(err, ErrMessagePending) {
		t.Fatalf("Read before message: %v, want ErrMessagePending", err)
	}
	msg, err := server.ReceiveMessage(ctx)
	if err != nil || string(msg) != "msg" {
		t.Fatalf("ReceiveMessage = %q, %v", msg, err)
	}
}

// killTransport records dialled connections so a test can break them.
type killTransport struct {
	Transport
	mu    sync.Mutex
	conns []net.Conn
}

func (k *killTransport) Dial(ctx context.Context, addr string) (net.Conn, error) {
	c, err := k.Transport.Dial(ctx, addr)
	if err == nil {
		k.mu.Lock()
		k.conns = append(k.conns, c)
		k.mu.Unlock()
	}
	return c, err
}

func (k *killTransport) killRandom(r *rand.Rand) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if len(k.conns) == 0 {
		return
	}
	i := r.IntN(len(k.conns))
	k.conns[i].Close()
	k.conns = append(k.conns[:i], k.conns[i+1:]...)
}

// readAllScribbling reads r to its end with Read into one reused 1 MiB
// buffer (large enough for Read to offer it to the connections, see
// placement), overwriting the buffer after each call: a frame still being
// placed into it, or one aliasing it after Read returned, corrupts the hash.
func readAllScribbling(w io.Writer, r io.Reader) (int64, error) {
	buf := make([]byte, 1<<20)
	scribble := bytes.Repeat([]byte{0xA5}, len(buf))
	var total int64
	for {
		n, err := r.Read(buf)
		w.Write(buf[:n])
		total += int64(n)
		copy(buf, scribble)
		if err == io.EOF {
			return total, nil
		}
		if err != nil {
			return total, err
		}
	}
}

func TestKilledConnectionsLoseNothing(t *testing.T) {
	readers := map[string]func(io.Writer, io.Reader) (int64, error){
		"copy": io.Copy,           // WriteTo: frames handed to the writer
		"read": readAllScribbling, // Read: frames placed into the caller's buffer
	}
	for name, mk := range transports() {
		for _, streams := range []int{1, 8} {
			for rname, readAll := range readers {
				t.Run(name+"/"+itoa(streams)+"/"+rname, func(t *testing.T) {
					kt := &killTransport{Transport: mk()}
					m := metrics.New(nil)
					client, server, _ := pair(t, testConfig(streams, kt), m)
					data := randomBytes(12<<20, 7)
					want := sha256.Sum256(data)
					ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
					defer cancel()
					// Both directions at once: bytes client->server, messages server->client.
					errc := make(chan error, 3)
					msgsDone := make(chan struct{})
					go func() {
						_, err := client.Write(data)
						// Write must not keep referring to data once it
						// returned: overwrite it.
						for i := range data {
							data[i] = 0x5A
						}
						<-msgsDone
						if err == nil {
							err = client.Close()
						}
						errc <- err
					}()
					go func() {
						for i := 0; i < 40; i++ {
							if err := server.SendMessage(ctx, randomBytes(100<<10, uint64(i))); err != nil {
								errc <- err
								return
							}
						}
						errc <- nil
					}()
					go func() {
						defer close(msgsDone)
						for i := 0; i < 40; i++ {
							msg, err := client.ReceiveMessage(ctx)
							if err != nil {
								errc <- err
								return
							}
							if !bytes.Equal(msg, randomBytes(100<<10, uint64(i))) {
								errc <- errors.New("message corrupted")
								return
							}
						}
						errc <- nil
					}()
					stop := make(chan struct{})
					killed := make(chan int)
					go func() {
						r := rand.New(rand.NewPCG(1, 2))
						n := 0
						tick := time.NewTicker(15 * time.Millisecond)
						defer tick.Stop()
						for n < 6 {
							select {
							case <-stop:
								killed <- n
								return
							case <-tick.C:
								kt.killRandom(r)
								n++
							}
						}
						killed <- n
					}()
					h := sha256.New()
					n, err := readAll(h, server)
					close(stop)
					kills := <-killed
					if err != nil {
						t.Fatal(err)
					}
					for i := 0; i < 3; i++ {
						if err := <-errc; err != nil {
							t.Fatal(err)
						}
					}
					if n != int64(len(data)) || !bytes.Equal(h.Sum(nil), want[:]) {
						t.Fatalf("received %d bytes, want %d, hash equal %v", n, len(data), bytes.Equal(h.Sum(nil), want[:]))
					}
					if kills > 0 && testutil.ToFloat64(m.AMSTStreamReconnects) == 0 {
						t.Errorf("%d connections killed but no reconnect counted", kills)
					}
					server.mu.Lock()
					placed := server.placedFrames
					server.mu.Unlock()
					t.Logf("killed %d connections, reconnects %v, frames placed into Read's buffer %d", kills, testutil.ToFloat64(m.AMSTStreamReconnects), placed)
				})
			}
		}
	}
}

// TestReadPlacesIntoBuffer checks that a Read waiting with a large buffer
// gets the next frame read straight into it, and that a small buffer does not.
func TestReadPlacesIntoBuffer(t *testing.T) {
	for _, tt := range []struct {
		name       string
		bufSize    int
		wantPlaced uint64
	}{
		{"large buffer", 1 << 20, 1},
		{"small buffer", 4 << 10, 0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			client, server, _ := pair(t, testConfig(1, NewMemTransport()), nil)
			want := randomBytes(48<<10, 3) // one frame, above pooledMin
			got := make([]byte, 0, len(want))
			done := make(chan error, 1)
			go func() {
				buf := make([]byte, tt.bufSize)
				for len(got) < len(want) {
					n, err := server.Read(buf)
					got = append(got, buf[:n]...)
					if err != nil {
						done <- err
						return
					}
				}
				done <- nil
			}()
			// Send only once Read waits (it offers its buffer if large enough).
			deadline := time.Now().Add(5 * time.Second)
			for {
				server.mu.Lock()
				waiting := server.place != nil || tt.bufSize < pooledMin
				server.mu.Unlock()
				if waiting {
					break
				}
				if time.Now().After(deadline) {
					t.Fatal("Read never offered its buffer")
				}
				time.Sleep(time.Millisecond)
			}
			if _, err := client.Write(want); err != nil {
				t.Fatal(err)
			}
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Fatal("data differs")
			}
			server.mu.Lock()
			placed := server.placedFrames
			server.mu.Unlock()
			if placed != tt.wantPlaced {
				t.Errorf("placed %d frames, want %d", placed, tt.wantPlaced)
			}
		})
	}
}

// TestStuckPlacement checks the decision of a Read waiting for a connection
// that is reading a frame into its buffer: a slow frame is waited for (on a
// slow link a frame may take far longer than a round trip), but once a copy
// of the frame has arrived on another stream the stuck connection is taken
// down after the head-of-line limit, and the session goes on working.
func TestStuckPlacement(t *testing.T) {
	for _, tt := range []struct {
		name        string
		copyArrived bool
		wantDown    bool
	}{
		{"slow frame, no copy elsewhere", false, false},
		{"copy arrived on another stream", true, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			client, server, _ := pair(t, testConfig(2, &TCPTransport{}), nil)
			data := randomBytes(1000, 5)
			if tt.copyArrived {
				if _, err := client.Write(data); err != nil {
					t.Fatal(err)
				}
			}
			var st *stream
			deadline := time.Now().Add(5 * time.Second)
			for st == nil {
				server.mu.Lock()
				if !tt.copyArrived || server.consumed < server.recvNext {
					for _, c := range server.streams {
						if c != nil && !c.dead {
							st = c
							break
						}
					}
				}
				server.mu.Unlock()
				if time.Now().After(deadline) {
					t.Fatal("no stream, or the frame never arrived")
				}
				time.Sleep(time.Millisecond)
			}
			pl := &placement{seq: 0, buf: make([]byte, 1<<20), claimed: st, done: make(chan struct{})}
			returned := make(chan struct{})
			go func() {
				server.awaitPlacement(pl, st)
				close(returned)
			}()
			// The head-of-line limit on loopback is about 100 ms.
			down := false
			for end := time.Now().Add(500 * time.Millisecond); time.Now().Before(end) && !down; time.Sleep(5 * time.Millisecond) {
				server.mu.Lock()
				down = st.dead
				server.mu.Unlock()
			}
			select {
			case <-returned:
				t.Fatal("awaitPlacement returned before the claimer finished")
			default:
			}
			close(pl.done) // the claimer's read ends
			<-returned
			if down != tt.wantDown {
				t.Fatalf("stream taken down: %v, want %v", down, tt.wantDown)
			}
			if !tt.copyArrived {
				if _, err := client.Write(data); err != nil {
					t.Fatal(err)
				}
			}
			got := make([]byte, len(data))
			if _, err := io.ReadFull(server, got); err != nil || !bytes.Equal(got, data) {
				t.Fatalf("after the placement: err %v, data equal %v", err, bytes.Equal(got, data))
			}
		})
	}
}

func TestBackpressureBoundsMemory(t *testing.T) {
	cfg := testConfig(4, &TCPTransport{})
	cfg.FrameSize = 16 << 10
	cfg.ReceiveWindow = 256 << 10
	client, server, _ := pair(t, cfg, nil)
	data := randomBytes(4<<20, 3)
	done := make(chan error, 1)
	go func() {
		_, err := client.Write(data)
		done <- err
	}()
	// Nobody reads: the writer must block once the window is full.
	deadline := time.Now().Add(2 * time.Second)
	for time.Now().Before(deadline) && server.Stats().BytesReceived < uint64(cfg.ReceiveWindow) {
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(100 * time.Millisecond)
	select {
	case err := <-done:
		t.Fatalf("Write finished (%v) although the receiver read nothing", err)
	default:
	}
	if got := server.Stats().BytesReceived; got > uint64(cfg.ReceiveWindow) {
		t.Fatalf("receiver buffered %d bytes, window is %d", got, cfg.ReceiveWindow)
	}
	if got := client.Stats().BytesSent; got > uint64(cfg.ReceiveWindow) {
		t.Fatalf("sender sent %d bytes ahead of the reader, window is %d", got, cfg.ReceiveWindow)
	}
	got := make([]byte, len(data))
	if _, err := io.ReadFull(server, got); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, data) {
		t.Fatal("data differs")
	}
}

func TestPacingLimitsRate(t *testing.T) {
	cfg := testConfig(4, NewMemTransport())
	cfg.PacingRate = 8 << 20 // bytes/s
	client, server, _ := pair(t, cfg, nil)
	data := randomBytes(2<<20, 1)
	start := time.Now()
	go func() { client.Write(data); client.Close() }()
	n, err := io.Copy(io.Discard, server)
	if err != nil || n != int64(len(data)) {
		t.Fatalf("copy: %d, %v", n, err)
	}
	// 2 MiB at 8 MiB/s takes >= 250 ms minus the first frame's head start.
	if el := time.Since(start); el < 200*time.Millisecond {
		t.Fatalf("2 MiB paced at 8 MiB/s took %v", el)
	}
}

func TestStreamCountControl(t *testing.T) {
	cfg := testConfig(0, &TCPTransport{})
	cfg.MaxStreams = 32
	client, server, _ := pair(t, cfg, nil)
	waitStreams := func(want int) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for time.Now().Before(deadline) {
			if client.Stats().Streams == want && server.Stats().Streams == want {
				return
			}
			time.Sleep(5 * time.Millisecond)
		}
		t.Fatalf("streams client %d server %d, want %d", client.Stats().Streams, server.Stats().Streams, want)
	}
	// Loopback RTT is far below 10 ms: the datacenter guess.
	waitStreams(cfg.DatacenterStreams)
	client.SetTargetStreams(12)
	waitStreams(12)
	server.SetTargetStreams(3) // forwarded to the dialler
	waitStreams(3)
	// The session still works after shrinking and growing.
	go func() { client.Write(randomBytes(1<<20, 9)); client.Close() }()
	n, err := io.Copy(io.Discard, server)
	if err != nil || n != 1<<20 {
		t.Fatalf("copy after resizing: %d, %v", n, err)
	}
}

type fixedHint struct{ n int }

func (h fixedHint) StreamHint() int { return h.n }

func TestStreamHinter(t *testing.T) {
	cfg := testConfig(0, NewMemTransport())
	cfg.Hinter = fixedHint{n: 6}
	client, server, _ := pair(t, cfg, nil)
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) && server.Stats().Streams != 6 {
		time.Sleep(5 * time.Millisecond)
	}
	if got := client.Stats().Streams; got != 6 {
		t.Fatalf("streams = %d after hint 6", got)
	}
}

func TestCongestionControlPerSocket(t *testing.T) {
	for _, algo := range []string{"cubic", "bbr"} {
		t.Run(algo, func(t *testing.T) {
			cfg := testConfig(2, nil)
			cfg.Congestion = algo
			client, _, _ := pair(t, cfg, nil)
			client.mu.Lock()
			conn := client.streams[0].conn
			client.mu.Unlock()
			got, err := CongestionControl(conn)
			if err != nil {
				t.Skipf("cannot read TCP_CONGESTION here: %v", err)
			}
			if got != algo {
				t.Fatalf("congestion control %q, want %q", got, algo)
			}
		})
	}
}

func TestCloseTwiceAndAfterClose(t *testing.T) {
	client, server, l := pair(t, testConfig(2, NewMemTransport()), nil)
	if err := client.Close(); err != nil {
		t.Fatal(err)
	}
	if err := client.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := client.Write([]byte("x")); !errors.Is(err, ErrClosed) {
		t.Fatalf("Write after Close: %v", err)
	}
	if err := server.Close(); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestServerFailsWhenPeerVanishes(t *testing.T) {
	kt := &killTransport{Transport: NewMemTransport()}
	cfg := testConfig(2, kt)
	cfg.ReconnectTimeout = 200 * time.Millisecond
	client, server, _ := pair(t, cfg, nil)
	// Stop the client's redials by failing it, then break its connections.
	client.fail(errors.New("test: client gone"))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := server.ReceiveMessage(ctx); err == nil || errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("server ReceiveMessage: %v, want a session failure", err)
	}
}
