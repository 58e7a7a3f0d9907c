package hde

import (
	"testing"
)

// TestWireTargets checks the size targets on a 2048-page corpus
// (sizes only; speed targets are measured by the benchmarks). With a slow
// link the selector optimises for ratio, so the result is deterministic.
func TestWireTargets(t *testing.T) {
	cc := DefaultCorpusConfig(1)
	cc.Pages = 2048
	c, err := NewCorpus(cc)
	if err != nil {
		t.Fatal(err)
	}
	mem1 := append([]byte(nil), c.Memory()...)
	cfg := DefaultConfig()
	cfg.LinkBandwidth = 1e6
	enc, err := NewEncoder(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer enc.Close()
	round1 := encodeAll(t, enc, pagesOfImage(mem1, cc.PageSize), nil)

	var dirtyMem []byte
	dirty := c.NextRound()
	for _, x := range dirty {
		dirtyMem = append(dirtyMem, c.Page(int(x))...)
	}
	round2 := encodeAll(t, enc, c.PagesOf(dirty), nil)

	zstdFastest := plainCodecs()[0]
	plain1 := plainSize(zstdFastest, mem1, cc.PageSize)
	plain2 := plainSize(zstdFastest, dirtyMem, cc.PageSize)
	saved := 1 - float64(round1)/float64(len(mem1))
	t.Logf("round 1: hde %d B (%.1f%% saved), zstd-fastest %d B (%.1f%% saved)", round1, 100*saved, plain1, 100*(1-float64(plain1)/float64(len(mem1))))
	t.Logf("round 2: %d dirty pages, hde %d B = %.1f%% of zstd-fastest %d B", len(dirty), round2, 100*float64(round2)/float64(plain2), plain2)
	if round1 > plain1 {
		t.Errorf("round 1: HDE %d B is larger than plain zstd-fastest %d B", round1, plain1)
	}
	if float64(round2) > 0.20*float64(plain2) {
		t.Errorf("round 2: HDE %d B exceeds 20%% of plain zstd-fastest %d B", round2, plain2)
	}
	if saved < 0.5 {
		t.Errorf("round 1 saved only %.1f%%", 100*saved)
	}
}
