package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestRunOnMessyFolder runs the harness on the package's small traces plus
// a file of garbage: it must count the bad lines, train, and print a row per
// predictor and class.
func TestRunOnMessyFolder(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join("..", "..", "pba", "testdata", "traces")
	entries, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, e.Name()), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	junk := "0 1\nnot a sample\n1 2 3\n2 -5\n3 NaN\n\x00\x01\n4 2\n"
	if err := os.WriteFile(filepath.Join(dir, "junk.txt"), []byte(junk), 0o644); err != nil {
		t.Fatal(err)
	}
	model := filepath.Join(t.TempDir(), "m.pbam")
	var out bytes.Buffer
	err = run([]string{"-traces", dir, "-hidden", "4", "-window", "6", "-epochs", "2", "-save", model}, &out)
	if err != nil {
		t.Fatal(err)
	}
	s := out.String()
	t.Log(s)
	for _, want := range []string{
		"5 files, 5 usable", "5 malformed lines skipped", "model saved",
		"last_value|    stable|", "lstm|       all|", "lstm/lower|", "ensemble|    bursty|", "robust_mpc|  variable|", "holt|",
	} {
		if !strings.Contains(s, want) {
			t.Errorf("output lacks %q", want)
		}
	}
	// The saved model evaluates again at another horizon.
	out.Reset()
	if err := run([]string{"-traces", dir, "-model", model, "-horizon", "5"}, &out); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "horizon 5 sample(s)") {
		t.Errorf("second run output:\n%s", out.String())
	}
}

func TestRunErrors(t *testing.T) {
	for _, args := range [][]string{
		{},
		{"-traces", filepath.Join(t.TempDir(), "missing")},
		{"-traces", t.TempDir()}, // empty folder
		{"-traces", ".", "-model", "a", "-save", "b"},
		{"-traces", filepath.Join("..", "..", "pba", "testdata", "traces"), "-hidden", "0"},
	} {
		if err := run(args, &bytes.Buffer{}); err == nil {
			t.Errorf("%v: no error", args)
		}
	}
}
