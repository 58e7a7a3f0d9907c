package metrics

import (
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the catalogue tables in doc.go and README.md from Catalogue()")

// renderCatalogueTable renders the catalogue as a markdown table, one line
// per metric.
func renderCatalogueTable() []string {
	lines := []string{
		"| name | type | labels = allowed values | unit | meaning | recorded by |",
		"|---|---|---|---|---|---|",
	}
	for _, d := range Catalogue() {
		labels := "-"
		if len(d.Labels) > 0 {
			parts := make([]string, len(d.Labels))
			for i, l := range d.Labels {
				parts[i] = l.Name + " = " + renderValues(l.Values)
			}
			labels = strings.Join(parts, "; ")
		}
		lines = append(lines, fmt.Sprintf("| %s | %s | %s | %s | %s | %s |", d.Name, d.Type, labels, d.Unit, d.Help, d.Recorder))
	}
	return lines
}

// renderValues writes a run of consecutive integers 1, 2, ..., n as "1..n".
func renderValues(values []string) string {
	consecutive := len(values) > 3
	for i, v := range values {
		if n, err := strconv.Atoi(v); err != nil || n != i+1 {
			consecutive = false
			break
		}
	}
	if consecutive {
		return "1.." + values[len(values)-1]
	}
	return strings.Join(values, ", ")
}

// replaceBlock swaps the lines strictly between the line starting with
// begin and the next line starting with end.
func replaceBlock(t *testing.T, path, begin, end string, block []string) (before, after string) {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(raw), "\n")
	b, e := -1, -1
	for i, l := range lines {
		if b < 0 && strings.HasPrefix(l, begin) {
			b = i
		} else if b >= 0 && strings.HasPrefix(l, end) {
			e = i
			break
		}
	}
	if b < 0 || e < 0 {
		t.Fatalf("%s: markers %q .. %q not found", path, begin, end)
	}
	out := append(append(append([]string(nil), lines[:b+1]...), block...), lines[e:]...)
	return string(raw), strings.Join(out, "\n")
}

func checkOrUpdate(t *testing.T, path, begin, end string, block []string) {
	t.Helper()
	before, after := replaceBlock(t, path, begin, end, block)
	if before == after {
		return
	}
	if *update {
		if err := os.WriteFile(path, []byte(after), 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("rewrote %s", path)
		return
	}
	t.Errorf("%s: the catalogue table differs from Catalogue(); run go test ./metrics -run TestDocCatalogue -update", path)
}

// TestDocCatalogue keeps the documented tables equal to Catalogue(), which
// New builds the registry from.
func TestDocCatalogue(t *testing.T) {
	table := renderCatalogueTable()

	doc := []string{"//"}
	doc = append(doc, "// Generated from [Catalogue] by \"go test ./metrics -run TestDocCatalogue",
		"// -update\"; a test fails when this table, the README's copy, the registry",
		"// and Catalogue disagree. Counters end in _total; histograms also export",
		"// _bucket, _sum and _count series.",
		"//")
	for _, l := range table {
		doc = append(doc, "//\t"+l)
	}
	doc = append(doc, "//")
	checkOrUpdate(t, "doc.go", "// # Catalogue", "// Histogram buckets:", doc)

	readme := append([]string{""}, table...)
	readme = append(readme, "")
	checkOrUpdate(t, "README.md", "<!-- catalogue:start", "<!-- catalogue:end", readme)
}
