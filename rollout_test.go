package dwcp

import (
	"fmt"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/dwcp/dwcp/metrics"
)

func TestRolloutChoose(t *testing.T) {
	for _, tc := range []struct {
		name      string
		r         Rollout
		requested Version
		want      Version
	}{
		{"kill switch beats a v3 request", Rollout{Percentage: 100, KillSwitch: true}, V3, V1},
		{"explicit v3", Rollout{Percentage: 0}, V3, V3},
		{"explicit v1", Rollout{Percentage: 100}, V1, V1},
		{"auto at 0%", Rollout{Percentage: 0}, VersionAuto, V1},
		{"auto at 100%", Rollout{Percentage: 100}, VersionAuto, V3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.r.Choose("vm-7", tc.requested); got != tc.want {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
		})
	}
}

func TestRolloutShareIsDeterministicAndMonotone(t *testing.T) {
	const n = 20000
	for _, pct := range []int{1, 10, 25, 50, 90} {
		v3 := 0
		for i := range n {
			id := fmt.Sprintf("vm-%d", i)
			got := Rollout{Percentage: pct}.Choose(id, VersionAuto)
			if got != (Rollout{Percentage: pct}).Choose(id, VersionAuto) {
				t.Fatal("not deterministic")
			}
			if got == V3 {
				v3++
				// A VM on v3 stays on v3 as the rollout grows.
				if (Rollout{Percentage: pct + 5}).Choose(id, VersionAuto) != V3 {
					t.Fatalf("%s left v3 when the rollout grew from %d%%", id, pct)
				}
			}
		}
		share := 100 * float64(v3) / n
		if share < float64(pct)-1.5 || share > float64(pct)+1.5 {
			t.Errorf("%d%% rollout gave %.1f%% v3", pct, share)
		}
	}
}

func TestRolloutGauges(t *testing.T) {
	m := metrics.New(nil)
	e, err := New(Config{Metrics: m, Rollout: Rollout{Percentage: 25}})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	if got := testutil.ToFloat64(m.RolloutStage); got != 3 {
		t.Fatalf("stage %v at 25%%, want 3", got)
	}
	if err := e.SetRollout(Rollout{Percentage: 25, KillSwitch: true}); err != nil {
		t.Fatal(err)
	}
	if testutil.ToFloat64(m.RolloutKillSwitch) != 1 || testutil.ToFloat64(m.RolloutStage) != 0 {
		t.Fatal("kill switch not published")
	}
	if err := e.SetRollout(Rollout{Percentage: 101}); err == nil {
		t.Fatal("101% accepted")
	}
}

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		mut  func(*Config)
		want string
	}{
		{"downtime", func(c *Config) { c.DowntimeTarget = -1 }, "downtime target"},
		{"rounds", func(c *Config) { c.MaxRounds = 20000 }, "max rounds 20000"},
		{"batch", func(c *Config) { c.BatchPages = 5000 }, "batch pages 5000"},
		{"auto-converge", func(c *Config) { c.AutoConverge = AutoConvergeConfig{Initial: 50, Max: 20, TriggerRatio: 0.5} }, "auto-converge"},
		{"rollout", func(c *Config) { c.Rollout.Percentage = -3 }, "rollout percentage -3"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := DefaultConfig()
			tc.mut(&c)
			err := c.Validate()
			if err == nil || !contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error naming %q", err, tc.want)
			}
		})
	}
	if err := DefaultConfig().Validate(); err != nil {
		t.Fatal(err)
	}
}

func contains(s, sub string) bool {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return true
		}
	}
	return false
}
