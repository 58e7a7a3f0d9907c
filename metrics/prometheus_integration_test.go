package metrics

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// promResponse is the part of the Prometheus HTTP API answer we read.
type promResponse struct {
	Status    string `json:"status"`
	ErrorType string `json:"errorType"`
	Error     string `json:"error"`
	Data      struct {
		ResultType string            `json:"resultType"`
		Result     []json.RawMessage `json:"result"`
		Groups     []struct {
			Rules []struct {
				Name   string `json:"name"`
				Health string `json:"health"`
				Error  string `json:"lastError"`
			} `json:"rules"`
		} `json:"groups"`
	} `json:"data"`
}

// TestPrometheusRunsSpecQueries starts Debian's prometheus on loopback with
// our rules, scraping a registry that records on every metric, and runs
// every spec query (and every dashboard query) through the HTTP API: each
// must parse and the spec's must return data. It skips when the prometheus
// binary is absent (apt-get install prometheus; .ci/run installs it).
func TestPrometheusRunsSpecQueries(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a Prometheus server; skipped with -short")
	}
	bin, err := exec.LookPath("prometheus")
	if err != nil {
		t.Skip("prometheus binary not installed (apt-get install prometheus); skipping the live PromQL test")
	}
	ctx, cancel := context.WithTimeout(t.Context(), 40*time.Second)
	defer cancel()

	// The exporter: every series exists, and a writer keeps counters and
	// histograms moving so that rate() and histogram_quantile() have data.
	reg := prometheus.NewRegistry()
	m := New(reg)
	recordEverySeries(t, m, func(d Descriptor) float64 {
		if d.Type == TypeHistogram {
			return 0.2
		}
		return 3
	})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			for _, c := range pathComponents {
				m.MigrationLatency.WithLabelValues(c).Observe(0.001 * float64(1+i%400))
			}
			m.Errors.WithLabelValues(ComponentACP, ErrorConsensusFailure).Inc()
			m.AnomalyDetections.WithLabelValues(AnomalyLatencySpike, SeverityWarning).Inc()
			m.Migrations.WithLabelValues(VersionV3, ResultSuccess).Inc()
		}
	}()
	defer wg.Wait()
	defer cancel()

	srv, err := Serve(ctx, "127.0.0.1:0", reg)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()

	dir := t.TempDir()
	rules, err := filepath.Abs("prometheus/rules.yml")
	if err != nil {
		t.Fatal(err)
	}
	config := fmt.Sprintf(`global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files:
  - %q
scrape_configs:
  - job_name: dwcp
    static_configs:
      - targets: [%q]
`, rules, srv.Addr())
	cfgPath := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(cfgPath, []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	promAddr := freeLoopbackAddr(t)
	var logs bytes.Buffer
	cmd := exec.CommandContext(ctx, bin,
		"--config.file="+cfgPath,
		"--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+promAddr,
		"--log.level=warn",
	)
	cmd.Stdout, cmd.Stderr = &logs, &logs
	cmd.Cancel = func() error { return cmd.Process.Signal(os.Interrupt) }
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		cancel()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("prometheus output:\n%s", logs.String())
		}
	}()

	api := "http://" + promAddr + "/api/v1/"
	queries := runnableSpecQueries()
	start := time.Now()
	// The scrape manager applies targets about 5 s after start; rate()
	// needs two scrapes. Poll until every spec query returns data.
	var missing []string
	for {
		missing = missing[:0]
		for _, q := range queries {
			resp, err := promQuery(ctx, api, q)
			if err != nil || resp.Status != "success" || len(resp.Data.Result) == 0 {
				missing = append(missing, q)
			}
		}
		if len(missing) == 0 {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("after %v these spec queries still return no data: %q", time.Since(start).Round(time.Millisecond), missing)
		case <-time.After(500 * time.Millisecond):
		}
	}
	t.Logf("all %d spec queries returned data after %v", len(queries), time.Since(start).Round(time.Millisecond))

	// Every dashboard query must at least parse and evaluate.
	for _, q := range dashboardQueries(t) {
		resp, err := promQuery(ctx, api, q)
		if err != nil {
			t.Fatal(err)
		}
		if resp.Status != "success" {
			t.Errorf("dashboard query %q: %s: %s", q, resp.ErrorType, resp.Error)
		}
	}
	// The spec's own peak query is rejected by the server, which is why the
	// dashboard runs the subquery form.
	for bad := range specCorrections {
		resp, err := promQuery(ctx, api, bad)
		if err != nil {
			t.Fatal(err)
		}
		if resp.Status == "success" {
			t.Errorf("spec query %q now parses; drop its correction", bad)
		}
	}
	// The rules loaded and evaluated without error.
	resp, err := promGet(ctx, api+"rules")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, g := range resp.Data.Groups {
		for _, r := range g.Rules {
			n++
			if r.Health == "err" {
				t.Errorf("rule %s: %s", r.Name, r.Error)
			}
		}
	}
	if n == 0 {
		t.Error("the server loaded no rules")
	}
	if err := CheckLabelValues(reg); err != nil {
		t.Error(err)
	}
}

func promQuery(ctx context.Context, api, q string) (promResponse, error) {
	return promGet(ctx, api+"query?query="+url.QueryEscape(q))
}

func promGet(ctx context.Context, u string) (promResponse, error) {
	var out promResponse
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return out, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return out, err
	}
	defer resp.Body.Close()
	err = json.NewDecoder(resp.Body).Decode(&out)
	return out, err
}

// freeLoopbackAddr returns a loopback address whose port was free a moment
// ago (the child process binds it; a collision fails the test loudly).
func freeLoopbackAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}
