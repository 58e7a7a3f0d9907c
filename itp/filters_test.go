package itp

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

func host(id string, cpu, memGiB int64) Host {
	return Host{ID: id, Site: "s", Zone: "z1", Capacity: Resources{MilliCPU: cpu * 1000, MemoryBytes: memGiB * gib}, Labels: map[string]string{}}
}

type denyHost string

func (d denyHost) Name() string                   { return "deny-" + string(d) }
func (d denyHost) Filter(c *Cycle, host int) bool { return c.Host(host).ID != string(d) }

// TestFilters is a table of every built-in filter: each case has one host
// the filter must reject and one it must accept (or, with no acceptable
// host, the NoFitError counts).
func TestFilters(t *testing.T) {
	small := VM{ID: "v", Request: Resources{MilliCPU: 2000, MemoryBytes: 4 * gib}}
	with := func(f func(*VM)) VM { v := small; f(&v); return v }
	hostWith := func(id string, f func(*Host)) Host { h := host(id, 16, 64); f(&h); return h }
	slowLinks := Links{{"s", "far"}: {BandwidthBytesPerSec: 1e6, RTT: 100 * time.Millisecond}}
	cases := []struct {
		name   string
		vm     VM
		hosts  []Host
		links  Links
		extra  []Filter
		want   string // chosen host, or "" for no fit
		filter string // filter that must have excluded hosts
		count  int
	}{
		{"cordoned", small, []Host{hostWith("a", func(h *Host) { h.Cordoned = true }), host("b", 16, 64)}, nil, nil, "b", FilterCordoned, 1},
		{"current-host", with(func(v *VM) { v.CurrentHost = "a" }), []Host{host("a", 16, 64), host("b", 16, 64)}, nil, nil, "b", FilterCurrentHost, 1},
		{"resource-fit cpu", small, []Host{host("a", 1, 64), host("b", 16, 64)}, nil, nil, "b", FilterResourceFit, 1},
		{"resource-fit memory", small, []Host{host("a", 16, 2), host("b", 16, 64)}, nil, nil, "b", FilterResourceFit, 1},
		{"resource-fit used", small, []Host{hostWith("a", func(h *Host) { h.Used = Resources{MilliCPU: 15000} }), host("b", 16, 64)}, nil, nil, "b", FilterResourceFit, 1},
		{"resource-fit network", with(func(v *VM) { v.Request.NetworkBitsPerSec = 2e9 }),
			[]Host{hostWith("a", func(h *Host) { h.Capacity.NetworkBitsPerSec = 1e9 }), hostWith("b", func(h *Host) { h.Capacity.NetworkBitsPerSec = 0 })}, nil, nil, "b", FilterResourceFit, 1},
		{"resource-fit exact boundary", with(func(v *VM) { v.Request = Resources{MilliCPU: 16000, MemoryBytes: 64 * gib} }), []Host{host("a", 16, 64)}, nil, nil, "a", "", 0},
		{"allowed-zones", with(func(v *VM) { v.AllowedZones = []string{"z2"} }), []Host{host("a", 16, 64), hostWith("b", func(h *Host) { h.Zone = "z2" })}, nil, nil, "b", FilterAllowedZones, 1},
		{"min-reliability", with(func(v *VM) { v.MinReliability = 0.999 }),
			[]Host{hostWith("a", func(h *Host) { h.Reliability = 0.99 }), hostWith("b", func(h *Host) { h.Reliability = 0.9999 })}, nil, nil, "b", FilterMinReliability, 1},
		{"label affinity hard", with(func(v *VM) { v.Rules = []Rule{{Kind: Affinity, Hard: true, LabelKey: "gpu"}} }),
			[]Host{host("a", 16, 64), hostWith("b", func(h *Host) { h.Labels["gpu"] = "a100" })}, nil, nil, "b", FilterLabelRules, 1},
		{"label anti-affinity hard with value", with(func(v *VM) { v.Rules = []Rule{{Kind: AntiAffinity, Hard: true, LabelKey: "gpu", LabelValue: "a100"}} }),
			[]Host{hostWith("a", func(h *Host) { h.Labels["gpu"] = "a100" }), hostWith("b", func(h *Host) { h.Labels["gpu"] = "t4" })}, nil, nil, "b", FilterLabelRules, 1},
		{"zone rule hard", with(func(v *VM) { v.Rules = []Rule{{Kind: AntiAffinity, Hard: true, Zones: []string{"z1"}}} }),
			[]Host{host("a", 16, 64), hostWith("b", func(h *Host) { h.Zone = "z3" })}, nil, nil, "b", FilterZoneRules, 1},
		{"vm affinity host", with(func(v *VM) { v.Rules = []Rule{{Kind: Affinity, Hard: true, VMs: []string{"db"}}} }),
			[]Host{host("a", 16, 64), hostWith("b", func(h *Host) { h.VMs = []string{"db"} }), hostWith("c", func(h *Host) { h.VMs = []string{"db"}; h.Used.MilliCPU = 16000 })}, nil, nil, "b", FilterVMAffinity, 1},
		{"vm affinity vacuous", with(func(v *VM) { v.Rules = []Rule{{Kind: Affinity, Hard: true, VMs: []string{"nowhere"}}} }),
			[]Host{host("a", 16, 64)}, nil, nil, "a", "", 0},
		{"vm affinity zone", with(func(v *VM) { v.Rules = []Rule{{Kind: Affinity, Hard: true, VMs: []string{"db"}, Scope: ScopeZone}} }),
			[]Host{hostWith("a", func(h *Host) { h.Zone = "z9" }), host("b", 16, 64), hostWith("c", func(h *Host) { h.VMs = []string{"db"}; h.Used.MilliCPU = 16000 })}, nil, nil, "b", FilterVMAffinity, 1},
		{"vm anti-affinity host ignores self", with(func(v *VM) { v.Rules = []Rule{{Kind: AntiAffinity, Hard: true, VMs: []string{"web", "v"}}} }),
			[]Host{hostWith("a", func(h *Host) { h.VMs = []string{"web"} }), host("b", 16, 64)}, nil, nil, "b", FilterVMAntiAffinity, 1},
		{"vm anti-affinity zone", with(func(v *VM) {
			v.Rules = []Rule{{Kind: AntiAffinity, Hard: true, VMs: []string{"web"}, Scope: ScopeZone}}
		}),
			[]Host{hostWith("a", func(h *Host) { h.VMs = []string{"web"} }), host("b", 16, 64), hostWith("c", func(h *Host) { h.Zone = "z2" })}, nil, nil, "c", FilterVMAntiAffinity, 2},
		{"running vm anti-affinity", small,
			[]Host{hostWith("a", func(h *Host) {
				h.VMs = []string{"x"}
				h.RunningRules = []RunningRule{{VMID: "x", Rule: Rule{Kind: AntiAffinity, Hard: true, VMs: []string{"v"}}}}
			}), host("b", 16, 64)}, nil, nil, "b", FilterVMAntiAffinity, 1},
		{"running vm anti-affinity zone", small,
			[]Host{hostWith("a", func(h *Host) {
				h.VMs = []string{"x"}
				h.RunningRules = []RunningRule{{VMID: "x", Rule: Rule{Kind: AntiAffinity, Hard: true, VMs: []string{"v"}, Scope: ScopeZone}}}
			}), host("b", 16, 64), hostWith("c", func(h *Host) { h.Zone = "z2" })}, nil, nil, "c", FilterVMAntiAffinity, 2},
		// v prefers a (soft label); the running VM's hard affinity wins.
		{"running vm affinity pulls", with(func(v *VM) { v.Rules = []Rule{{Kind: Affinity, LabelKey: "fast"}} }),
			[]Host{hostWith("a", func(h *Host) { h.Labels["fast"] = "1" }), hostWith("b", func(h *Host) {
				h.VMs = []string{"y"}
				h.Used.MilliCPU = 8000
				h.RunningRules = []RunningRule{{VMID: "y", Rule: Rule{Kind: Affinity, Hard: true, VMs: []string{"v", "w"}}}}
			})}, nil, nil, "b", "", 0},
		{"running vm affinity already met", with(func(v *VM) { v.Rules = []Rule{{Kind: Affinity, LabelKey: "fast"}} }),
			[]Host{hostWith("a", func(h *Host) { h.Labels["fast"] = "1" }), hostWith("b", func(h *Host) {
				h.VMs = []string{"y", "w"}
				h.Used.MilliCPU = 8000
				h.RunningRules = []RunningRule{{VMID: "y", Rule: Rule{Kind: Affinity, Hard: true, VMs: []string{"v", "w"}}}}
			})}, nil, nil, "a", "", 0},
		{"running rule naming others", small,
			[]Host{hostWith("a", func(h *Host) {
				h.VMs = []string{"x"}
				h.RunningRules = []RunningRule{{VMID: "x", Rule: Rule{Kind: AntiAffinity, Hard: true, VMs: []string{"other"}}}}
			})}, nil, nil, "a", "", 0},
		{"link missing", with(func(v *VM) { v.SourceSite = "far" }),
			[]Host{hostWith("a", func(h *Host) { h.Site = "nolink" }), host("b", 16, 64)}, slowLinks, nil, "b", FilterLink, 1},
		{"link zero bandwidth", with(func(v *VM) { v.SourceSite = "s" }),
			[]Host{host("a", 16, 64)}, Links{{"s", "s"}: {}}, nil, "", FilterLink, 1},
		{"max-downtime", with(func(v *VM) {
			v.SourceSite = "far"
			v.MaxDowntime = 500 * time.Millisecond
			v.DirtyRateBytesPerSec = 5e6
		}),
			[]Host{host("a", 16, 64), hostWith("b", func(h *Host) { h.Site = "far" })}, slowLinks, nil, "b", FilterMaxDowntime, 1},
		{"extra filter", small, []Host{host("a", 16, 64), host("b", 16, 64)}, nil, []Filter{denyHost("a")}, "b", "deny-a", 1},
		{"charged to first filter only", with(func(v *VM) { v.AllowedZones = []string{"z2"} }),
			[]Host{hostWith("a", func(h *Host) { h.Cordoned = true }), host("b", 1, 1)}, nil, nil, "", FilterCordoned, 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := DefaultConfig()
			cfg.ExtraFilters = tc.extra
			p := mustPlacer(t, cfg)
			d, err := p.Place(context.Background(), tc.vm, tc.hosts, tc.links)
			if tc.want != "" {
				if err != nil {
					t.Fatalf("want %s, got %v", tc.want, err)
				}
				if d.HostID != tc.want {
					t.Fatalf("chose %s, want %s", d.HostID, tc.want)
				}
				if d.Feasible < 1 || d.Feasible > len(tc.hosts)-tc.count {
					t.Fatalf("feasible %d of %d hosts with %d excluded", d.Feasible, len(tc.hosts), tc.count)
				}
			}
			// The excluding filter's count shows in the NoFitError once
			// every acceptable host is removed too.
			if tc.filter == "" {
				return
			}
			hosts := tc.hosts
			if tc.want != "" {
				hosts = nil
				for _, h := range tc.hosts {
					if h.ID != tc.want {
						hosts = append(hosts, h)
					}
				}
			}
			_, err = p.Place(context.Background(), tc.vm, hosts, tc.links)
			var nf *NoFitError
			if !errors.As(err, &nf) {
				t.Fatalf("want a NoFitError, got %v", err)
			}
			if got := nf.Excluded(tc.filter); got < tc.count || (tc.want == "" && got != tc.count) {
				t.Fatalf("%s excluded %d, want %d (%v)", tc.filter, got, tc.count, nf)
			}
			if !strings.Contains(nf.Error(), tc.filter+" excluded") {
				t.Fatalf("message %q does not name %s", nf.Error(), tc.filter)
			}
		})
	}
}

func TestRunningRulesValidated(t *testing.T) {
	p := mustPlacer(t, DefaultConfig())
	h := host("a", 8, 8)
	h.RunningRules = []RunningRule{{VMID: "x", Rule: Rule{Kind: Affinity}}}
	_, err := p.Place(context.Background(), VM{ID: "v"}, []Host{h}, nil)
	if err == nil || !strings.Contains(err.Error(), `host "a" RunningRules[0] (vm "x")`) {
		t.Fatalf("got %v", err)
	}
	h.RunningRules[0] = RunningRule{Rule: Rule{Kind: Affinity, VMs: []string{"v"}}}
	if _, err := p.PlaceBatch(context.Background(), []VM{{ID: "v"}}, []Host{h}, nil); err == nil || !strings.Contains(err.Error(), "empty VMID") {
		t.Fatalf("got %v", err)
	}
}

func TestNoFitErrorMessage(t *testing.T) {
	p := mustPlacer(t, DefaultConfig())
	hosts := []Host{host("a", 1, 1), host("b", 1, 1), host("c", 16, 64)}
	hosts[2].Cordoned = true
	_, err := p.Place(context.Background(), VM{ID: "big", Request: Resources{MilliCPU: 8000}}, hosts, nil)
	want := `itp: no host fits vm "big" (3 hosts: cordoned excluded 1, resource-fit excluded 2)`
	if err == nil || err.Error() != want || !errors.Is(err, ErrNoFit) {
		t.Fatalf("got %v, want %s", err, want)
	}
}
