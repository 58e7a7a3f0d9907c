package pba

import (
	"bytes"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestReadTrace(t *testing.T) {
	for _, tc := range []struct {
		name      string
		in        string
		values    []float64
		malformed int
	}{
		{"clean", "0 1.5\n1 2\n2.5\t3\n", []float64{1.5, 2, 3}, 0},
		{"blank lines and comments", "# header\n\n0 1\n  \n1 2\n", []float64{1, 2}, 0},
		{"no final newline", "0 1\n1 2", []float64{1, 2}, 0},
		{"crlf", "0 1\r\n1 2\r\n", []float64{1, 2}, 0},
		{"three fields", "0 1 9\n1 2\n", []float64{2}, 1},
		{"text", "0 x\nfoo bar\n1 2\n", []float64{2}, 2},
		{"negative rate", "0 -1\n1 2\n", []float64{2}, 1},
		{"nan and inf", "0 NaN\n1 +Inf\n2 3\n", []float64{3}, 2},
		{"time backwards", "5 1\n4 2\n6 3\n", []float64{1, 3}, 1},
		{"very long line", "0 1\n" + strings.Repeat("9", 10000) + " 1\n1 2\n", []float64{1, 2}, 1},
		{"binary", "\x00\x01\x02\xff\n0 1\n", []float64{1}, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tr, err := ReadTrace(tc.name, strings.NewReader(tc.in))
			if err != nil {
				t.Fatal(err)
			}
			if tr.Malformed != tc.malformed {
				t.Errorf("malformed %d, want %d", tr.Malformed, tc.malformed)
			}
			if len(tr.Throughput) != len(tc.values) {
				t.Fatalf("values %v, want %v", tr.Throughput, tc.values)
			}
			for i := range tc.values {
				if tr.Throughput[i] != tc.values[i] {
					t.Fatalf("values %v, want %v", tr.Throughput, tc.values)
				}
			}
		})
	}
}

func TestReadTraceDir(t *testing.T) {
	trs, err := ReadTraceDir(filepath.Join("testdata", "traces"))
	if err != nil {
		t.Fatal(err)
	}
	if len(trs) != 4 {
		t.Fatalf("%d traces, want 4", len(trs))
	}
	for _, tr := range trs {
		if tr.Malformed != 0 || len(tr.Throughput) < 40 {
			t.Errorf("%s: %d samples, %d malformed", tr.Name, len(tr.Throughput), tr.Malformed)
		}
	}
	if _, err := ReadTraceDir(filepath.Join("testdata", "no-such-dir")); err == nil {
		t.Fatal("missing folder gave no error")
	}
}

func FuzzReadTrace(f *testing.F) {
	seed, err := os.ReadFile(filepath.Join("testdata", "traces", "oboe_trace_4.txt"))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(seed)
	f.Add([]byte("0 1\n1 2\nfoo\n"))
	f.Add([]byte("1e308 1e308\n-0 0\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		tr, err := ReadTrace("fuzz", bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		if len(tr.Times) != len(tr.Throughput) {
			t.Fatal("times and values differ in length")
		}
		for i, v := range tr.Throughput {
			if v < 0 || math.IsNaN(v) || math.IsInf(v, 0) || math.IsNaN(tr.Times[i]) || (i > 0 && tr.Times[i] < tr.Times[i-1]) {
				t.Fatalf("invalid sample %d: %v at %v", i, v, tr.Times[i])
			}
		}
	})
}
