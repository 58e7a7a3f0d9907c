package metrics

import (
	"fmt"
	"reflect"
	"slices"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// collectorOf returns the Metrics field that the descriptor names.
func collectorOf(t testing.TB, m *Metrics, d Descriptor) prometheus.Collector {
	t.Helper()
	f := reflect.ValueOf(m).Elem().FieldByName(d.Field)
	if !f.IsValid() {
		t.Fatalf("%s: Metrics has no field %q", d.Name, d.Field)
	}
	c, ok := f.Interface().(prometheus.Collector)
	if !ok || f.IsNil() {
		t.Fatalf("%s: field %s is not a collector", d.Name, d.Field)
	}
	return c
}

// labelSets returns every combination of d's documented label values.
func labelSets(d Descriptor) [][]string {
	sets := [][]string{{}}
	for _, l := range d.Labels {
		var next [][]string
		for _, s := range sets {
			for _, v := range l.Values {
				next = append(next, append(append([]string(nil), s...), v))
			}
		}
		sets = next
	}
	return sets
}

// recordEverySeries records one value on every metric for every documented
// label set, so that every series exists; it returns how many it recorded.
// value gives the value per metric (gauges get value, counters add value,
// histograms observe value).
func recordEverySeries(t testing.TB, m *Metrics, value func(Descriptor) float64) int {
	t.Helper()
	n := 0
	for _, d := range Catalogue() {
		v := value(d)
		c := collectorOf(t, m, d)
		for _, lv := range labelSets(d) {
			switch c := c.(type) {
			case *prometheus.CounterVec:
				c.WithLabelValues(lv...).Add(v)
			case *prometheus.GaugeVec:
				c.WithLabelValues(lv...).Set(v)
			case *prometheus.HistogramVec:
				c.WithLabelValues(lv...).Observe(v)
			case prometheus.Counter:
				c.Add(v)
			case prometheus.Gauge:
				c.Set(v)
			case prometheus.Histogram:
				c.Observe(v)
			default:
				t.Fatalf("%s: unexpected collector %T", d.Name, c)
			}
			n++
		}
	}
	return n
}

func one(Descriptor) float64 { return 1 }

// seriesKey is a canonical name{label="value",...} with sorted labels.
func seriesKey(name string, labels map[string]string) string {
	keys := make([]string, 0, len(labels))
	for k := range labels {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	s := name + "{"
	for i, k := range keys {
		if i > 0 {
			s += ","
		}
		s += fmt.Sprintf("%s=%q", k, labels[k])
	}
	return s + "}"
}
