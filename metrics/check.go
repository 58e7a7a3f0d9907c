package metrics

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// Prefix starts the name of every metric of the catalogue.
const Prefix = "dwcp_v3_"

// CheckLabelValues gathers g and checks every dwcp_v3_* family against the
// catalogue: the name must be documented, the type must match, each series
// must carry exactly the documented labels, and each label value must be one
// of the documented values. Families without the prefix (go_*, process_*)
// are ignored. It returns nil or an error listing every problem, so a test in
// any package can assert that it used only documented label values:
//
//	if err := metrics.CheckLabelValues(reg); err != nil { t.Fatal(err) }
func CheckLabelValues(g prometheus.Gatherer) error {
	families, err := g.Gather()
	if err != nil {
		return fmt.Errorf("metrics: gather: %w", err)
	}
	var errs []error
	for _, mf := range families {
		errs = append(errs, checkFamily(mf)...)
	}
	return errors.Join(errs...)
}

func checkFamily(mf *dto.MetricFamily) []error {
	name := mf.GetName()
	if !strings.HasPrefix(name, Prefix) {
		return nil
	}
	d, ok := Lookup(name)
	if !ok {
		return []error{fmt.Errorf("metrics: %s is not in the catalogue", name)}
	}
	var errs []error
	if got := familyType(mf.GetType()); got != d.Type {
		errs = append(errs, fmt.Errorf("metrics: %s is a %s, the catalogue says %s", name, got, d.Type))
	}
	want := d.LabelNames()
	slices.Sort(want)
	for _, m := range mf.GetMetric() {
		var got []string
		for _, lp := range m.GetLabel() {
			got = append(got, lp.GetName())
			if !slices.Contains(want, lp.GetName()) {
				continue
			}
			if !d.Allows(lp.GetName(), lp.GetValue()) {
				errs = append(errs, fmt.Errorf("metrics: %s{%s=%q}: value not documented (allowed: %s)",
					name, lp.GetName(), lp.GetValue(), strings.Join(labelValues(d, lp.GetName()), ", ")))
			}
		}
		slices.Sort(got)
		if !slices.Equal(got, want) {
			errs = append(errs, fmt.Errorf("metrics: %s has labels [%s], the catalogue says [%s]",
				name, strings.Join(got, ","), strings.Join(want, ",")))
		}
	}
	return errs
}

func labelValues(d Descriptor, label string) []string {
	for _, l := range d.Labels {
		if l.Name == label {
			return l.Values
		}
	}
	return nil
}

func familyType(t dto.MetricType) MetricType {
	switch t {
	case dto.MetricType_COUNTER:
		return TypeCounter
	case dto.MetricType_GAUGE:
		return TypeGauge
	case dto.MetricType_HISTOGRAM, dto.MetricType_GAUGE_HISTOGRAM:
		return TypeHistogram
	default:
		return MetricType(strings.ToLower(t.String()))
	}
}
