package metrics

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"syscall"
	"time"
)

// ResourceConfig configures a ResourceSampler. The capacities are the
// spec's thresholds (section 7.1); utilisation is reported in percent of
// them.
type ResourceConfig struct {
	// Interval between background samples (the spec collects system
	// metrics every 5 s). Zero starts no goroutine: call Sample yourself.
	Interval time.Duration
	// GoroutineLimit is the goroutine count that is 100% (spec: 10K).
	GoroutineLimit int
	// NetworkCapacityBytesPerSecond is the network rate that is 100%
	// (spec: 8 Gbit/s = 1e9 B/s).
	NetworkCapacityBytesPerSecond float64
	// DiskIOPSCapacity is the I/O operations per second that are 100%
	// (spec: 10K IOPS).
	DiskIOPSCapacity float64
	// MemoryCapacityBytes is the memory that is 100%; zero means the
	// machine's MemTotal from /proc/meminfo.
	MemoryCapacityBytes uint64
	// ProcDir is where procfs is mounted.
	ProcDir string
	// NetworkBytes, if set, returns a monotonically increasing count of
	// bytes the process moved over the network (for example the sum of
	// dwcp_v3_amst_bytes_total). When nil the sampler sums received and
	// transmitted bytes of every interface except lo in ProcDir/self/net/dev,
	// which counts the whole network namespace, not only this process.
	NetworkBytes func() (uint64, error)
	// Observer, if set, receives every utilisation sample, for example an
	// SLAEvaluator that detects resource saturation anomalies.
	Observer UtilizationObserver
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// UtilizationObserver receives resource utilisation samples in percent;
// resource is one of the Resource* constants.
type UtilizationObserver interface {
	ObserveUtilization(resource string, percent float64)
}

// DefaultResourceConfig returns the spec's capacities and a 5 s interval.
func DefaultResourceConfig() ResourceConfig {
	return ResourceConfig{
		Interval:                      5 * time.Second,
		GoroutineLimit:                10_000,
		NetworkCapacityBytesPerSecond: 8e9 / 8,
		DiskIOPSCapacity:              10_000,
		ProcDir:                       "/proc",
	}
}

// Validate reports the first bad field, naming its value.
func (c ResourceConfig) Validate() error {
	switch {
	case c.Interval < 0:
		return fmt.Errorf("metrics: ResourceConfig.Interval %v is negative", c.Interval)
	case c.GoroutineLimit <= 0:
		return fmt.Errorf("metrics: ResourceConfig.GoroutineLimit %d must be positive", c.GoroutineLimit)
	case !(c.NetworkCapacityBytesPerSecond > 0) || math.IsInf(c.NetworkCapacityBytesPerSecond, 0):
		return fmt.Errorf("metrics: ResourceConfig.NetworkCapacityBytesPerSecond %v must be positive and finite", c.NetworkCapacityBytesPerSecond)
	case !(c.DiskIOPSCapacity > 0) || math.IsInf(c.DiskIOPSCapacity, 0):
		return fmt.Errorf("metrics: ResourceConfig.DiskIOPSCapacity %v must be positive and finite", c.DiskIOPSCapacity)
	case c.ProcDir == "":
		return errors.New("metrics: ResourceConfig.ProcDir is empty")
	}
	return nil
}

// ResourceSample is one sample: raw readings and utilisation in percent.
// A percent is NaN when its source is unavailable or (for the rates) when
// this is the first sample.
type ResourceSample struct {
	Elapsed           time.Duration // wall time since the previous sample
	CPUSeconds        float64       // process user+system CPU time since start
	RSSBytes          uint64
	MemoryCapacity    uint64
	NetBytesPerSecond float64
	IOPS              float64 // read+write system calls per second
	Goroutines        int

	CPUPercent        float64
	MemoryPercent     float64
	NetworkPercent    float64
	DiskIOPercent     float64
	GoroutinesPercent float64
}

// resourceSources are the readings a sampler takes; tests replace them.
type resourceSources struct {
	cpu        func() (time.Duration, error)
	rss        func() (uint64, error)
	memTotal   func() (uint64, error)
	ioOps      func() (uint64, error)
	netBytes   func() (uint64, error)
	goroutines func() int
	maxProcs   func() int
}

func realSources(cfg ResourceConfig) resourceSources {
	self := filepath.Join(cfg.ProcDir, "self")
	s := resourceSources{
		cpu: processCPUTime,
		rss: func() (uint64, error) {
			b, err := os.ReadFile(filepath.Join(self, "statm"))
			if err != nil {
				return 0, err
			}
			pages, err := parseStatmRSSPages(b)
			return pages * uint64(os.Getpagesize()), err
		},
		memTotal: func() (uint64, error) {
			if cfg.MemoryCapacityBytes > 0 {
				return cfg.MemoryCapacityBytes, nil
			}
			b, err := os.ReadFile(filepath.Join(cfg.ProcDir, "meminfo"))
			if err != nil {
				return 0, err
			}
			return parseMeminfoTotal(b)
		},
		ioOps: func() (uint64, error) {
			b, err := os.ReadFile(filepath.Join(self, "io"))
			if err != nil {
				return 0, err
			}
			return parseProcIOOps(b)
		},
		netBytes:   cfg.NetworkBytes,
		goroutines: runtime.NumGoroutine,
		maxProcs:   func() int { return runtime.GOMAXPROCS(0) },
	}
	if s.netBytes == nil {
		s.netBytes = func() (uint64, error) {
			b, err := os.ReadFile(filepath.Join(self, "net", "dev"))
			if err != nil {
				return 0, err
			}
			return parseNetDevBytes(b)
		}
	}
	return s
}

// processCPUTime is the user+system CPU time of the whole process.
func processCPUTime() (time.Duration, error) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0, err
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), nil
}

// ResourceSampler measures the process's CPU, memory, network, disk I/O and
// goroutines and sets dwcp_v3_resource_utilization_percent{resource_type}.
// Its methods are safe for concurrent use.
type ResourceSampler struct {
	m   *Metrics
	cfg ResourceConfig
	src resourceSources
	now func() time.Time

	mu          sync.Mutex
	last        time.Time
	lastCPU     time.Duration
	lastIO      uint64
	lastNet     uint64
	unavailable map[string]error

	stop      chan struct{}
	done      chan struct{}
	closeOnce sync.Once
}

// NewResourceSampler takes a baseline reading and, when cfg.Interval > 0,
// starts a goroutine that samples every Interval until Close. A nil m
// records into metrics registered nowhere. Sources that fail at start (no
// procfs, /proc/self/io not readable) are disabled and listed by
// Unavailable; their gauges are never set.
func NewResourceSampler(m *Metrics, cfg ResourceConfig) (*ResourceSampler, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return newResourceSampler(m, cfg, realSources(cfg)), nil
}

func newResourceSampler(m *Metrics, cfg ResourceConfig, src resourceSources) *ResourceSampler {
	if m == nil {
		m = New(nil)
	}
	s := &ResourceSampler{m: m, cfg: cfg, src: src, now: cfg.Now, unavailable: map[string]error{}}
	if s.now == nil {
		s.now = time.Now
	}
	s.last = s.now()
	var err error
	if s.lastCPU, err = src.cpu(); err != nil {
		s.unavailable[ResourceCPU] = err
	}
	if _, err = src.rss(); err == nil {
		_, err = src.memTotal()
	}
	if err != nil {
		s.unavailable[ResourceMemory] = err
	}
	if s.lastIO, err = src.ioOps(); err != nil {
		s.unavailable[ResourceDiskIO] = err
	}
	if s.lastNet, err = src.netBytes(); err != nil {
		s.unavailable[ResourceNetwork] = err
	}
	if cfg.Interval > 0 {
		s.stop, s.done = make(chan struct{}), make(chan struct{})
		go s.loop()
	}
	return s
}

func (s *ResourceSampler) loop() {
	defer close(s.done)
	t := time.NewTicker(s.cfg.Interval)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			// A failing source leaves its gauge at the last value; the next
			// Sample call reports the error to whoever asks.
			_, _ = s.Sample()
		}
	}
}

// Unavailable returns the resources whose source failed at start, with why.
func (s *ResourceSampler) Unavailable() map[string]error {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]error, len(s.unavailable))
	for k, v := range s.unavailable {
		out[k] = v
	}
	return out
}

// Sample reads every source now, sets the gauges and returns the sample.
// Rates (CPU, network, disk I/O) cover the time since the previous sample
// (or since NewResourceSampler). The error joins every source that failed.
func (s *ResourceSampler) Sample() (ResourceSample, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	nan := math.NaN()
	out := ResourceSample{CPUPercent: nan, MemoryPercent: nan, NetworkPercent: nan, DiskIOPercent: nan, NetBytesPerSecond: nan, IOPS: nan}
	now := s.now()
	elapsed := now.Sub(s.last)
	out.Elapsed = elapsed
	secs := elapsed.Seconds()
	var errs []error

	if _, off := s.unavailable[ResourceCPU]; !off {
		if cpu, err := s.src.cpu(); err != nil {
			errs = append(errs, fmt.Errorf("cpu: %w", err))
		} else {
			out.CPUSeconds = cpu.Seconds()
			if secs > 0 && cpu >= s.lastCPU {
				procs := max(s.src.maxProcs(), 1)
				out.CPUPercent = (cpu - s.lastCPU).Seconds() / secs / float64(procs) * 100
			}
			if secs > 0 || cpu < s.lastCPU {
				s.lastCPU = cpu
			}
		}
	}
	if _, off := s.unavailable[ResourceMemory]; !off {
		rss, err := s.src.rss()
		total, err2 := s.src.memTotal()
		if err = errors.Join(err, err2); err != nil {
			errs = append(errs, fmt.Errorf("memory: %w", err))
		} else if total > 0 {
			out.RSSBytes, out.MemoryCapacity = rss, total
			out.MemoryPercent = float64(rss) / float64(total) * 100
		}
	}
	if _, off := s.unavailable[ResourceDiskIO]; !off {
		if ops, err := s.src.ioOps(); err != nil {
			errs = append(errs, fmt.Errorf("disk_io: %w", err))
		} else {
			if secs > 0 && ops >= s.lastIO {
				out.IOPS = float64(ops-s.lastIO) / secs
				out.DiskIOPercent = out.IOPS / s.cfg.DiskIOPSCapacity * 100
			}
			if secs > 0 || ops < s.lastIO {
				s.lastIO = ops
			}
		}
	}
	if _, off := s.unavailable[ResourceNetwork]; !off {
		if b, err := s.src.netBytes(); err != nil {
			errs = append(errs, fmt.Errorf("network: %w", err))
		} else {
			if secs > 0 && b >= s.lastNet {
				out.NetBytesPerSecond = float64(b-s.lastNet) / secs
				out.NetworkPercent = out.NetBytesPerSecond / s.cfg.NetworkCapacityBytesPerSecond * 100
			}
			if secs > 0 || b < s.lastNet {
				s.lastNet = b
			}
		}
	}
	out.Goroutines = s.src.goroutines()
	out.GoroutinesPercent = float64(out.Goroutines) / float64(s.cfg.GoroutineLimit) * 100
	if secs > 0 {
		s.last = now
	}

	for _, r := range []struct {
		name string
		v    float64
	}{
		{ResourceCPU, out.CPUPercent},
		{ResourceMemory, out.MemoryPercent},
		{ResourceNetwork, out.NetworkPercent},
		{ResourceDiskIO, out.DiskIOPercent},
		{ResourceGoroutines, out.GoroutinesPercent},
	} {
		if math.IsNaN(r.v) {
			continue
		}
		s.m.ResourceUtilization.WithLabelValues(r.name).Set(r.v)
		if s.cfg.Observer != nil {
			s.cfg.Observer.ObserveUtilization(r.name, r.v)
		}
	}
	return out, errors.Join(errs...)
}

// Close stops the background goroutine and waits for it. It is safe to call
// more than once.
func (s *ResourceSampler) Close() error {
	s.closeOnce.Do(func() {
		if s.stop != nil {
			close(s.stop)
			<-s.done
		}
	})
	return nil
}

// parseMeminfoTotal returns MemTotal from /proc/meminfo, in bytes.
func parseMeminfoTotal(b []byte) (uint64, error) {
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		rest, ok := bytes.CutPrefix(sc.Bytes(), []byte("MemTotal:"))
		if !ok {
			continue
		}
		f := bytes.Fields(rest)
		if len(f) != 2 || string(f[1]) != "kB" {
			return 0, fmt.Errorf("meminfo: malformed MemTotal line %q", sc.Bytes())
		}
		kb, err := strconv.ParseUint(string(f[0]), 10, 64)
		if err != nil || kb > math.MaxUint64/1024 {
			return 0, fmt.Errorf("meminfo: bad MemTotal %q", f[0])
		}
		return kb * 1024, nil
	}
	return 0, errors.New("meminfo: no MemTotal line")
}

// parseStatmRSSPages returns the resident set (second field) of
// /proc/self/statm, in pages.
func parseStatmRSSPages(b []byte) (uint64, error) {
	f := bytes.Fields(b)
	if len(f) < 2 {
		return 0, fmt.Errorf("statm: %d fields, want at least 2", len(f))
	}
	pages, err := strconv.ParseUint(string(f[1]), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("statm: bad resident field %q", f[1])
	}
	if pages > math.MaxUint64/uint64(os.Getpagesize()) {
		return 0, fmt.Errorf("statm: resident field %d pages overflows", pages)
	}
	return pages, nil
}

// parseProcIOOps returns syscr+syscw from /proc/self/io: the read and write
// system calls of the process. They count every file descriptor (files,
// sockets, pipes), so as IOPS they are an upper bound on disk operations;
// read_bytes/write_bytes would count storage bytes but not operations.
func parseProcIOOps(b []byte) (uint64, error) {
	var r, w uint64
	var seen int
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		name, val, ok := bytes.Cut(sc.Bytes(), []byte(":"))
		if !ok {
			continue
		}
		var dst *uint64
		switch string(name) {
		case "syscr":
			dst = &r
		case "syscw":
			dst = &w
		default:
			continue
		}
		n, err := strconv.ParseUint(string(bytes.TrimSpace(val)), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("io: bad %s value %q", name, bytes.TrimSpace(val))
		}
		*dst = n
		seen++
	}
	if seen != 2 {
		return 0, errors.New("io: syscr or syscw missing")
	}
	if r > math.MaxUint64-w {
		return 0, errors.New("io: syscr+syscw overflows")
	}
	return r + w, nil
}

// parseNetDevBytes sums received and transmitted bytes of every interface
// but lo in /proc/self/net/dev.
func parseNetDevBytes(b []byte) (uint64, error) {
	var total uint64
	lines := 0
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		name, rest, ok := bytes.Cut(sc.Bytes(), []byte(":"))
		if !ok {
			continue // the two header lines
		}
		lines++
		iface := string(bytes.TrimSpace(name))
		f := bytes.Fields(rest)
		if len(f) < 16 {
			return 0, fmt.Errorf("net/dev: interface %q has %d fields, want 16", iface, len(f))
		}
		rx, err1 := strconv.ParseUint(string(f[0]), 10, 64)
		tx, err2 := strconv.ParseUint(string(f[8]), 10, 64)
		if err1 != nil || err2 != nil {
			return 0, fmt.Errorf("net/dev: interface %q has bad byte counts %q %q", iface, f[0], f[8])
		}
		if iface == "lo" {
			continue
		}
		if rx > math.MaxUint64-tx || total > math.MaxUint64-rx-tx {
			return 0, errors.New("net/dev: byte counts overflow")
		}
		total += rx + tx
	}
	if lines == 0 {
		return 0, errors.New("net/dev: no interfaces")
	}
	return total, nil
}
