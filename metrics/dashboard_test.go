package metrics

import (
	"encoding/json"
	"os"
	"strings"
	"testing"
)

const dashboardPath = "grafana/dwcp-v3-phase6.json"

type grafanaPanel struct {
	ID      int    `json:"id"`
	Type    string `json:"type"`
	Title   string `json:"title"`
	GridPos struct {
		H, W, X, Y int
	} `json:"gridPos"`
	Targets []struct {
		RefID string `json:"refId"`
		Expr  string `json:"expr"`
	} `json:"targets"`
}

type grafanaDashboard struct {
	Title  string         `json:"title"`
	UID    string         `json:"uid"`
	Panels []grafanaPanel `json:"panels"`
}

func loadDashboard(t testing.TB) grafanaDashboard {
	t.Helper()
	raw, err := os.ReadFile(dashboardPath)
	if err != nil {
		t.Fatal(err)
	}
	var d grafanaDashboard
	if err := json.Unmarshal(raw, &d); err != nil {
		t.Fatalf("%s is not valid JSON: %v", dashboardPath, err)
	}
	return d
}

// dashboardQueries returns every panel target's expression.
func dashboardQueries(t testing.TB) []string {
	var out []string
	for _, p := range loadDashboard(t).Panels {
		for _, tg := range p.Targets {
			out = append(out, tg.Expr)
		}
	}
	return out
}

func normalizeQuery(q string) string { return strings.Join(strings.Fields(q), " ") }

func TestDashboardRunsEverySpecQuery(t *testing.T) {
	have := map[string]bool{}
	for _, q := range dashboardQueries(t) {
		have[normalizeQuery(q)] = true
	}
	for _, q := range runnableSpecQueries() {
		if !have[normalizeQuery(q)] {
			t.Errorf("no dashboard panel runs the spec query %q", q)
		}
	}
}

func TestDashboardWellFormed(t *testing.T) {
	d := loadDashboard(t)
	if d.UID != "dwcp-v3-phase6-live" || d.Title == "" {
		t.Errorf("uid %q title %q", d.UID, d.Title)
	}
	ids := map[int]bool{}
	components := map[string]bool{}
	for _, p := range d.Panels {
		if ids[p.ID] {
			t.Errorf("panel id %d used twice", p.ID)
		}
		ids[p.ID] = true
		if p.GridPos.X < 0 || p.GridPos.W <= 0 || p.GridPos.X+p.GridPos.W > 24 {
			t.Errorf("panel %q: gridPos %+v outside the 24-column grid", p.Title, p.GridPos)
		}
		if p.Type != "row" && len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			if strings.TrimSpace(tg.Expr) == "" || tg.RefID == "" {
				t.Errorf("panel %q: empty target", p.Title)
			}
			for _, name := range metricNameRE.FindAllString(tg.Expr, -1) {
				if !isCatalogueSeries(name) {
					t.Errorf("panel %q uses %s, which the catalogue lacks", p.Title, name)
				}
				for _, c := range []string{"amst", "hde", "pba", "acp", "ass", "itp"} {
					if strings.HasPrefix(name, "dwcp_v3_"+c+"_") {
						components[c] = true
					}
				}
			}
		}
	}
	for _, c := range []string{"amst", "hde", "pba", "acp", "ass", "itp"} {
		if !components[c] {
			t.Errorf("no panel shows a %s metric", c)
		}
	}
}
