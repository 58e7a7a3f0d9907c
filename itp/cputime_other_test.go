//go:build !linux

package itp

import "time"

// threadCPUTimer falls back to wall time where no per-thread clock exists.
type threadCPUTimer struct{ start time.Time }

func lockThread()                                {}
func unlockThread()                              {}
func (t *threadCPUTimer) begin()                 { t.start = time.Now() }
func (t *threadCPUTimer) elapsed() time.Duration { return time.Since(t.start) }

const haveThreadCPU = false
