package dwcp

import (
	"sync"
	"time"
)

// BandwidthForecaster predicts the migration link's goodput from what the
// engine observed. Observe is called with measured rates in bytes per
// second (per round, and for v3 also every sampling interval during a
// round); Forecast returns the expected rate over the horizon and a
// conservative lower bound, or ok=false when it has nothing to go on yet.
// Safe for concurrent use.
type BandwidthForecaster interface {
	Observe(at time.Time, bytesPerSecond float64)
	Forecast(horizon time.Duration) (point, lower float64, ok bool)
}

// LastRoundRate is v1's estimator, as in QEMU's classic switchover: the
// bandwidth is whatever the last observation measured; no prediction.
type LastRoundRate struct {
	mu   sync.Mutex
	last float64
}

// Observe implements BandwidthForecaster.
func (l *LastRoundRate) Observe(_ time.Time, bps float64) {
	if bps <= 0 {
		return
	}
	l.mu.Lock()
	l.last = bps
	l.mu.Unlock()
}

// Forecast implements BandwidthForecaster.
func (l *LastRoundRate) Forecast(time.Duration) (float64, float64, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.last, l.last, l.last > 0
}
