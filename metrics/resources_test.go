package metrics

import (
	"errors"
	"math"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// fakeClock is a manual clock for deterministic tests.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{t: time.Unix(1_700_000_000, 0)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// fakeSources are counters a test moves by hand.
type fakeSources struct {
	cpu        time.Duration
	rss, total uint64
	io, net    uint64
	goroutines int
	procs      int
	ioErr      error
}

func (f *fakeSources) sources() resourceSources {
	return resourceSources{
		cpu:        func() (time.Duration, error) { return f.cpu, nil },
		rss:        func() (uint64, error) { return f.rss, nil },
		memTotal:   func() (uint64, error) { return f.total, nil },
		ioOps:      func() (uint64, error) { return f.io, f.ioErr },
		netBytes:   func() (uint64, error) { return f.net, nil },
		goroutines: func() int { return f.goroutines },
		maxProcs:   func() int { return f.procs },
	}
}

func TestResourceSamplerArithmetic(t *testing.T) {
	clock := newFakeClock()
	f := &fakeSources{procs: 2, total: 1 << 30, goroutines: 10}
	cfg := DefaultResourceConfig()
	cfg.Interval = 0
	cfg.Now = clock.Now
	reg := prometheus.NewRegistry()
	m := New(reg)
	obs := &recordingObserver{}
	cfg.Observer = obs
	s := newResourceSampler(m, cfg, f.sources())
	defer s.Close()

	// 10 s later: 5 s of CPU on 2 procs = 25%; RSS 256 MiB of 1 GiB = 25%;
	// 2.5e9 bytes = 2.5e8 B/s of 1e9 = 25%; 25000 ops = 2500 IOPS of 10K =
	// 25%; 2500 goroutines of 10K = 25%.
	clock.Advance(10 * time.Second)
	f.cpu = 5 * time.Second
	f.rss = 256 << 20
	f.net = 2_500_000_000
	f.io = 25_000
	f.goroutines = 2500
	got, err := s.Sample()
	if err != nil {
		t.Fatal(err)
	}
	for name, v := range map[string]float64{
		"cpu": got.CPUPercent, "memory": got.MemoryPercent, "network": got.NetworkPercent,
		"disk_io": got.DiskIOPercent, "goroutines": got.GoroutinesPercent,
	} {
		if math.Abs(v-25) > 1e-9 {
			t.Errorf("%s = %v%%, want 25%%", name, v)
		}
		if g := testutil.ToFloat64(m.ResourceUtilization.WithLabelValues(name)); math.Abs(g-25) > 1e-9 {
			t.Errorf("gauge %s = %v, want 25", name, g)
		}
		if obs.last[name] != v {
			t.Errorf("observer saw %s = %v, want %v", name, obs.last[name], v)
		}
	}
	if got.Elapsed != 10*time.Second || got.IOPS != 2500 || got.NetBytesPerSecond != 2.5e8 {
		t.Errorf("raw readings %+v", got)
	}

	// A counter that goes backwards (source restarted) gives no rate for
	// that sample and rebases; the next sample is exact again.
	clock.Advance(5 * time.Second)
	f.net = 1000
	f.cpu = 6 * time.Second // 1 s over 5 s on 2 procs = 10%
	got, err = s.Sample()
	if err != nil {
		t.Fatal(err)
	}
	if !math.IsNaN(got.NetworkPercent) || math.Abs(got.CPUPercent-10) > 1e-9 {
		t.Errorf("after reset: network %v (want NaN), cpu %v (want 10)", got.NetworkPercent, got.CPUPercent)
	}
	clock.Advance(time.Second)
	f.net = 1000 + 1e9 // 1e9 B/s = 100%
	got, _ = s.Sample()
	if math.Abs(got.NetworkPercent-100) > 1e-9 {
		t.Errorf("network after rebase = %v, want 100", got.NetworkPercent)
	}

	// No time elapsed: rates are undefined, the baseline is kept.
	f.cpu += time.Second
	got, _ = s.Sample()
	if !math.IsNaN(got.CPUPercent) || !math.IsNaN(got.DiskIOPercent) {
		t.Errorf("zero interval gave rates cpu %v disk %v", got.CPUPercent, got.DiskIOPercent)
	}
	clock.Advance(time.Second)
	got, _ = s.Sample()
	if math.Abs(got.CPUPercent-50) > 1e-9 {
		t.Errorf("cpu after zero interval = %v, want 50 (1 s over 1 s on 2 procs)", got.CPUPercent)
	}
	if err := CheckLabelValues(reg); err != nil {
		t.Fatal(err)
	}
}

func TestResourceSamplerSourceErrors(t *testing.T) {
	clock := newFakeClock()
	f := &fakeSources{procs: 1, total: 100, ioErr: errors.New("permission denied")}
	cfg := DefaultResourceConfig()
	cfg.Interval = 0
	cfg.Now = clock.Now
	m := New(nil)
	s := newResourceSampler(m, cfg, f.sources())
	if err, ok := s.Unavailable()[ResourceDiskIO]; !ok || err == nil {
		t.Fatalf("disk_io not reported unavailable: %v", s.Unavailable())
	}
	clock.Advance(time.Second)
	got, err := s.Sample()
	if err != nil {
		t.Fatalf("a disabled source must not fail every sample: %v", err)
	}
	if !math.IsNaN(got.DiskIOPercent) {
		t.Errorf("disabled disk_io = %v", got.DiskIOPercent)
	}
	if n := testutil.CollectAndCount(m.ResourceUtilization); n != 4 {
		t.Errorf("%d gauges set, want 4 (all but disk_io)", n)
	}
}

type recordingObserver struct {
	mu   sync.Mutex
	last map[string]float64
}

func (o *recordingObserver) ObserveUtilization(resource string, pct float64) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.last == nil {
		o.last = map[string]float64{}
	}
	o.last[resource] = pct
}

// TestResourceSamplerRealProcess reads this process's /proc and rusage.
func TestResourceSamplerRealProcess(t *testing.T) {
	if _, err := os.Stat("/proc/self/statm"); err != nil {
		t.Skip("no procfs")
	}
	cfg := DefaultResourceConfig()
	cfg.Interval = 0
	reg := prometheus.NewRegistry()
	s, err := NewResourceSampler(New(reg), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	// Burn CPU for a while so the CPU share is visibly positive.
	deadline := time.Now().Add(150 * time.Millisecond)
	x := 0.0
	for time.Now().Before(deadline) {
		x += math.Sqrt(x + 1)
	}
	got, err := s.Sample()
	if err != nil {
		t.Fatalf("sample: %v (unavailable: %v)", err, s.Unavailable())
	}
	t.Logf("real sample: %+v (burned %v)", got, x > 0)
	if !(got.CPUPercent > 0) {
		t.Errorf("cpu %v%% after burning CPU", got.CPUPercent)
	}
	if !(got.MemoryPercent > 0 && got.MemoryPercent < 100) || got.RSSBytes == 0 {
		t.Errorf("memory %v%% (rss %d of %d)", got.MemoryPercent, got.RSSBytes, got.MemoryCapacity)
	}
	if got.Goroutines < 1 || got.GoroutinesPercent <= 0 {
		t.Errorf("goroutines %d (%v%%)", got.Goroutines, got.GoroutinesPercent)
	}
	if _, off := s.Unavailable()[ResourceDiskIO]; !off && !(got.IOPS > 0) {
		// The sampler itself read /proc files since the baseline.
		t.Errorf("iops %v although the sampler made read calls", got.IOPS)
	}
	if err := CheckLabelValues(reg); err != nil {
		t.Fatal(err)
	}
}

func TestResourceSamplerBackgroundAndClose(t *testing.T) {
	cfg := DefaultResourceConfig()
	cfg.Interval = time.Millisecond
	m := New(nil)
	f := &fakeSources{procs: 1, total: 100, rss: 50}
	s := newResourceSampler(m, cfg, f.sources())
	// The background goroutine sets the memory gauge; wait for it without
	// sleeping blindly.
	deadline := time.Now().Add(5 * time.Second)
	for testutil.CollectAndCount(m.ResourceUtilization) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("background sampler never sampled")
		}
		time.Sleep(time.Millisecond)
	}
	if got := testutil.ToFloat64(m.ResourceUtilization.WithLabelValues(ResourceMemory)); got != 50 {
		t.Errorf("memory = %v, want 50", got)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestResourceConfigValidate(t *testing.T) {
	if err := DefaultResourceConfig().Validate(); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		mutate func(*ResourceConfig)
		want   string
	}{
		{"negative interval", func(c *ResourceConfig) { c.Interval = -time.Second }, "Interval -1s"},
		{"zero goroutine limit", func(c *ResourceConfig) { c.GoroutineLimit = 0 }, "GoroutineLimit 0"},
		{"NaN network", func(c *ResourceConfig) { c.NetworkCapacityBytesPerSecond = math.NaN() }, "NetworkCapacityBytesPerSecond NaN"},
		{"infinite iops", func(c *ResourceConfig) { c.DiskIOPSCapacity = math.Inf(1) }, "DiskIOPSCapacity +Inf"},
		{"no proc", func(c *ResourceConfig) { c.ProcDir = "" }, "ProcDir"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := DefaultResourceConfig()
			tt.mutate(&cfg)
			err := cfg.Validate()
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Validate = %v, want %q", err, tt.want)
			}
			if _, err := NewResourceSampler(nil, cfg); err == nil {
				t.Fatal("NewResourceSampler accepted an invalid config")
			}
		})
	}
}

func TestProcParsers(t *testing.T) {
	netdev := `Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo:  786851    4170    0    0    0     0          0         0   786851    4170    0    0    0     0       0          0
  eth0: 1000   14012    0    0    0     0          0         0  234    9711    0    0    0     0       0          0
  eth1: 5   1    0    0    0     0          0         0  5    1    0    0    0     0       0          0
`
	if got, err := parseNetDevBytes([]byte(netdev)); err != nil || got != 1244 {
		t.Errorf("net/dev = %d, %v; want 1244", got, err)
	}
	io := "rchar: 6976\nwchar: 0\nsyscr: 10\nsyscw: 7\nread_bytes: 0\n"
	if got, err := parseProcIOOps([]byte(io)); err != nil || got != 17 {
		t.Errorf("io = %d, %v; want 17", got, err)
	}
	if got, err := parseMeminfoTotal([]byte("MemTotal:       24683664 kB\nMemFree: 1 kB\n")); err != nil || got != 24683664*1024 {
		t.Errorf("meminfo = %d, %v", got, err)
	}
	if got, err := parseStatmRSSPages([]byte("765 440 412 5 0 123 0\n")); err != nil || got != 440 {
		t.Errorf("statm = %d, %v", got, err)
	}
	bad := []struct {
		name string
		fn   func([]byte) (uint64, error)
		in   string
	}{
		{"netdev empty", parseNetDevBytes, ""},
		{"netdev short", parseNetDevBytes, "eth0: 1 2 3"},
		{"netdev letters", parseNetDevBytes, "eth0: x 0 0 0 0 0 0 0 y 0 0 0 0 0 0 0"},
		{"netdev overflow", parseNetDevBytes, "eth0: 18446744073709551615 0 0 0 0 0 0 0 1 0 0 0 0 0 0 0"},
		{"io missing syscw", parseProcIOOps, "syscr: 1\n"},
		{"io bad", parseProcIOOps, "syscr: -1\nsyscw: 1\n"},
		{"meminfo missing", parseMeminfoTotal, "MemFree: 1 kB\n"},
		{"meminfo unit", parseMeminfoTotal, "MemTotal: 1 MB\n"},
		{"meminfo overflow", parseMeminfoTotal, "MemTotal: 18446744073709551615 kB\n"},
		{"statm short", parseStatmRSSPages, "12"},
		{"statm bad", parseStatmRSSPages, "1 x"},
	}
	for _, tt := range bad {
		if got, err := tt.fn([]byte(tt.in)); err == nil {
			t.Errorf("%s: parsed %d from %q", tt.name, got, tt.in)
		}
	}
}

// FuzzProcParsers feeds arbitrary bytes to the /proc parsers: an error is
// fine, a panic is not, and a success must be consistent.
func FuzzProcParsers(f *testing.F) {
	f.Add([]byte("MemTotal:       24683664 kB\n"))
	f.Add([]byte("765 440 412 5 0 123 0\n"))
	f.Add([]byte("rchar: 6976\nwchar: 0\nsyscr: 10\nsyscw: 0\n"))
	f.Add([]byte("  eth0: 222011758   14012    0    0    0     0          0         0  1033009    9711    0    0    0     0       0          0\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		if v, err := parseMeminfoTotal(b); err == nil && v%1024 != 0 {
			t.Fatalf("MemTotal %d is not whole kB", v)
		}
		_, _ = parseStatmRSSPages(b)
		_, _ = parseProcIOOps(b)
		_, _ = parseNetDevBytes(b)
	})
}
