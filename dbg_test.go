package dwcp

import (
	"context"
	"testing"
)

func TestDbg(t *testing.T) {
	for _, v := range []Version{V1, V3} {
		h := newHarness(t, func(c *Config) {
			c.Codecs = &HDECodecs{Metrics: c.Metrics}
			c.NewForecaster = PBAForecasters(c.Metrics)
		})
		vm := newTestVM(t, 256<<20, 32<<20, PatternHotSet)
		ctx := context.Background()
		res, _, err, derr := h.migratePipe(ctx, MigrationRequest{VMID: "vm", Memory: vm, Version: v}, nil)
		t.Log(err, derr)
		for _, r := range res.RoundStats {
			t.Logf("%+v", r)
		}
		t.Logf("%v rounds %d dur %v down %v ratio %.2f", v, res.Rounds, res.Duration, res.Downtime, res.Ratio())
	}
}
