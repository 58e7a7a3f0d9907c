// Command migrate live-migrates a synthetic VM with the DWCP engine.
//
//	migrate demo  [flags]            source and destination on loopback, one process
//	migrate serve [flags] -listen A  destination: receive migrations on A
//	migrate send  [flags] -to A      source: migrate a synthetic VM to A
//
// demo is what `make demo` runs: a 1 GiB guest dirtying 32 MiB/s migrated
// over amst on loopback with hde and pba, a live progress bar on stderr and a
// summary at the end. -metrics-addr serves /metrics while it runs;
// -metrics-file writes the final registry in Prometheus text format.
package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/dwcp/dwcp"
	"github.com/dwcp/dwcp/amst"
	"github.com/dwcp/dwcp/metrics"
)

func main() {
	if len(os.Args) < 2 {
		usage()
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	var err error
	switch os.Args[1] {
	case "demo":
		err = demo(ctx, os.Args[2:])
	case "serve":
		err = serve(ctx, os.Args[2:])
	case "send":
		err = send(ctx, os.Args[2:])
	case "-h", "-help", "--help", "help":
		usage()
		return
	default:
		fmt.Fprintf(os.Stderr, "migrate: unknown command %q\n", os.Args[1])
		usage()
		os.Exit(2)
	}
	pprof.StopCPUProfile()
	if err != nil {
		fmt.Fprintln(os.Stderr, "migrate:", err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprint(os.Stderr, `usage:
  migrate demo  [flags]              migrate a synthetic VM over loopback in one process
  migrate serve -listen ADDR [flags] receive migrations (destination)
  migrate send  -to ADDR [flags]     migrate a synthetic VM to ADDR (source)
run "migrate <command> -h" for the flags
`)
}

// options are the flags every command shares.
type options struct {
	vmSize      byteSize
	dirtyRate   byteSize
	pattern     string
	version     string
	streams     int
	tls         bool
	tlsDir      string
	metricsAddr string
	metricsFile string
	downtime    time.Duration
	seed        uint64
	rollout     int
	killSwitch  bool
	raw         bool
	quiet       bool
	cpuProfile  string
}

func (o *options) register(fs *flag.FlagSet) {
	o.vmSize = 1 << 30
	o.dirtyRate = 32 << 20
	fs.Var(&o.vmSize, "vm-size", "guest memory size (e.g. 512MiB, 1GiB)")
	fs.Var(&o.dirtyRate, "dirty-rate", "bytes of pages the guest dirties per second (e.g. 32MiB; 0 = idle)")
	fs.StringVar(&o.pattern, "pattern", "hotset", "dirtying pattern: hotset, uniform or sequential")
	fs.StringVar(&o.version, "version", "v3", "protocol version: v1, v3 or auto (rollout decides)")
	fs.IntVar(&o.streams, "streams", 0, "TCP streams for v3 (0 = adaptive; v1 always uses 1)")
	fs.BoolVar(&o.tls, "tls", false, "mutual TLS 1.3 (demo: in-process self-signed certificates; serve/send: from -tls-dir)")
	fs.StringVar(&o.tlsDir, "tls-dir", "dwcp-tls", "serve/send -tls: directory of cert.pem, key.pem and ca.pem (serve creates them if missing)")
	fs.StringVar(&o.metricsAddr, "metrics-addr", "", "serve Prometheus /metrics on this address while running")
	fs.StringVar(&o.metricsFile, "metrics-file", "", "write the final metrics in Prometheus text format to this file")
	fs.DurationVar(&o.downtime, "downtime", 300*time.Millisecond, "downtime target")
	fs.Uint64Var(&o.seed, "seed", 1, "seed of the guest's content and writes")
	fs.IntVar(&o.rollout, "rollout", 100, "percentage of VMs on v3 when -version auto")
	fs.BoolVar(&o.killSwitch, "kill-switch", false, "force v1 for every migration")
	fs.BoolVar(&o.raw, "raw", false, "engine's own single TCP stream and raw pages instead of amst/hde/pba (for comparison)")
	fs.BoolVar(&o.quiet, "quiet", false, "no progress bar")
	fs.StringVar(&o.cpuProfile, "cpuprofile", "", "write a CPU profile of the run to this file")
}

func parse(name string, args []string, extra func(fs *flag.FlagSet)) (*options, error) {
	fs := flag.NewFlagSet("migrate "+name, flag.ContinueOnError)
	o := &options{}
	o.register(fs)
	if extra != nil {
		extra(fs)
	}
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if o.cpuProfile != "" {
		f, err := os.Create(o.cpuProfile)
		if err != nil {
			return nil, err
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			return nil, err
		}
	}
	return o, nil
}

// setup builds the registry, the metrics and the engine configuration.
// The monitor it starts (SLA compliance, anomaly detection, process
// resources) runs until the returned stop function is called.
func (o *options) setup(node string, tlsCfg *tlsConfig) (*prometheus.Registry, dwcp.Config, func()) {
	reg := prometheus.NewRegistry()
	m := metrics.New(reg)
	cfg := dwcp.DefaultConfig()
	stop := func() {}
	if mon, err := metrics.NewMonitor(m, metrics.DefaultSLAConfig(), metrics.DefaultResourceConfig()); err != nil {
		fmt.Fprintf(os.Stderr, "SLA and resource monitoring off: %v\n", err)
	} else {
		cfg.SLA = mon.SLA
		stop = func() { mon.Close() }
	}
	cfg.NodeID = node
	cfg.Metrics = m
	cfg.DowntimeTarget = o.downtime
	cfg.Rollout = dwcp.Rollout{Percentage: o.rollout, KillSwitch: o.killSwitch}
	if o.raw {
		cfg.Transport = &dwcp.TCPTransport{ServerTLS: tlsCfg.get(), ClientTLS: tlsCfg.get()}
		return reg, cfg, stop
	}
	cfg.Transport = &dwcp.AMSTTransport{Config: amst.Config{TLS: tlsCfg.get()}, Metrics: m}
	cfg.Codecs = nil
	return reg, dwcp.WithComponents(cfg, m), stop
}

// start does what serve and send both need: TLS material (the server's or
// the client's half of o.tlsDir), the registry, monitor and engine
// configuration, the /metrics endpoint, and the guest configuration.
func (o *options) start(ctx context.Context, node string, server bool) (*prometheus.Registry, dwcp.Config, dwcp.SyntheticConfig, func(), error) {
	var tc *tlsConfig
	if o.tls {
		var err error
		if tc, err = loadOrCreateTLS(o.tlsDir, server); err != nil {
			return nil, dwcp.Config{}, dwcp.SyntheticConfig{}, nil, err
		}
	}
	reg, cfg, stop := o.setup(node, tc)
	gcfg, err := o.guestConfig()
	if err == nil {
		err = o.serveMetrics(ctx, reg)
	}
	if err != nil {
		stop()
		return nil, dwcp.Config{}, dwcp.SyntheticConfig{}, nil, err
	}
	return reg, cfg, gcfg, stop, nil
}

func (o *options) guestConfig() (dwcp.SyntheticConfig, error) {
	p, err := dwcp.ParseDirtyPattern(o.pattern)
	if err != nil {
		return dwcp.SyntheticConfig{}, err
	}
	return dwcp.SyntheticConfig{Size: int64(o.vmSize), Seed: o.seed, DirtyRate: float64(o.dirtyRate), Pattern: p, Workers: 1}, nil
}

func (o *options) serveMetrics(ctx context.Context, reg *prometheus.Registry) error {
	if o.metricsAddr == "" {
		return nil
	}
	srv, err := metrics.Serve(ctx, o.metricsAddr, reg)
	if err != nil {
		return fmt.Errorf("metrics listener: %w", err)
	}
	fmt.Fprintf(os.Stderr, "metrics on %s\n", srv.URL())
	return nil
}

func (o *options) writeMetrics(reg *prometheus.Registry) error {
	if o.metricsFile == "" {
		return nil
	}
	if err := metrics.WriteTextFile(o.metricsFile, reg); err != nil {
		return fmt.Errorf("write metrics file: %w", err)
	}
	fmt.Fprintf(os.Stderr, "metrics written to %s\n", o.metricsFile)
	return nil
}

func demo(ctx context.Context, args []string) error {
	o, err := parse("demo", args, nil)
	if err != nil {
		return err
	}
	version, err := dwcp.ParseVersion(o.version)
	if err != nil {
		return err
	}
	var tc *tlsConfig
	if o.tls {
		c, err := dwcp.SelfSignedTLS(time.Hour)
		if err != nil {
			return err
		}
		tc = &tlsConfig{c}
	}
	reg, cfg, stopMonitor := o.setup("host-a", tc)
	defer stopMonitor()
	if err := o.serveMetrics(ctx, reg); err != nil {
		return err
	}
	gcfg, err := o.guestConfig()
	if err != nil {
		return err
	}

	// Destination: a paused, empty guest per offer; it stays idle after it
	// resumes so the demo can compare both memories byte for byte.
	var incoming *dwcp.SyntheticVM
	dcfg := cfg
	dcfg.NodeID = "host-b"
	dcfg.Incoming = func(ctx context.Context, spec dwcp.IncomingSpec) (dwcp.IncomingMemory, error) {
		vm, err := dwcp.NewIncomingSyntheticVM(spec, dwcp.SyntheticConfig{})
		incoming = vm
		return vm, err
	}
	dst, err := dwcp.New(dcfg)
	if err != nil {
		return err
	}
	defer dst.Close()
	l, err := dcfg.Transport.Listen("127.0.0.1:0")
	if err != nil {
		return err
	}
	defer l.Close()
	sctx, cancelServe := context.WithCancel(ctx)
	defer cancelServe()
	dstDone := make(chan error, 1)
	go dst.Serve(sctx, l, func(r *dwcp.Result, err error) { dstDone <- err })

	src, err := dwcp.New(cfg)
	if err != nil {
		return err
	}
	defer src.Close()
	fmt.Fprintf(os.Stderr, "creating a %s guest (dirtying %s/s, %s pattern)...\n", byteSize(gcfg.Size), o.dirtyRate, o.pattern)
	guest, err := dwcp.NewSyntheticVM(gcfg)
	if err != nil {
		return err
	}
	defer guest.Close()
	transport := "amst (adaptive streams) + hde + pba"
	if o.raw {
		transport = "engine TCP stream + raw pages"
	} else if version == dwcp.V1 {
		transport = "amst (1 stream) + hde fixed zstd, no prediction"
	}
	if o.tls {
		transport += ", mutual TLS 1.3"
	}
	fmt.Fprintf(os.Stderr, "migrating host-a -> host-b (%s) over %s\n", l.Addr(), transport)
	bar := newProgressBar(os.Stderr, o.quiet)
	res, err := src.Migrate(ctx, dwcp.MigrationRequest{
		VMID: "demo-vm", Memory: guest, Destination: l.Addr(), Version: version,
		Streams: o.streams, Progress: bar.update,
	})
	bar.finish()
	derr := <-dstDone
	if err == nil && derr != nil {
		err = fmt.Errorf("destination: %w", derr)
	}
	identical := ""
	if err == nil && incoming != nil {
		identical = compare(guest, incoming)
		incoming.Close()
	}
	printSummary(os.Stdout, res, err, o.downtime, identical)
	cancelServe()
	if werr := o.writeMetrics(reg); werr != nil && err == nil {
		err = werr
	}
	return err
}

// compare reads both guests page by page (the source is paused after a
// successful migration and the demo's destination guest is idle).
func compare(a, b *dwcp.SyntheticVM) string {
	pa, pb := make([]byte, a.PageSize()), make([]byte, b.PageSize())
	for i := range a.PageCount() {
		a.ReadPage(i, pa)
		b.ReadPage(i, pb)
		if string(pa) != string(pb) {
			return fmt.Sprintf("page %d DIFFERS", i)
		}
	}
	return fmt.Sprintf("all %d pages identical", a.PageCount())
}

func serve(ctx context.Context, args []string) error {
	var listen string
	var once bool
	o, err := parse("serve", args, func(fs *flag.FlagSet) {
		fs.StringVar(&listen, "listen", "127.0.0.1:7400", "address to receive migrations on")
		fs.BoolVar(&once, "once", false, "exit after one migration")
	})
	if err != nil {
		return err
	}
	reg, cfg, gcfg, stop, err := o.start(ctx, "host-b", true)
	if err != nil {
		return err
	}
	defer stop()
	var mu sync.Mutex // migrations are served concurrently
	guests := map[string]*dwcp.SyntheticVM{}
	cfg.Incoming = func(ctx context.Context, spec dwcp.IncomingSpec) (dwcp.IncomingMemory, error) {
		vm, err := dwcp.NewIncomingSyntheticVM(spec, gcfg)
		if err == nil {
			mu.Lock()
			guests[spec.MigrationID] = vm
			mu.Unlock()
		}
		return vm, err
	}
	e, err := dwcp.New(cfg)
	if err != nil {
		return err
	}
	defer e.Close()
	l, err := cfg.Transport.Listen(listen)
	if err != nil {
		return err
	}
	defer l.Close()
	fmt.Fprintf(os.Stderr, "receiving migrations on %s (ctrl-c to stop)\n", l.Addr())
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	err = e.Serve(sctx, l, func(r *dwcp.Result, err error) {
		if err != nil {
			fmt.Printf("migration %s of %s from %s FAILED: %v\n", r.MigrationID, r.VMID, r.Source, err)
		} else {
			fmt.Printf("migration %s of %s from %s: %d rounds, %s logical, verified %v, epoch %d; guest resumed here\n",
				r.MigrationID, r.VMID, r.Source, r.Rounds, byteSize(r.LogicalBytes), r.Verified, r.Epoch)
		}
		mu.Lock()
		vm := guests[r.MigrationID]
		delete(guests, r.MigrationID)
		mu.Unlock()
		if vm != nil {
			vm.Close()
		}
		if once {
			cancel()
		}
	})
	if werr := o.writeMetrics(reg); werr != nil && err == nil {
		err = werr
	}
	return err
}

func send(ctx context.Context, args []string) error {
	var to, vmID string
	o, err := parse("send", args, func(fs *flag.FlagSet) {
		fs.StringVar(&to, "to", "127.0.0.1:7400", "destination address")
		fs.StringVar(&vmID, "vm-id", "vm-1", "VM id (the rollout hashes it)")
	})
	if err != nil {
		return err
	}
	version, err := dwcp.ParseVersion(o.version)
	if err != nil {
		return err
	}
	reg, cfg, gcfg, stop, err := o.start(ctx, "host-a", false)
	if err != nil {
		return err
	}
	defer stop()
	e, err := dwcp.New(cfg)
	if err != nil {
		return err
	}
	defer e.Close()
	guest, err := dwcp.NewSyntheticVM(gcfg)
	if err != nil {
		return err
	}
	defer guest.Close()
	bar := newProgressBar(os.Stderr, o.quiet)
	res, err := e.Migrate(ctx, dwcp.MigrationRequest{VMID: vmID, Memory: guest, Destination: to, Version: version, Streams: o.streams, Progress: bar.update})
	bar.finish()
	printSummary(os.Stdout, res, err, o.downtime, "")
	if err == nil {
		// The guest now runs at the destination; this copy stays paused.
	} else if guest.Running() {
		fmt.Println("the guest is still running here")
	}
	if werr := o.writeMetrics(reg); werr != nil && err == nil {
		err = werr
	}
	return err
}

func printSummary(w *os.File, r *dwcp.Result, err error, target time.Duration, identical string) {
	if r == nil {
		return
	}
	status := "OK"
	if err != nil {
		status = "FAILED: " + err.Error()
	}
	fmt.Fprintf(w, "\nmigration %s of %s (%s): %s\n", r.MigrationID, r.VMID, r.Version, status)
	if len(r.RoundStats) > 0 {
		fmt.Fprintf(w, "  %-6s %8s %10s %9s %12s %12s %9s\n", "round", "pages", "wire", "time", "rate", "forecast", "dirty")
		for _, s := range r.RoundStats {
			fmt.Fprintf(w, "  %-6d %8d %10s %9s %10s/s %10s/s %9d\n", s.Round, s.Pages, byteSize(s.WireBytes),
				s.Duration.Round(time.Millisecond), byteSize(int64(s.Rate)), byteSize(int64(s.Forecast)), s.DirtyAfter)
		}
	}
	fmt.Fprintf(w, "  rounds:        %d (the last is the stop-and-copy)\n", r.Rounds)
	fmt.Fprintf(w, "  guest memory:  %s\n", byteSize(r.MemoryBytes))
	fmt.Fprintf(w, "  sent:          %s logical, %s on the wire (ratio %.2fx)\n", byteSize(r.LogicalBytes), byteSize(r.WireBytes), r.Ratio())
	fmt.Fprintf(w, "  duration:      %s\n", r.Duration.Round(time.Millisecond))
	fmt.Fprintf(w, "  downtime:      %s (target %s)\n", r.Downtime.Round(100*time.Microsecond), target)
	fmt.Fprintf(w, "  throughput:    %s/s (guest memory / total time)\n", byteSize(int64(r.Throughput())))
	if r.Streams > 0 {
		fmt.Fprintf(w, "  streams:       up to %d TCP connections\n", r.Streams)
	}
	if r.MaxThrottle > 0 {
		fmt.Fprintf(w, "  auto-converge: throttled the guest up to %d%%\n", r.MaxThrottle)
	}
	if r.Verified {
		fmt.Fprintf(w, "  verification:  every page's xxhash64 matched at the destination; memory hash %016x\n", r.MemoryHash)
	} else {
		fmt.Fprintf(w, "  verification:  not completed\n")
	}
	if identical != "" {
		fmt.Fprintf(w, "  byte compare:  %s\n", identical)
	}
}

type tlsConfig struct{ c *cryptoTLS }

func (t *tlsConfig) get() *cryptoTLS {
	if t == nil {
		return nil
	}
	return t.c
}

// loadOrCreateTLS reads cert.pem, key.pem and ca.pem from dir; serve
// creates them first when they are missing (copy the directory to the
// sender).
func loadOrCreateTLS(dir string, create bool) (*tlsConfig, error) {
	paths := []string{filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem"), filepath.Join(dir, "ca.pem")}
	if _, err := os.Stat(paths[0]); errors.Is(err, os.ErrNotExist) && create {
		cert, key, ca, err := dwcp.SelfSignedPEM(30 * 24 * time.Hour)
		if err != nil {
			return nil, err
		}
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, err
		}
		for i, b := range [][]byte{cert, key, ca} {
			if err := os.WriteFile(paths[i], b, 0o600); err != nil {
				return nil, err
			}
		}
		fmt.Fprintf(os.Stderr, "wrote self-signed TLS material to %s/\n", dir)
	}
	var pems [3][]byte
	for i, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("tls: %w", err)
		}
		pems[i] = b
	}
	c, err := dwcp.TLSFromPEM(pems[0], pems[1], pems[2])
	if err != nil {
		return nil, err
	}
	return &tlsConfig{c}, nil
}

// byteSize parses and prints sizes with binary units.
type byteSize int64

func (b byteSize) String() string {
	v := float64(b)
	for _, u := range []string{"B", "KiB", "MiB", "GiB", "TiB"} {
		if v < 1024 || u == "TiB" {
			if u == "B" {
				return fmt.Sprintf("%d B", int64(b))
			}
			return fmt.Sprintf("%.1f %s", v, u)
		}
		v /= 1024
	}
	return ""
}

func (b *byteSize) Set(s string) error {
	s = strings.TrimSpace(s)
	mult := int64(1)
	for _, u := range []struct {
		suffix string
		m      int64
	}{{"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}, {"T", 1 << 40}, {"G", 1 << 30}, {"M", 1 << 20}, {"K", 1 << 10}, {"B", 1}} {
		if strings.HasSuffix(s, u.suffix) {
			s, mult = strings.TrimSpace(strings.TrimSuffix(s, u.suffix)), u.m
			break
		}
	}
	v, err := strconv.ParseFloat(s, 64)
	if err != nil || v < 0 {
		return fmt.Errorf("bad size %q (want e.g. 512MiB, 1GiB, 4096)", s)
	}
	*b = byteSize(v * float64(mult))
	return nil
}

type cryptoTLS = tls.Config
