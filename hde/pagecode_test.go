package hde

import (
	"bytes"
	"math/rand/v2"
	"testing"
)

func TestIsZero(t *testing.T) {
	for _, n := range []int{0, 1, 63, 64, 65, 4096} {
		p := make([]byte, n)
		if !isZero(p) {
			t.Fatalf("zero slice of %d bytes reported non-zero", n)
		}
		for i := 0; i < n; i++ {
			p[i] = 1
			if isZero(p) {
				t.Fatalf("byte %d of %d set, reported zero", i, n)
			}
			p[i] = 0
		}
	}
}

func TestDeltaRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(4, 4))
	for it := 0; it < 2000; it++ {
		n := 512 << rng.IntN(4)
		old := make([]byte, n)
		for i := range old {
			old[i] = byte(rng.IntN(4))
		}
		cur := append([]byte(nil), old...)
		for k := rng.IntN(40); k > 0; k-- {
			start := rng.IntN(n)
			for j := start; j < min(n, start+rng.IntN(20)); j++ {
				cur[j] = byte(rng.Uint32())
			}
		}
		delta, ok := appendDelta(nil, old, cur, n)
		if !ok {
			continue
		}
		page := append([]byte(nil), old...)
		if err := applyDelta(page, delta); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(page, cur) {
			t.Fatalf("iteration %d: delta did not reproduce the page", it)
		}
	}
	// An unchanged page has an empty delta; a few changed words a tiny one.
	a := make([]byte, 4096)
	if d, ok := appendDelta(nil, a, a, 4096); !ok || len(d) != 0 {
		t.Fatalf("unchanged page: %d bytes", len(d))
	}
	b := append([]byte(nil), a...)
	b[100], b[2000] = 1, 2
	if d, _ := appendDelta(nil, a, b, 4096); len(d) > 8 {
		t.Fatalf("two changed bytes took %d delta bytes", len(d))
	}
	if _, ok := appendDelta(nil, a, bytes.Repeat([]byte{7}, 4096), 3000); ok {
		t.Fatal("delta over the limit accepted")
	}
}

func TestSampledEntropy(t *testing.T) {
	var hist [256]uint16
	rng := rand.New(rand.NewPCG(1, 2))
	random := make([]byte, 4096)
	for i := range random {
		random[i] = byte(rng.Uint32())
	}
	text := bytes.Repeat([]byte("the quick brown fox jumps over the lazy dog 0123\n"), 90)[:4096]
	for _, tc := range []struct {
		name   string
		page   []byte
		lo, hi float64
	}{
		{"zero", make([]byte, 4096), 0, 0.01},
		{"text", text, 3, 5.5},
		{"random", random, 6.9, 8},
	} {
		e := sampledEntropy(tc.page, &hist)
		if e < tc.lo || e > tc.hi {
			t.Errorf("%s: entropy %.2f outside [%g, %g]", tc.name, e, tc.lo, tc.hi)
		}
		if hist != ([256]uint16{}) {
			t.Fatalf("%s: histogram not cleared", tc.name)
		}
	}
}

func BenchmarkIsZero(b *testing.B) {
	page := make([]byte, 4096)
	zero := make([]byte, 4096)
	b.Run("words-64B", func(b *testing.B) {
		b.SetBytes(4096)
		for i := 0; i < b.N; i++ {
			if !isZero(page) {
				b.Fatal()
			}
		}
	})
	b.Run("bytes.Equal", func(b *testing.B) {
		b.SetBytes(4096)
		for i := 0; i < b.N; i++ {
			if !bytes.Equal(page, zero) {
				b.Fatal()
			}
		}
	})
}
