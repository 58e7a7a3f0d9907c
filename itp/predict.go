package itp

import (
	"math"
	"time"
)

// Precopy holds the parameters of the pre-copy live-migration model.
type Precopy struct {
	// MaxRounds bounds the iterative copy rounds before stop-and-copy.
	MaxRounds int
	// TargetDowntime is the pause the migration aims for: pre-copy stops
	// once the remaining dirty set can be sent within it.
	TargetDowntime time.Duration
}

// Prediction is the predicted course of one live migration.
type Prediction struct {
	// Total is the time from start to the guest running at the destination.
	Total time.Duration
	// Downtime is the stop-and-copy pause.
	Downtime time.Duration
	// Rounds counts pre-copy rounds before stop-and-copy.
	Rounds int
	// Converged is false when the dirty rate is at least the bandwidth, so
	// pre-copy cannot shrink the dirty set and stop-and-copy sends it all.
	Converged bool
	// BytesSent is every byte sent, over all rounds and stop-and-copy.
	BytesSent float64
}

// PredictMigration applies the pre-copy model: round 0 copies the whole
// size V; round k copies what was dirtied during round k-1, V*r^k with
// r = dirty rate / bandwidth (a geometric series), never more than V.
// Pre-copy stops when the next dirty set fits in TargetDowntime, or after
// MaxRounds; stop-and-copy then sends it with the guest paused. Each round
// and the switchover pay one RTT.
//
// A zero size migrates nothing. A link without bandwidth gives an infinite
// prediction (math.MaxInt64 durations).
func PredictMigration(sizeBytes int64, dirtyRateBytesPerSec float64, link Link, p Precopy) Prediction {
	v := float64(sizeBytes)
	if v <= 0 {
		return Prediction{Converged: true}
	}
	b := link.BandwidthBytesPerSec
	if !(b > 0) || math.IsInf(b, 0) {
		return Prediction{Total: time.Duration(math.MaxInt64), Downtime: time.Duration(math.MaxInt64)}
	}
	rtt := link.RTT.Seconds()
	r := math.Max(dirtyRateBytesPerSec, 0) / b
	target := p.TargetDowntime.Seconds() * b // bytes that fit in the target pause
	pred := Prediction{Converged: r < 1}
	seconds := 0.0
	round := v // bytes of the round about to be sent
	for {
		seconds += round/b + rtt
		pred.BytesSent += round
		next := math.Min(v, round*r) // dirtied while this round was sent
		if next <= target || pred.Rounds+1 >= p.MaxRounds || !pred.Converged {
			round = next
			pred.Rounds++
			break
		}
		round = next
		pred.Rounds++
	}
	down := round/b + rtt
	pred.BytesSent += round
	pred.Downtime = seconds2d(down)
	pred.Total = seconds2d(seconds + down)
	return pred
}

func seconds2d(s float64) time.Duration {
	if s >= float64(math.MaxInt64)/1e9 {
		return time.Duration(math.MaxInt64)
	}
	return time.Duration(s * 1e9)
}
