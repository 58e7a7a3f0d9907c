package amst

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestFrameDecoderRejects(t *testing.T) {
	valid := encodeTestFrame(frameData, 0, 3, []byte("payload"))
	corrupt := func(f func(b []byte)) []byte {
		b := append([]byte(nil), valid...)
		f(b)
		return b
	}
	tests := []struct {
		name string
		in   []byte
		want string
	}{
		{"short header", valid[:10], "EOF"},
		{"short payload", valid[:len(valid)-1], "unexpected EOF"},
		{"bad checksum", corrupt(func(b []byte) { b[len(b)-1] ^= 1 }), "checksum"},
		{"seq flipped", corrupt(func(b []byte) { b[15] ^= 1 }), "checksum"},
		{"unknown type", corrupt(func(b []byte) { b[0] = 99 }), "unknown frame type"},
		{"reserved set", corrupt(func(b []byte) { b[2] = 1 }), "reserved"},
		{"flags on data", corrupt(func(b []byte) { b[1] = flagEnd }), "flags"},
		{"too long", corrupt(func(b []byte) { b[4] = 0x7f }), "exceeds the limit"},
		{"ack wrong size", encodeTestFrame(frameAck, 0, 0, []byte{1, 2, 3}), "ack payload"},
		{"ack with seq", encodeTestFrame(frameAck, 0, 5, make([]byte, 16)), "sequence number"},
		{"fin with payload", encodeTestFrame(frameFin, 0, 5, []byte{1}), "fin frame"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hdr := make([]byte, frameHeaderLen)
			_, _, err := readFrame(bytes.NewReader(tt.in), hdr, 1<<10, func(n int) []byte { return make([]byte, n) })
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v, want one containing %q", err, tt.want)
			}
		})
	}
}

func TestHandshakeRefusals(t *testing.T) {
	l, err := Listen(context.Background(), "127.0.0.1:0", testConfig(1, nil), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	addr := l.Addr().String()
	exchange := func(t *testing.T, req []byte) ([]byte, error) {
		t.Helper()
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.Write(req); err != nil {
			return nil, err
		}
		return io.ReadAll(c)
	}
	base := handshakeRequest{version: ProtocolVersion, kind: kindJoin, maxPayload: 64 << 10, window: 16}
	t.Run("version mismatch", func(t *testing.T) {
		r := base
		r.version = ProtocolVersion + 1
		r.kind = kindNew
		reply, err := exchange(t, r.encode())
		if err != nil {
			t.Fatal(err)
		}
		_, derr := decodeHandshakeReply(reply)
		var re *RefusedError
		if !errors.As(derr, &re) || re.Status != statusBadVersion || !strings.Contains(derr.Error(), "protocol version") {
			t.Fatalf("reply error %v, want a version refusal", derr)
		}
	})
	t.Run("stranger session", func(t *testing.T) {
		r := base
		r.session = SessionID{1, 2, 3}
		reply, err := exchange(t, r.encode())
		if err != nil {
			t.Fatal(err)
		}
		_, derr := decodeHandshakeReply(reply)
		var re *RefusedError
		if !errors.As(derr, &re) || re.Status != statusUnknownSession {
			t.Fatalf("reply error %v, want unknown session", derr)
		}
	})
	t.Run("garbage gets a closed connection", func(t *testing.T) {
		reply, _ := exchange(t, []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n....................."))
		if len(reply) != 0 {
			t.Fatalf("garbage got a %d-byte answer", len(reply))
		}
	})
	t.Run("listener survives and still accepts", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		s, err := Dial(ctx, addr, testConfig(1, nil), nil)
		if err != nil {
			t.Fatal(err)
		}
		s.Close()
	})
}

func TestDialRefusedByVersion(t *testing.T) {
	// A fake listener that speaks version 2 answers every request with a refusal.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		io.ReadFull(c, make([]byte, handshakeRequestLen))
		r := handshakeReply{version: 2, status: statusBadVersion, maxPayload: 1 << 20, window: 64}
		c.Write(r.encode())
	}()
	_, err = Dial(context.Background(), ln.Addr().String(), testConfig(1, nil), nil)
	if err == nil || !strings.Contains(err.Error(), "version 2") {
		t.Fatalf("Dial error %v, want a version refusal naming version 2", err)
	}
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name string
		mod  func(c *Config)
		want string
	}{
		{"zero is default", func(c *Config) {}, ""},
		{"negative streams", func(c *Config) { c.Streams = -1 }, "Streams -1"},
		{"min above max", func(c *Config) { c.MinStreams, c.MaxStreams = 10, 5 }, "MinStreams 10"},
		{"tiny frame", func(c *Config) { c.FrameSize = 100 }, "FrameSize 100"},
		{"window below two frames", func(c *Config) { c.FrameSize, c.ReceiveWindow = 1<<20, 1<<20 }, "ReceiveWindow"},
		{"unknown congestion", func(c *Config) { c.Congestion = "vegas" }, `Congestion "vegas"`},
		{"negative pacing", func(c *Config) { c.PacingRate = -1 }, "PacingRate"},
		{"measure too fast", func(c *Config) { c.MeasureInterval = time.Millisecond }, "MeasureInterval"},
		{"gain above one", func(c *Config) { c.TuneGain = 2 }, "TuneGain 2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var c Config
			tt.mod(&c)
			err := c.Validate()
			if tt.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Validate() = %v, want an error naming %q", err, tt.want)
			}
		})
	}
}

func TestModeDetectorHysteresis(t *testing.T) {
	const gbit = 1e9
	tests := []struct {
		name    string
		samples []struct {
			rtt time.Duration
			bw  float64
		}
		want     Mode
		switches int
	}{
		{"datacenter", samples(ms(1), 10*gbit, 3), ModeDatacenter, 0},
		{"internet by rtt", samples(ms(80), 10*gbit, 3), ModeInternet, 0},
		{"internet by bandwidth", samples(ms(1), 0.5*gbit, 3), ModeInternet, 0},
		{"hybrid", samples(ms(20), 2*gbit, 3), ModeHybrid, 0},
		{"one outlier does not flip", append(samples(ms(1), 10*gbit, 3), samples(ms(80), gbit, 2)...), ModeDatacenter, 0},
		{"three agreeing samples switch", append(samples(ms(1), 10*gbit, 3), samples(ms(80), gbit, 3)...), ModeInternet, 1},
		{"interrupted streak restarts", append(append(samples(ms(1), 10*gbit, 1), samples(ms(80), gbit, 2)...), append(samples(ms(1), 10*gbit, 1), samples(ms(80), gbit, 2)...)...), ModeDatacenter, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := NewModeDetector(3)
			for _, s := range tt.samples {
				d.Observe(s.rtt, s.bw)
			}
			if d.Mode() != tt.want || d.Switches() != tt.switches {
				t.Fatalf("mode %q after %d switches, want %q after %d", d.Mode(), d.Switches(), tt.want, tt.switches)
			}
		})
	}
}

func ms(n float64) time.Duration { return time.Duration(n * float64(time.Millisecond)) }

func samples(rtt time.Duration, bw float64, n int) []struct {
	rtt time.Duration
	bw  float64
} {
	out := make([]struct {
		rtt time.Duration
		bw  float64
	}, n)
	for i := range out {
		out[i].rtt, out[i].bw = rtt, bw
	}
	return out
}

// goodputModel is a path where each stream is capped (loss-limited CUBIC)
// and the link saturates: goodput = min(n*perStream, link).
func goodputModel(perStream, link float64) func(int) float64 {
	return func(n int) float64 { return min(float64(n)*perStream, link) }
}

func TestClimberFindsTheKnee(t *testing.T) {
	tests := []struct {
		name         string
		start        int
		model        func(int) float64
		lo, hi       int
		wantGoodput  float64
		maxFinalSize int
	}{
		{"loss-limited streams, knee at 40", 8, goodputModel(25, 1000), 1, 512, 1000, 80},
		{"saturated from the start", 16, goodputModel(1000, 1000), 1, 512, 1000, 16},
		{"knee at 3 from 16", 16, goodputModel(100, 300), 1, 512, 300, 6},
		{"respects max", 4, goodputModel(1, 1000), 1, 20, 20, 20},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newClimber(tt.lo, tt.hi, tt.start, 0.05)
			n := c.n
			for i := 0; i < 200; i++ {
				n = c.next(tt.model(n))
				if n < tt.lo || n > tt.hi {
					t.Fatalf("count %d outside [%d, %d]", n, tt.lo, tt.hi)
				}
			}
			// Over the last cycle the climber must sit at full goodput,
			// apart from its brief downward probes.
			best, worstN := 0.0, 0
			for i := 0; i < 20; i++ {
				n = c.next(tt.model(n))
				best = max(best, tt.model(n))
				worstN = max(worstN, n)
			}
			if best < tt.wantGoodput*0.95 {
				t.Fatalf("best goodput %v over the last cycle, want %v", best, tt.wantGoodput)
			}
			if worstN > tt.maxFinalSize {
				t.Fatalf("uses up to %d streams, want at most %d", worstN, tt.maxFinalSize)
			}
		})
	}
}

func TestDetectRDMA(t *testing.T) {
	dir := t.TempDir()
	devs, err := DetectRDMA(dir + "/missing")
	if err != nil || len(devs) != 0 {
		t.Fatalf("missing dir: %v, %v", devs, err)
	}
	tr, reason := SelectTransport(NewMemTransport(), nil, dir+"/missing")
	if tr.Name() != "tcp" || !strings.Contains(reason, "no RDMA device") {
		t.Fatalf("fallback = %s (%s)", tr.Name(), reason)
	}
	if tr, reason := SelectTransport(nil, nil, ""); tr.Name() != "tcp" || !strings.Contains(reason, "no RDMA backend") {
		t.Fatalf("no backend = %s (%s)", tr.Name(), reason)
	}
	if err := mkdirAll(dir+"/mlx5_0/ports/1", dir+"/mlx5_0/ports/2"); err != nil {
		t.Fatal(err)
	}
	devs, err = DetectRDMA(dir)
	if err != nil || len(devs) != 1 || devs[0].Name != "mlx5_0" || len(devs[0].Ports) != 2 {
		t.Fatalf("fake sysfs: %+v, %v", devs, err)
	}
	rdma := &namedTransport{Transport: NewMemTransport(), name: "rdma"}
	if tr, _ := SelectTransport(rdma, nil, dir); tr.Name() != "rdma" {
		t.Fatalf("with a device and a backend: %s", tr.Name())
	}
	// This machine: report what is there, whatever it is.
	real, err := DetectRDMA("")
	t.Logf("RDMA devices on this machine: %v (err %v)", real, err)
}

type namedTransport struct {
	Transport
	name string
}

func (n *namedTransport) Name() string { return n.name }

func mkdirAll(dirs ...string) error {
	for _, d := range dirs {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	return nil
}

// TestClimberIgnoresNoise runs the climb on paths whose goodput windows
// vary by up to ±noise at random (as 2-s windows do on WAN paths). A single
// lucky window must not move the count: past the knee the climb must stay
// near it (brief probes aside) instead of ratcheting towards many more
// streams, and it must still reach full goodput.
func TestClimberIgnoresNoise(t *testing.T) {
	tests := []struct {
		name        string
		start       int
		model       func(int) float64
		noise       float64
		maxMedian   int     // median stream count over the last 100 windows
		wantGoodput float64 // median noiseless goodput over the last 100 windows
	}{
		{"saturated, ±10%", 16, goodputModel(1000, 1000), 0.10, 24, 1000},
		{"saturated, ±20%", 8, goodputModel(1000, 1000), 0.20, 12, 1000},
		{"knee at 40, ±10%", 8, goodputModel(25, 1000), 0.10, 60, 1000},
		{"knee at 40, ±20%", 8, goodputModel(25, 1000), 0.20, 60, 1000},
	}
	for _, tt := range tests {
		for seed := range 5 {
			t.Run(tt.name+"/"+itoa(seed), func(t *testing.T) {
				r := rand.New(rand.NewPCG(uint64(seed), 11))
				c := newClimber(1, 256, tt.start, 0.05)
				n := c.n
				measure := func(n int) float64 { return tt.model(n) * (1 + tt.noise*(2*r.Float64()-1)) }
				for i := 0; i < 300; i++ {
					n = c.next(measure(n))
				}
				var counts []int
				var got []float64
				for i := 0; i < 100; i++ {
					n = c.next(measure(n))
					counts = append(counts, n)
					got = append(got, tt.model(n))
				}
				slices.Sort(counts)
				slices.Sort(got)
				t.Logf("streams: median %d, 90th percentile %d", counts[50], counts[90])
				if counts[50] > tt.maxMedian {
					t.Errorf("median %d streams, want at most %d", counts[50], tt.maxMedian)
				}
				if med := got[len(got)/2]; med < tt.wantGoodput*0.95 {
					t.Errorf("median goodput %v, want %v", med, tt.wantGoodput)
				}
			})
		}
	}
}
