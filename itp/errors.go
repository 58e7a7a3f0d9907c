package itp

import (
	"errors"
	"fmt"
	"strings"
)

// ErrNoFit is matched (errors.Is) by every *NoFitError.
var ErrNoFit = errors.New("itp: no host fits")

// Exclusion says how many hosts one filter rejected.
type Exclusion struct {
	Filter string
	Hosts  int
}

// NoFitError says why no host could take a VM: each host is charged to the
// first filter that rejected it, so the counts add up to Hosts.
type NoFitError struct {
	VMID       string
	Hosts      int
	Exclusions []Exclusion // in filter order, only filters that rejected hosts
}

func (e *NoFitError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "itp: no host fits vm %q (%d hosts", e.VMID, e.Hosts)
	for i, x := range e.Exclusions {
		if i == 0 {
			b.WriteString(": ")
		} else {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%s excluded %d", x.Filter, x.Hosts)
	}
	b.WriteString(")")
	return b.String()
}

// Is makes errors.Is(err, ErrNoFit) true.
func (e *NoFitError) Is(target error) bool { return target == ErrNoFit }

// Excluded returns how many hosts the named filter rejected.
func (e *NoFitError) Excluded(filter string) int {
	for _, x := range e.Exclusions {
		if x.Filter == filter {
			return x.Hosts
		}
	}
	return 0
}

// BatchError lists the VMs of a batch that no host could take; the rest of
// the batch was placed.
type BatchError struct {
	Unplaced []*NoFitError
}

func (e *BatchError) Error() string {
	if len(e.Unplaced) == 1 {
		return e.Unplaced[0].Error()
	}
	return fmt.Sprintf("itp: %d vms could not be placed; first: %v", len(e.Unplaced), e.Unplaced[0])
}

// Is makes errors.Is(err, ErrNoFit) true.
func (e *BatchError) Is(target error) bool { return target == ErrNoFit }
