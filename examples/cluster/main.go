// Command cluster runs N DWCP nodes on loopback, each with its own engine,
// amst listener, ass replica and /metrics endpoint, sharing one acp Raft
// ownership registry, and drives a steady stream of live migrations from a
// workload generator: every interval it picks a VM and asks the VM's current
// host to migrate it, with itp choosing the destination from the hosts'
// loads in ass. It runs until -duration ends or ctrl-c, for Prometheus to
// scrape (http://127.0.0.1:<metrics-port + i>/metrics) and for the analysis
// report.
//
//	go run ./examples/cluster -nodes 3 -vms 6 -duration 2m
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/signal"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/dwcp/dwcp"
	"github.com/dwcp/dwcp/acp"
	"github.com/dwcp/dwcp/amst"
	"github.com/dwcp/dwcp/ass"
	"github.com/dwcp/dwcp/itp"
	"github.com/dwcp/dwcp/metrics"
)

type node struct {
	id      string
	reg     *prometheus.Registry
	m       *metrics.Metrics
	replica *ass.Replica
	state   *ass.ClusterState
	engine  *dwcp.Engine
	addr    string

	mu     sync.Mutex
	guests map[string]*dwcp.SyntheticVM // VMs running here
}

func main() {
	nodes := flag.Int("nodes", 3, "cluster size")
	vms := flag.Int("vms", 6, "VMs to keep migrating")
	vmSize := flag.Int64("vm-mib", 64, "memory of each VM in MiB")
	dirty := flag.Float64("dirty-mib", 4, "each VM dirties this many MiB/s (hot set)")
	interval := flag.Duration("interval", 2*time.Second, "time between migration starts")
	parallel := flag.Int("parallel", 2, "migrations allowed at once")
	duration := flag.Duration("duration", time.Minute, "run this long (0 = until ctrl-c)")
	metricsPort := flag.Int("metrics-port", 9101, "node i serves /metrics on 127.0.0.1:metrics-port+i")
	rollout := flag.Int("rollout", 50, "percentage of VMs migrated with v3 (the rest v1)")
	seed := flag.Uint64("seed", 1, "workload seed")
	flag.Parse()
	if err := run(*nodes, *vms, *vmSize<<20, *dirty*(1<<20), *interval, *parallel, *duration, *metricsPort, *rollout, *seed); err != nil {
		fmt.Fprintln(os.Stderr, "cluster:", err)
		os.Exit(1)
	}
}

func freePorts(n int) ([]string, error) {
	var ls []net.Listener
	var addrs []string
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		ls = append(ls, l)
		addrs = append(addrs, l.Addr().String())
	}
	for _, l := range ls {
		l.Close()
	}
	return addrs, nil
}

func run(n, nVMs int, vmBytes int64, dirty float64, interval time.Duration, parallel int, duration time.Duration, metricsPort, rollout int, seed uint64) error {
	if n < 2 {
		return errors.New("need at least 2 nodes")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, duration)
		defer cancel()
	}
	dir, err := os.MkdirTemp("", "dwcp-cluster-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)

	assAddrs, err := freePorts(n)
	if err != nil {
		return err
	}
	var ns []*node
	addrOf := map[string]string{}
	for i := range n {
		nd := &node{id: fmt.Sprintf("host-%d", i), reg: prometheus.NewRegistry(), guests: map[string]*dwcp.SyntheticVM{}}
		nd.m = metrics.New(nd.reg)
		acfg := ass.DefaultConfig(nd.id, assAddrs[i])
		for j, a := range assAddrs {
			if j != i {
				acfg.Peers = append(acfg.Peers, a)
			}
		}
		if nd.replica, err = ass.NewReplica(acfg, nd.m); err != nil {
			return fmt.Errorf("ass: %w", err)
		}
		defer nd.replica.Close()
		if err := nd.replica.Start(ctx); err != nil {
			return err
		}
		nd.state = ass.NewClusterState(nd.replica)
		ns = append(ns, nd)
	}
	// acp: one Raft group for the ownership registry (3 replicas at most;
	// in production each host would run one replica). Its metrics go to
	// host-0's endpoint.
	rc := acp.DefaultRaftConfig("", "")
	rc.NoSync = true
	rc.Logger = hclog.NewNullLogger()
	raft, err := acp.NewRaftCluster(ctx, min(n, 3), dir, rc, ns[0].m)
	if err != nil {
		return fmt.Errorf("acp: %w", err)
	}
	defer raft.Close()
	owners := acp.NewOwnershipClient(raft)
	ownership := &dwcp.ACPOwnership{Client: owners}

	// Hosts register themselves in the replicated state.
	for _, nd := range ns {
		h := ass.Host{ID: nd.id, Zone: "zone-a", Health: ass.HealthHealthy,
			Capacity: ass.Resources{CPUMillicores: 16000, MemoryBytes: int64(nVMs) * vmBytes}}
		if err := nd.state.SetHost(ctx, h); err != nil {
			return err
		}
	}
	for i, nd := range ns {
		placer, err := itp.NewPlacer(itp.DefaultConfig(), nd.m)
		if err != nil {
			return err
		}
		cfg := dwcp.DefaultConfig()
		cfg.NodeID = nd.id
		cfg.Metrics = nd.m
		cfg.Transport = &dwcp.AMSTTransport{Config: amst.Config{LingerTimeout: 3 * time.Second}, Metrics: nd.m}
		cfg.Codecs = nil
		cfg = dwcp.WithComponents(cfg, nd.m)
		cfg.Ownership = ownership
		cfg.State = &dwcp.ASSState{State: nd.state}
		cfg.Rollout = dwcp.Rollout{Percentage: rollout}
		mon, err := metrics.NewMonitor(nd.m, metrics.DefaultSLAConfig(), metrics.DefaultResourceConfig())
		if err != nil {
			return fmt.Errorf("monitor: %w", err)
		}
		defer mon.Close()
		cfg.SLA = mon.SLA
		nd := nd
		cfg.Placer = &dwcp.ITPPlacer{
			Placer: placer,
			Inventory: func(ctx context.Context) ([]itp.Host, itp.Links, error) {
				var hosts []itp.Host
				for _, h := range nd.state.Hosts() {
					var vmsOn []string
					for _, v := range nd.state.VMsOnHost(h.ID) {
						vmsOn = append(vmsOn, v.ID)
					}
					hosts = append(hosts, itp.Host{ID: h.ID, Site: "site-a", Zone: h.Zone, VMs: vmsOn,
						Capacity: itp.Resources{MilliCPU: h.Capacity.CPUMillicores, MemoryBytes: h.Capacity.MemoryBytes},
						Used:     itp.Resources{MilliCPU: h.Usage.CPUMillicores, MemoryBytes: h.Usage.MemoryBytes}})
				}
				return hosts, nil, nil
			},
			Address: func(host string) (string, error) {
				if a, ok := addrOf[host]; ok {
					return a, nil
				}
				return "", fmt.Errorf("no address for %s", host)
			},
		}
		l, err := cfg.Transport.Listen("127.0.0.1:0")
		if err != nil {
			return err
		}
		defer l.Close()
		nd.addr = l.Addr()
		addrOf[nd.id] = nd.addr
		incoming := map[string]*dwcp.SyntheticVM{}
		var imu sync.Mutex
		cfg.Incoming = func(ctx context.Context, spec dwcp.IncomingSpec) (dwcp.IncomingMemory, error) {
			vm, err := dwcp.NewIncomingSyntheticVM(spec, dwcp.SyntheticConfig{Seed: seed + uint64(i), DirtyRate: dirty})
			if err == nil {
				imu.Lock()
				incoming[spec.MigrationID] = vm
				imu.Unlock()
			}
			return vm, err
		}
		if nd.engine, err = dwcp.New(cfg); err != nil {
			return err
		}
		defer nd.engine.Close()
		go nd.engine.Serve(ctx, l, func(r *dwcp.Result, err error) {
			imu.Lock()
			vm := incoming[r.MigrationID]
			delete(incoming, r.MigrationID)
			imu.Unlock()
			if err == nil && vm != nil {
				nd.mu.Lock()
				nd.guests[r.VMID] = vm
				nd.mu.Unlock()
			}
		})
		srv, err := metrics.Serve(ctx, fmt.Sprintf("127.0.0.1:%d", metricsPort+i), nd.reg)
		if err != nil {
			return fmt.Errorf("metrics port: %w", err)
		}
		defer srv.Close()
		fmt.Printf("%s: amst %s, ass %s, metrics %s\n", nd.id, nd.addr, assAddrs[i], srv.URL())
	}

	// Workload: VMs start spread over the hosts.
	for i := range nVMs {
		nd := ns[i%n]
		id := fmt.Sprintf("vm-%02d", i)
		vm, err := dwcp.NewSyntheticVM(dwcp.SyntheticConfig{Size: vmBytes, Seed: seed + uint64(i), DirtyRate: dirty})
		if err != nil {
			return err
		}
		if _, err := owners.Register(ctx, id, nd.id); err != nil {
			return fmt.Errorf("register %s: %w", id, err)
		}
		if err := nd.state.SetVM(ctx, ass.VM{ID: id, Owner: nd.id, Host: nd.id, State: ass.VMRunning, Spec: ass.VMSpec{MemoryBytes: vmBytes, CPUMillicores: 1000}}); err != nil {
			return err
		}
		if err := nd.state.AddHostUsage(ctx, nd.id, ass.Resources{MemoryBytes: vmBytes, CPUMillicores: 1000}); err != nil {
			return err
		}
		nd.guests[id] = vm
	}
	fmt.Printf("%d VMs of %d MiB on %d hosts; a migration every %v (rollout %d%% v3)\n", nVMs, vmBytes>>20, n, interval, rollout)

	rng := rand.New(rand.NewPCG(seed, 7))
	sem := make(chan struct{}, parallel)
	var wg sync.WaitGroup
	var ok, failed atomic.Int64
	busy := map[string]bool{}
	var bmu sync.Mutex
	tick := time.NewTicker(interval)
	defer tick.Stop()
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case <-tick.C:
		}
		// Pick a VM that is not migrating, on whichever host runs it.
		var src *node
		var vmID string
		var guest *dwcp.SyntheticVM
		bmu.Lock()
		for range 10 {
			nd := ns[rng.IntN(n)]
			nd.mu.Lock()
			for id, g := range nd.guests {
				if !busy[id] {
					src, vmID, guest = nd, id, g
					break
				}
			}
			nd.mu.Unlock()
			if src != nil {
				break
			}
		}
		if src == nil {
			bmu.Unlock()
			continue
		}
		busy[vmID] = true
		bmu.Unlock()
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			break loop
		}
		wg.Go(func() {
			defer func() { <-sem }()
			defer func() { bmu.Lock(); delete(busy, vmID); bmu.Unlock() }()
			res, err := src.engine.Migrate(ctx, dwcp.MigrationRequest{VMID: vmID, Memory: guest})
			if err != nil {
				failed.Add(1)
				fmt.Printf("%s %s from %s: FAILED: %v\n", time.Now().Format("15:04:05"), vmID, src.id, err)
				return
			}
			ok.Add(1)
			src.mu.Lock()
			delete(src.guests, vmID)
			src.mu.Unlock()
			guest.Close()
			fmt.Printf("%s %s %s -> %s (%s): %d rounds, %.1f MiB wire, %v total, %v downtime, epoch %d\n",
				time.Now().Format("15:04:05"), vmID, src.id, res.Destination, res.Version, res.Rounds,
				float64(res.WireBytes)/(1<<20), res.Duration.Round(time.Millisecond), res.Downtime.Round(100*time.Microsecond), res.Epoch)
		})
	}
	wg.Wait()
	fmt.Printf("done: %d migrations succeeded, %d failed\n", ok.Load(), failed.Load())
	for _, nd := range ns {
		nd.mu.Lock()
		for _, g := range nd.guests {
			g.Close()
		}
		nd.mu.Unlock()
	}
	return nil
}
