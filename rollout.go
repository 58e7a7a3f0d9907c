package dwcp

import (
	"fmt"
	"hash/fnv"
)

// Version is the migration protocol version.
type Version uint8

const (
	// VersionAuto lets the rollout choose per VM.
	VersionAuto Version = 0
	// V1 is the baseline: one TCP stream, fixed zstd, no dedup or delta,
	// no bandwidth prediction (stop-and-copy from the last round's rate).
	V1 Version = 1
	// V3 is adaptive: multi-stream transport steered by the bandwidth
	// forecast, adaptive codec with dedup and delta, forecast-driven
	// stop-and-copy.
	V3 Version = 3
)

func (v Version) String() string {
	switch v {
	case VersionAuto:
		return "auto"
	case V1:
		return "v1"
	case V3:
		return "v3"
	}
	return fmt.Sprintf("Version(%d)", uint8(v))
}

// ParseVersion accepts "v1", "v3" and "auto".
func ParseVersion(s string) (Version, error) {
	switch s {
	case "v1", "1":
		return V1, nil
	case "v3", "3":
		return V3, nil
	case "auto", "":
		return VersionAuto, nil
	}
	return 0, fmt.Errorf("dwcp: unknown protocol version %q (want v1, v3 or auto)", s)
}

// Rollout chooses the protocol version of migrations that ask for
// VersionAuto: v3 for a deterministic Percentage of VMs (by FNV-1a hash of
// the VM id, so a VM keeps its version as the percentage grows), v1 for the
// rest. KillSwitch forces v1 for every migration, even ones that ask for v3.
type Rollout struct {
	Percentage int
	KillSwitch bool
}

// Validate reports a percentage outside [0, 100].
func (r Rollout) Validate() error {
	if r.Percentage < 0 || r.Percentage > 100 {
		return fmt.Errorf("dwcp: rollout percentage %d is outside [0, 100]", r.Percentage)
	}
	return nil
}

// Choose returns the version a migration of vmID runs with.
func (r Rollout) Choose(vmID string, requested Version) Version {
	if r.KillSwitch {
		return V1
	}
	if requested == V1 || requested == V3 {
		return requested
	}
	if r.Percentage <= 0 {
		return V1
	}
	if r.Percentage >= 100 {
		return V3
	}
	h := fnv.New32a()
	h.Write([]byte(vmID))
	if int(h.Sum32()%100) < r.Percentage {
		return V3
	}
	return V1
}

// Stage maps the percentage to the catalogue's rollout stage: 0 off,
// 1 canary (below 10%), 2 10%, 3 25%, 4 50%, 5 100%.
func (r Rollout) Stage() int {
	p := r.Percentage
	switch {
	case r.KillSwitch || p <= 0:
		return 0
	case p < 10:
		return 1
	case p < 25:
		return 2
	case p < 50:
		return 3
	case p < 100:
		return 4
	}
	return 5
}
