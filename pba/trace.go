package pba

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// Trace is one bandwidth trace: samples in time order, throughput in
// Mbit/s, time in seconds from the start of the trace.
type Trace struct {
	Name       string
	Times      []float64
	Throughput []float64 // Mbit/s
	// Malformed counts the lines that were skipped: wrong field count,
	// unparsable or non-finite numbers, negative throughput, or time going
	// backwards.
	Malformed int
}

// maxTraceLine bounds one line of a trace file so that a foreign binary file
// cannot make the reader buffer it whole.
const maxTraceLine = 4096

// ReadTrace parses the `time_seconds throughput_mbit_per_second` format of
// the shared traces (whitespace separated, one sample a line). Blank lines
// and lines starting with '#' are ignored; malformed lines are counted in
// Trace.Malformed and skipped, never fatal. Only an I/O error is returned.
func ReadTrace(name string, r io.Reader) (*Trace, error) {
	tr := &Trace{Name: name}
	br := bufio.NewReaderSize(r, 64*1024)
	lastTime := math.Inf(-1)
	for {
		line, tooLong, err := readLine(br)
		if err != nil {
			if errors.Is(err, io.EOF) {
				return tr, nil
			}
			return nil, fmt.Errorf("pba: reading trace %s: %w", name, err)
		}
		if tooLong {
			tr.Malformed++
			continue
		}
		s := strings.TrimSpace(line)
		if s == "" || s[0] == '#' {
			continue
		}
		f := strings.Fields(s)
		if len(f) != 2 {
			tr.Malformed++
			continue
		}
		t, err1 := strconv.ParseFloat(f[0], 64)
		v, err2 := strconv.ParseFloat(f[1], 64)
		if err1 != nil || err2 != nil || !finite(t) || !finite(v) || v < 0 || t < lastTime {
			tr.Malformed++
			continue
		}
		lastTime = t
		tr.Times = append(tr.Times, t)
		tr.Throughput = append(tr.Throughput, v)
	}
}

// readLine returns the next line without its newline; tooLong reports a
// line longer than maxTraceLine, whose bytes are discarded. At end of input
// a final unterminated line is returned before io.EOF.
func readLine(br *bufio.Reader) (line string, tooLong bool, err error) {
	var sb strings.Builder
	for {
		chunk, isPrefix, err := br.ReadLine()
		if err != nil {
			if errors.Is(err, io.EOF) && (sb.Len() > 0 || tooLong) {
				return sb.String(), tooLong, nil
			}
			return "", false, err
		}
		if !tooLong {
			if sb.Len()+len(chunk) > maxTraceLine {
				tooLong = true
				sb.Reset()
			} else {
				sb.Write(chunk)
			}
		}
		if !isPrefix {
			return sb.String(), tooLong, nil
		}
	}
}

func finite(x float64) bool { return !math.IsNaN(x) && !math.IsInf(x, 0) }

// ReadTraceDir reads every regular file of dir (not recursing) as a trace,
// in name order. Files with fewer than two valid samples are still returned
// (with their malformed count) so callers can report them.
func ReadTraceDir(dir string) ([]*Trace, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("pba: reading trace folder: %w", err)
	}
	names := make([]string, 0, len(entries))
	for _, e := range entries {
		if e.Type().IsRegular() && !strings.HasPrefix(e.Name(), ".") {
			names = append(names, e.Name())
		}
	}
	sort.Strings(names)
	traces := make([]*Trace, 0, len(names))
	for _, n := range names {
		f, err := os.Open(filepath.Join(dir, n))
		if err != nil {
			return nil, fmt.Errorf("pba: %w", err)
		}
		tr, err := ReadTrace(n, f)
		f.Close()
		if err != nil {
			return nil, err
		}
		traces = append(traces, tr)
	}
	return traces, nil
}

// Split cuts a trace in time: the first frac of its samples for training,
// the rest for evaluation. It returns the index of the first evaluation
// sample, clamped to [0, len].
func (t *Trace) Split(frac float64) int {
	n := len(t.Throughput)
	k := int(math.Round(frac * float64(n)))
	return max(0, min(n, k))
}
