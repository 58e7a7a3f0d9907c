package hde

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/dwcp/dwcp/metrics"
)

// recorder writes HDE's figures into the shared metrics catalogue. The ratio
// gauges are recomputed from the counters themselves, so several encoders
// sharing one *metrics.Metrics report the combined ratio rather than
// overwriting each other's.
type recorder struct {
	m     *metrics.Metrics
	class string

	inAll, inClass   prometheus.Counter
	outAll, outClass prometheus.Counter
	pages            [numKinds]prometheus.Counter
	algos            [numCodecs]prometheus.Counter
	batchLatency     prometheus.Observer
	errors           prometheus.Counter
}

func newRecorder(m *metrics.Metrics, class string) *recorder {
	if m == nil {
		m = metrics.New(nil)
	}
	r := &recorder{
		m:            m,
		class:        class,
		inAll:        m.HDEInputBytes.WithLabelValues(metrics.DataClassAll),
		inClass:      m.HDEInputBytes.WithLabelValues(class),
		outAll:       m.HDEOutputBytes.WithLabelValues(metrics.DataClassAll),
		outClass:     m.HDEOutputBytes.WithLabelValues(class),
		batchLatency: m.MigrationLatency.WithLabelValues(metrics.ComponentHDE),
		errors:       m.Errors.WithLabelValues(metrics.ComponentHDE, metrics.ErrorCompression),
	}
	r.pages[kindZero] = m.HDEPages.WithLabelValues(metrics.PageKindZero)
	r.pages[kindDup] = m.HDEPages.WithLabelValues(metrics.PageKindDuplicate)
	r.pages[kindDelta] = m.HDEPages.WithLabelValues(metrics.PageKindDelta)
	r.pages[kindRaw] = m.HDEPages.WithLabelValues(metrics.PageKindRaw)
	r.pages[kindStored] = r.pages[kindRaw]
	for k := Codec(0); k < numCodecs; k++ {
		r.algos[k] = m.HDEAlgorithmSelections.WithLabelValues(k.algorithm())
	}
	return r
}

// batch records one encoded batch (or opaque chunk when pageCount is 0).
func (r *recorder) batch(in, out int, kinds *[numKinds]int, pageCount int, codec Codec, elapsed time.Duration) {
	r.inAll.Add(float64(in))
	r.outAll.Add(float64(out))
	if r.class != metrics.DataClassAll {
		r.inClass.Add(float64(in))
		r.outClass.Add(float64(out))
	}
	r.algos[codec].Inc()
	r.batchLatency.Observe(elapsed.Seconds())
	if pageCount > 0 {
		perPage := elapsed.Seconds() / float64(pageCount)
		for i := 0; i < pageCount; i++ {
			r.m.HDECompressionLatency.Observe(perPage)
		}
	}
	if kinds != nil {
		for k, n := range kinds {
			if n > 0 {
				r.pages[k].Add(float64(n)) // stored pages count as raw
			}
		}
		r.updateDedup()
	}
	r.updateRatio(metrics.DataClassAll, r.inAll, r.outAll)
	if r.class != metrics.DataClassAll {
		r.updateRatio(r.class, r.inClass, r.outClass)
	}
}

func (r *recorder) updateRatio(class string, in, out prometheus.Counter) {
	i := counterValue(in)
	if i <= 0 {
		return
	}
	r.m.HDECompressionRatio.WithLabelValues(class).Set(1 - counterValue(out)/i)
}

func (r *recorder) updateDedup() {
	zero, dup := counterValue(r.pages[kindZero]), counterValue(r.pages[kindDup])
	total := zero + dup + counterValue(r.pages[kindDelta]) + counterValue(r.pages[kindRaw])
	if total > 0 {
		r.m.HDEDedupRatio.Set((zero + dup) / total)
	}
}

func (r *recorder) failure() { r.errors.Inc() }

func counterValue(c prometheus.Counter) float64 {
	var m dto.Metric
	if err := c.Write(&m); err != nil || m.Counter == nil {
		return 0
	}
	return m.Counter.GetValue()
}
