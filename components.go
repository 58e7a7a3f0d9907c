package dwcp

import (
	"github.com/dwcp/dwcp/metrics"
)

// This file wires the DWCP components into a Config; each adapter_*.go
// adapts one component to the engine's small interfaces. The engine core
// (source.go, dest.go) knows only the interfaces, so each component can be
// replaced (tests use in-memory pipes and raw codecs).

// WithComponents returns cfg with the DWCP data path filled in where cfg
// leaves it empty: the amst transport (v3 adaptive streams, v1 exactly one),
// hde codecs (v3 adaptive, v1 fixed zstd) and the pba forecaster (v3; v1
// uses the last round's rate). m (nil: cfg.Metrics) receives the
// components' metrics. For TLS, set cfg.Transport to an AMSTTransport whose
// amst.Config carries it (see SelfSignedTLS). The optional components (acp,
// ass, itp) need cluster wiring and are set by the caller: ACPOwnership,
// ASSState, ITPPlacer.
func WithComponents(cfg Config, m *metrics.Metrics) Config {
	if m == nil {
		m = cfg.Metrics
	}
	if cfg.Transport == nil {
		cfg.Transport = &AMSTTransport{Metrics: m}
	}
	if cfg.Codecs == nil {
		cfg.Codecs = &HDECodecs{Metrics: m}
	}
	if cfg.NewForecaster == nil {
		cfg.NewForecaster = PBAForecasters(m)
	}
	return cfg
}
