package amst

import (
	"time"

	"github.com/dwcp/dwcp/metrics"
)

// Mode is the network class AMST detects from measured RTT and bandwidth.
type Mode string

// The modes; their strings are the metrics "mode" label values.
const (
	ModeUnknown    Mode = ""
	ModeDatacenter Mode = metrics.ModeDatacenter
	ModeHybrid     Mode = metrics.ModeHybrid
	ModeInternet   Mode = metrics.ModeInternet
)

// Classify applies the thresholds of the spec to one measurement:
// datacenter when RTT < 10 ms and bandwidth >= 1 Gbit/s, internet when
// RTT > 50 ms or bandwidth < 1 Gbit/s, hybrid otherwise.
func Classify(rtt time.Duration, bitsPerSecond float64) Mode {
	switch {
	case rtt < 10*time.Millisecond && bitsPerSecond >= 1e9:
		return ModeDatacenter
	case rtt > 50*time.Millisecond || bitsPerSecond < 1e9:
		return ModeInternet
	}
	return ModeHybrid
}

// ModeDetector turns measurements into a mode with hysteresis: a new mode
// must be classified HysteresisSamples times in a row before it replaces the
// current one, so a single noisy sample never flips it. The first
// measurement sets the mode directly. It is not safe for concurrent use.
type ModeDetector struct {
	samples   int
	current   Mode
	candidate Mode
	streak    int
	switches  int
}

// NewModeDetector returns a detector needing samples agreeing measurements
// (at least 1) to switch.
func NewModeDetector(samples int) *ModeDetector {
	if samples < 1 {
		samples = 1
	}
	return &ModeDetector{samples: samples}
}

// Observe feeds one measurement and returns the current mode and, when it
// just changed from a known mode, the mode it left.
func (d *ModeDetector) Observe(rtt time.Duration, bitsPerSecond float64) (current, from Mode) {
	m := Classify(rtt, bitsPerSecond)
	if d.current == ModeUnknown {
		d.current = m
		return m, ModeUnknown
	}
	if m == d.current {
		d.candidate, d.streak = ModeUnknown, 0
		return d.current, ModeUnknown
	}
	if m != d.candidate {
		d.candidate, d.streak = m, 0
	}
	d.streak++
	if d.streak < d.samples {
		return d.current, ModeUnknown
	}
	from = d.current
	d.current, d.candidate, d.streak = m, ModeUnknown, 0
	d.switches++
	return d.current, from
}

// Mode returns the current mode (ModeUnknown before any measurement).
func (d *ModeDetector) Mode() Mode { return d.current }

// Switches returns how many times the mode changed.
func (d *ModeDetector) Switches() int { return d.switches }
