package metrics

import "errors"

// Monitor runs the two long-lived producers of the operators' view next to
// an exporter: an SLAEvaluator (dwcp_v3_sla_compliance, anomaly detection)
// and a ResourceSampler (dwcp_v3_resource_utilization_percent) whose samples
// also feed the evaluator's resource-saturation detector. Feed Monitor.SLA
// with what the process does (the migration engine accepts it as its SLA
// observer).
type Monitor struct {
	SLA       *SLAEvaluator
	Resources *ResourceSampler
}

// NewMonitor starts both producers with the given configurations.
func NewMonitor(m *Metrics, sla SLAConfig, res ResourceConfig) (*Monitor, error) {
	ev, err := NewSLAEvaluator(m, sla)
	if err != nil {
		return nil, err
	}
	res.Observer = ev
	rs, err := NewResourceSampler(m, res)
	if err != nil {
		ev.Close()
		return nil, err
	}
	return &Monitor{SLA: ev, Resources: rs}, nil
}

// Close stops both producers and waits for their goroutines; it is safe to
// call more than once.
func (mo *Monitor) Close() error {
	return errors.Join(mo.Resources.Close(), mo.SLA.Close())
}
