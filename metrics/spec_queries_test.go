package metrics

import (
	"bufio"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// specPath is the operators' spec, present when the shared/ tree is checked
// out next to the repository.
const specPath = "../../shared/spec/phase6-production-metrics-analysis.md"

// specQueries is a copy of every PromQL line in the spec's ```promql blocks,
// verbatim, so the tests run without shared/. TestSpecQueriesCopyIsCurrent
// keeps it in sync when the spec is present.
var specQueries = []string{
	"histogram_quantile(0.50, sum(rate(dwcp_v3_migration_latency_seconds_bucket[5m])) by (le))",
	"histogram_quantile(0.95, sum(rate(dwcp_v3_migration_latency_seconds_bucket[5m])) by (le))",
	"histogram_quantile(0.99, sum(rate(dwcp_v3_migration_latency_seconds_bucket[5m])) by (le))",
	"histogram_quantile(0.99, sum(rate(dwcp_v3_migration_latency_seconds_bucket[5m])) by (le, component))",
	"avg(dwcp_v3_throughput_bytes_per_second) / 1e9",
	"max_over_time(avg(dwcp_v3_throughput_bytes_per_second)[24h]) / 1e9",
	"avg(dwcp_v3_throughput_bytes_per_second) by (transport) / 1e9",
	"sum(rate(dwcp_v3_errors_total[5m]))",
	"sum by (error_type) (increase(dwcp_v3_errors_total[1h]))",
	"dwcp_v3_amst_throughput_gbps",
	"dwcp_v3_amst_active_streams",
	"dwcp_v3_amst_stream_utilization_percent",
	"avg(dwcp_v3_sla_compliance) * 100",
	"avg(dwcp_v3_sla_compliance) by (sla_type) * 100",
	"sum(increase(dwcp_v3_anomaly_detections_total[24h])) by (anomaly_type, severity)",
	"avg(dwcp_v3_resource_utilization_percent) by (resource_type)",
}

// specCorrections maps spec queries that are not valid PromQL to the query
// our dashboard and tests run instead. A range over an expression needs
// subquery syntax ([24h:]); "[24h]" after avg(...) is a parse error
// ("ranges only allowed for vector selectors").
var specCorrections = map[string]string{
	"max_over_time(avg(dwcp_v3_throughput_bytes_per_second)[24h]) / 1e9": "max_over_time(avg(dwcp_v3_throughput_bytes_per_second)[24h:]) / 1e9",
}

// runnableSpecQueries returns the spec's queries with corrections applied.
func runnableSpecQueries() []string {
	out := make([]string, len(specQueries))
	for i, q := range specQueries {
		if c, ok := specCorrections[q]; ok {
			q = c
		}
		out[i] = q
	}
	return out
}

// extractSpecQueries returns every non-empty line of the ```promql blocks of
// the markdown file at path.
func extractSpecQueries(t testing.TB, path string) []string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Skipf("spec not present (%v); using the copy in specQueries", err)
	}
	defer f.Close()
	var out []string
	in := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "```promql":
			in = true
		case in && strings.HasPrefix(line, "```"):
			in = false
		case in && line != "":
			out = append(out, line)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestSpecQueriesCopyIsCurrent(t *testing.T) {
	got := extractSpecQueries(t, specPath)
	if !slices.Equal(got, specQueries) {
		t.Fatalf("the spec's queries changed; update specQueries.\nspec: %q\ncopy: %q", got, specQueries)
	}
}

var metricNameRE = regexp.MustCompile(`dwcp_v3_[a-z0-9_]+`)

// TestSpecQueriesUseCatalogueMetrics checks each name a spec query uses is a
// catalogue metric (or its histogram _bucket/_sum/_count series).
func TestSpecQueriesUseCatalogueMetrics(t *testing.T) {
	for _, q := range specQueries {
		for _, name := range metricNameRE.FindAllString(q, -1) {
			if !isCatalogueSeries(name) {
				t.Errorf("query %q uses %s, which the catalogue lacks", q, name)
			}
		}
	}
}

func isCatalogueSeries(name string) bool {
	if _, ok := Lookup(name); ok {
		return true
	}
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		if base, ok := strings.CutSuffix(name, suffix); ok {
			if d, ok := Lookup(base); ok && d.Type == TypeHistogram {
				return true
			}
		}
	}
	return false
}
