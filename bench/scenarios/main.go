// Command scenarios runs the spec's migration scenarios with DWCP v1 and v3
// side by side in the same run and prints one table: total time, downtime,
// wire bytes and effective throughput (guest bytes / total time).
//
//	go run ./bench/scenarios                      # datacenter scenarios on loopback
//	sudo go run ./bench/scenarios -wan            # plus internet and cross-region over bench/wanem
//	go run ./bench/scenarios -only datacenter_small_vm -versions v1,v3 -repeat 3
//
// Datacenter scenarios run source and destination in this process over amst
// on loopback. WAN scenarios need root: they create the two network
// namespaces of bench/wanem (wanem.sh up), start the userspace WAN relay with
// the scenario's delay, loss and rate, and run this binary's "dst" role in
// one namespace and its "src" role in the other; the source prints its
// result as one JSON line.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/dwcp/dwcp"
	"github.com/dwcp/dwcp/amst"
	"github.com/dwcp/dwcp/metrics"
)

// scenario is one row of the spec's table.
type scenario struct {
	name      string
	size      int64
	dirtyRate float64
	wan       bool
	delay     string  // one-way, wanem -delay
	loss      float64 // wanem -loss
	rate      float64 // bits per second, wanem -rate
	baseline  time.Duration
	baseWhat  string
}

// The dirty rates are "realistic" in the sense of anchors.md: a hot set
// dirtied at tens of MB/s, which converges on each scenario's link.
var scenarios = []scenario{
	{name: metrics.ScenarioDatacenterSmall, size: 512 << 20, dirtyRate: 32 << 20, baseline: 250 * time.Millisecond, baseWhat: "downtime"},
	{name: metrics.ScenarioDatacenterLarge, size: 4 << 30, dirtyRate: 64 << 20, baseline: 450 * time.Millisecond, baseWhat: "downtime"},
	{name: metrics.ScenarioInternet, size: 2 << 30, dirtyRate: 8 << 20, wan: true, delay: "25ms", loss: 0.005, rate: 1e9, baseline: 85 * time.Second, baseWhat: "total"},
	{name: metrics.ScenarioCrossRegion, size: 2 << 30, dirtyRate: 4 << 20, wan: true, delay: "75ms", loss: 0.01, rate: 3e8, baseline: 120 * time.Second, baseWhat: "total"},
}

// outcome is what one migration measured; the src role prints it as JSON.
type outcome struct {
	Scenario   string
	Version    string
	OK         bool
	Error      string
	Total      time.Duration
	Downtime   time.Duration
	WireBytes  int64
	Logical    int64
	Memory     int64
	Rounds     int
	Throttle   int
	Verified   bool
	Throughput float64
	Streams    int
}

func main() {
	if len(os.Args) > 1 && (os.Args[1] == "src" || os.Args[1] == "dst") {
		if err := role(os.Args[1], os.Args[2:]); err != nil {
			fmt.Fprintln(os.Stderr, "scenarios:", err)
			os.Exit(1)
		}
		return
	}
	wan := flag.Bool("wan", false, "also run the WAN scenarios through bench/wanem (needs root)")
	only := flag.String("only", "", "comma-separated scenario names to run (default: all selected)")
	versions := flag.String("versions", "v1,v3", "protocol versions to compare, in run order")
	repeat := flag.Int("repeat", 1, "runs per scenario and version (alternating versions)")
	scale := flag.Float64("scale", 1, "multiply every VM size by this (e.g. 0.25 for a quick run)")
	timeout := flag.Duration("timeout", 5*time.Minute, "give up on one migration after this long")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()

	var results []outcome
	for _, sc := range scenarios {
		if *only != "" && !contains(strings.Split(*only, ","), sc.name) {
			continue
		}
		if sc.wan && !*wan {
			fmt.Fprintf(os.Stderr, "skipping %s (needs -wan and root)\n", sc.name)
			continue
		}
		sc.size = int64(float64(sc.size)*(*scale)) &^ 4095
		for r := 0; r < *repeat; r++ {
			for _, v := range strings.Split(*versions, ",") {
				fmt.Fprintf(os.Stderr, "== %s %s (%d MiB, dirty %d MiB/s) run %d\n", sc.name, v, sc.size>>20, int64(sc.dirtyRate)>>20, r+1)
				var o outcome
				var err error
				if sc.wan {
					o, err = runWAN(ctx, sc, v, *timeout)
				} else {
					o, err = runLoopback(ctx, sc, v, *timeout)
				}
				if err != nil {
					o = outcome{Scenario: sc.name, Version: v, Error: err.Error()}
				}
				results = append(results, o)
				fmt.Fprintf(os.Stderr, "   %s\n", line(o))
				runtime.GC()
			}
		}
	}
	printTable(results)
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if strings.TrimSpace(x) == s {
			return true
		}
	}
	return false
}

func line(o outcome) string {
	if !o.OK {
		return "FAILED: " + o.Error
	}
	return fmt.Sprintf("total %v downtime %v wire %d MiB throughput %.1f MiB/s rounds %d streams %d verified %v",
		o.Total.Round(time.Millisecond), o.Downtime.Round(100*time.Microsecond), o.WireBytes>>20, o.Throughput/(1<<20), o.Rounds, o.Streams, o.Verified)
}

func parseVersion(v string) (dwcp.Version, error) { return dwcp.ParseVersion(v) }

func engineConfig(node string, m *metrics.Metrics) dwcp.Config {
	cfg := dwcp.DefaultConfig()
	cfg.NodeID = node
	cfg.Metrics = m
	cfg.Transport = &dwcp.AMSTTransport{Config: amst.Config{LingerTimeout: 5 * time.Second}, Metrics: m}
	cfg.Codecs = nil
	return dwcp.WithComponents(cfg, m)
}

func toOutcome(sc string, v dwcp.Version, r *dwcp.Result, err error) outcome {
	o := outcome{Scenario: sc, Version: v.String()}
	if err != nil {
		o.Error = err.Error()
	}
	if r != nil {
		o.Total, o.Downtime, o.WireBytes, o.Logical = r.Duration, r.Downtime, r.WireBytes, r.LogicalBytes
		o.Memory, o.Rounds, o.Throttle, o.Verified, o.Throughput = r.MemoryBytes, r.Rounds, r.MaxThrottle, r.Verified, r.Throughput()
		o.Streams = r.Streams
	}
	o.OK = err == nil && o.Verified
	return o
}

// runLoopback migrates in this process: source and destination engines,
// amst over 127.0.0.1.
func runLoopback(ctx context.Context, sc scenario, version string, timeout time.Duration) (outcome, error) {
	v, err := parseVersion(version)
	if err != nil {
		return outcome{}, err
	}
	m := metrics.New(nil)
	dcfg := engineConfig("host-b", m)
	dcfg.Incoming = func(ctx context.Context, spec dwcp.IncomingSpec) (dwcp.IncomingMemory, error) {
		return dwcp.NewIncomingSyntheticVM(spec, dwcp.SyntheticConfig{})
	}
	dst, err := dwcp.New(dcfg)
	if err != nil {
		return outcome{}, err
	}
	defer dst.Close()
	l, err := dcfg.Transport.Listen("127.0.0.1:0")
	if err != nil {
		return outcome{}, err
	}
	defer l.Close()
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	dstDone := make(chan error, 1)
	go dst.Serve(sctx, l, func(r *dwcp.Result, err error) { dstDone <- err })

	src, err := dwcp.New(engineConfig("host-a", m))
	if err != nil {
		return outcome{}, err
	}
	defer src.Close()
	guest, err := dwcp.NewSyntheticVM(dwcp.SyntheticConfig{Size: sc.size, Seed: 1, DirtyRate: sc.dirtyRate, Pattern: dwcp.PatternHotSet})
	if err != nil {
		return outcome{}, err
	}
	defer guest.Close()
	mctx, mcancel := context.WithTimeout(ctx, timeout)
	defer mcancel()
	res, err := src.Migrate(mctx, dwcp.MigrationRequest{VMID: "bench-vm", Memory: guest, Destination: l.Addr(), Version: v, Scenario: sc.name})
	if err == nil {
		if derr := <-dstDone; derr != nil {
			err = fmt.Errorf("destination: %w", derr)
		}
	}
	return toOutcome(sc.name, v, res, err), nil
}

var built bool

const (
	nsA, nsB     = "dwcpA", "dwcpB"
	addrA, addrB = "10.202.0.1", "10.202.0.2"
)

// runWAN sets up the namespaces and the relay, and runs dst and src roles
// of this binary on either side.
func runWAN(ctx context.Context, sc scenario, version string, timeout time.Duration) (outcome, error) {
	if os.Geteuid() != 0 {
		return outcome{}, errors.New("WAN scenarios need root (network namespaces)")
	}
	root, err := repoRoot()
	if err != nil {
		return outcome{}, err
	}
	bin := filepath.Join(os.TempDir(), "dwcp-bench")
	if !built {
		// Built once per run of this command, so every scenario runs the
		// same code.
		if err := os.MkdirAll(bin, 0o755); err != nil {
			return outcome{}, err
		}
		for _, b := range [][2]string{{"wanem", "./bench/wanem"}, {"scenarios", "./bench/scenarios"}} {
			cmd := exec.CommandContext(ctx, "go", "build", "-o", filepath.Join(bin, b[0]), b[1])
			cmd.Dir, cmd.Stderr = root, os.Stderr
			if err := cmd.Run(); err != nil {
				return outcome{}, fmt.Errorf("build %s: %w", b[1], err)
			}
		}
		built = true
	}
	// Namespaces and addresses of our own, so that a concurrent amst
	// benchmark on wanem's default namespaces is left alone.
	wanemSh := filepath.Join(root, "bench/wanem/wanem.sh")
	env := append(os.Environ(), "NS_A="+nsA, "NS_B="+nsB, "ADDR_A="+addrA, "ADDR_B="+addrB)
	up := exec.CommandContext(ctx, wanemSh, "up")
	up.Env = env
	if out, err := up.CombinedOutput(); err != nil {
		return outcome{}, fmt.Errorf("wanem.sh up: %v: %s", err, out)
	}
	defer func() {
		down := exec.Command(wanemSh, "down")
		down.Env = env
		down.Run()
	}()
	relay := exec.CommandContext(ctx, filepath.Join(bin, "wanem"), "-ns-a", nsA, "-ns-b", nsB, "-delay", sc.delay,
		"-loss", fmt.Sprint(sc.loss), "-rate", fmt.Sprint(sc.rate), "-duration", (timeout + time.Minute).String(), "-stats", "1h")
	relay.Stderr = os.Stderr
	if err := relay.Start(); err != nil {
		return outcome{}, err
	}
	defer func() { relay.Process.Kill(); relay.Wait() }()
	time.Sleep(300 * time.Millisecond) // the relay opens both TUN devices

	dstAddr := addrB + ":7400"
	dst := exec.CommandContext(ctx, "ip", "netns", "exec", nsB, filepath.Join(bin, "scenarios"), "dst", "-listen", dstAddr)
	dst.Stderr = os.Stderr
	if err := dst.Start(); err != nil {
		return outcome{}, err
	}
	defer func() { dst.Process.Kill(); dst.Wait() }()
	time.Sleep(500 * time.Millisecond)
	src := exec.CommandContext(ctx, "ip", "netns", "exec", nsA, filepath.Join(bin, "scenarios"), "src",
		"-to", dstAddr, "-scenario", sc.name, "-version", version, "-size", fmt.Sprint(sc.size),
		"-dirty-rate", fmt.Sprint(sc.dirtyRate), "-timeout", timeout.String())
	src.Stderr = os.Stderr
	out, err := src.Output()
	if err != nil {
		return outcome{}, fmt.Errorf("src role: %w", err)
	}
	var o outcome
	sc2 := bufio.NewScanner(strings.NewReader(string(out)))
	for sc2.Scan() {
		if strings.HasPrefix(sc2.Text(), "{") {
			if err := json.Unmarshal(sc2.Bytes(), &o); err != nil {
				return outcome{}, err
			}
			return o, nil
		}
	}
	return outcome{}, fmt.Errorf("src role printed no result: %q", out)
}

func repoRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", err
	}
	mod := strings.TrimSpace(string(out))
	if mod == "" || mod == os.DevNull {
		return "", errors.New("run from inside the dwcp module")
	}
	return filepath.Dir(mod), nil
}

// role runs one side of a WAN scenario.
func role(name string, args []string) error {
	fs := flag.NewFlagSet(name, flag.ExitOnError)
	listen := fs.String("listen", "", "dst: address to listen on")
	to := fs.String("to", "", "src: destination address")
	scName := fs.String("scenario", "", "src: scenario label")
	version := fs.String("version", "v3", "src: v1 or v3")
	size := fs.Int64("size", 1<<30, "src: guest bytes")
	rate := fs.Float64("dirty-rate", 0, "src: dirty bytes per second")
	timeout := fs.Duration("timeout", 5*time.Minute, "src: migration timeout")
	fs.Parse(args)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	m := metrics.New(nil)
	if name == "dst" {
		cfg := engineConfig("host-b", m)
		cfg.Incoming = func(ctx context.Context, spec dwcp.IncomingSpec) (dwcp.IncomingMemory, error) {
			return dwcp.NewIncomingSyntheticVM(spec, dwcp.SyntheticConfig{})
		}
		e, err := dwcp.New(cfg)
		if err != nil {
			return err
		}
		defer e.Close()
		l, err := cfg.Transport.Listen(*listen)
		if err != nil {
			return err
		}
		defer l.Close()
		return e.Serve(ctx, l, func(r *dwcp.Result, err error) {
			if err != nil {
				fmt.Fprintln(os.Stderr, "dst:", err)
			}
		})
	}
	v, err := parseVersion(*version)
	if err != nil {
		return err
	}
	e, err := dwcp.New(engineConfig("host-a", m))
	if err != nil {
		return err
	}
	defer e.Close()
	guest, err := dwcp.NewSyntheticVM(dwcp.SyntheticConfig{Size: *size, Seed: 1, DirtyRate: *rate, Pattern: dwcp.PatternHotSet})
	if err != nil {
		return err
	}
	defer guest.Close()
	mctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	res, err := e.Migrate(mctx, dwcp.MigrationRequest{VMID: "bench-vm", Memory: guest, Destination: *to, Version: v, Scenario: *scName})
	if res != nil {
		for _, r := range res.RoundStats {
			fmt.Fprintf(os.Stderr, "   round %d: %d pages, %.1f MiB wire in %v (%.1f MiB/s delivered, forecast %.1f MiB/s), %d dirty after, predicted final copy %v\n",
				r.Round, r.Pages, float64(r.WireBytes)/(1<<20), r.Duration.Round(time.Millisecond), r.Rate/(1<<20), r.Forecast/(1<<20), r.DirtyAfter, r.PredictedEnd.Round(time.Millisecond))
		}
	}
	b, _ := json.Marshal(toOutcome(*scName, v, res, err))
	fmt.Println(string(b))
	return nil
}

func printTable(results []outcome) {
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "scenario\tversion\ttotal time\tdowntime\twire bytes\tthroughput\trounds\tverified\t")
	for _, o := range results {
		if !o.OK {
			fmt.Fprintf(tw, "%s\t%s\tFAILED\t\t\t\t\t\t%s\n", o.Scenario, o.Version, o.Error)
			continue
		}
		fmt.Fprintf(tw, "%s\t%s\t%.2f s\t%.1f ms\t%.1f MiB\t%.1f MiB/s\t%d\t%v\t\n", o.Scenario, o.Version,
			o.Total.Seconds(), float64(o.Downtime)/1e6, float64(o.WireBytes)/(1<<20), o.Throughput/(1<<20), o.Rounds, o.Verified)
	}
	tw.Flush()
	// v3 against v1 per scenario: means over the successful runs.
	fmt.Println()
	type agg struct {
		n                     int
		total, down, thr, wir float64
	}
	type pair struct{ v1, v3 agg }
	byScenario := map[string]*pair{}
	var order []string
	for _, o := range results {
		if !o.OK {
			continue
		}
		p := byScenario[o.Scenario]
		if p == nil {
			p = &pair{}
			byScenario[o.Scenario] = p
			order = append(order, o.Scenario)
		}
		a := &p.v1
		if o.Version == "v3" {
			a = &p.v3
		} else if o.Version != "v1" {
			continue
		}
		a.n++
		a.total += o.Total.Seconds()
		a.down += o.Downtime.Seconds()
		a.thr += o.Throughput
		a.wir += float64(o.WireBytes)
	}
	for _, name := range order {
		p := byScenario[name]
		if p.v1.n == 0 || p.v3.n == 0 {
			continue
		}
		v1, v3 := p.v1, p.v3
		fmt.Printf("%s (means of %d v1 and %d v3 runs): v3 total time %+.1f%% vs v1 (target < -30%%), effective throughput %+.1f%% (target > +33%%), wire bytes %+.1f%%, downtime %.0f ms vs %.0f ms\n",
			name, v1.n, v3.n, 100*((v3.total/float64(v3.n))/(v1.total/float64(v1.n))-1), 100*((v3.thr/float64(v3.n))/(v1.thr/float64(v1.n))-1),
			100*((v3.wir/float64(v3.n))/(v1.wir/float64(v1.n))-1), 1000*v3.down/float64(v3.n), 1000*v1.down/float64(v1.n))
		for _, sc := range scenarios {
			if sc.name != name {
				continue
			}
			got := v3.down / float64(v3.n)
			if sc.baseWhat == "total" {
				got = v3.total / float64(v3.n)
			}
			fmt.Printf("   Phase 5 baseline %s %v: v3 measured %v (mean)\n", sc.baseWhat, sc.baseline, time.Duration(got*float64(time.Second)).Round(time.Millisecond))
		}
	}
}
