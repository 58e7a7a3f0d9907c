package dwcp

import (
	"sync"
	"time"

	"github.com/dwcp/dwcp/metrics"
	"github.com/dwcp/dwcp/pba"
)

// PBAForecasters returns a Config.NewForecaster that gives v3 migrations a
// pba.Online forecaster (LSTM and baselines, best on the current workload
// class) and v1 migrations LastRoundRate. If pba cannot be built (a broken
// embedded model), v3 falls back to LastRoundRate and the failure is
// counted as a pba error.
func PBAForecasters(m *metrics.Metrics) func(Version) BandwidthForecaster {
	return func(v Version) BandwidthForecaster {
		if v != V3 {
			return &LastRoundRate{}
		}
		o, err := pba.NewOnline(pba.Config{}, m)
		if err != nil {
			if m != nil {
				m.Errors.WithLabelValues(metrics.ComponentPBA, metrics.ErrorMemory).Inc()
			}
			return &LastRoundRate{}
		}
		return &pbaForecaster{o: o}
	}
}

type pbaForecaster struct {
	o    *pba.Online
	mu   sync.Mutex
	last time.Time
}

func (p *pbaForecaster) Observe(at time.Time, bps float64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	// pba wants samples in time order.
	if !at.After(p.last) {
		return
	}
	p.last = at
	_ = p.o.Observe(pba.Sample{Time: at, BytesPerSecond: bps})
}

func (p *pbaForecaster) Forecast(h time.Duration) (float64, float64, bool) {
	point, lower := p.o.Forecast(h)
	return point, lower, point > 0
}
