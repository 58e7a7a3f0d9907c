//go:build linux

package itp

import (
	"runtime"
	"time"

	"golang.org/x/sys/unix"
)

// threadCPUTimer measures the CPU time of the calling OS thread, which a
// busy shared machine's run queue does not inflate. The caller must hold
// runtime.LockOSThread between start and stop.
type threadCPUTimer struct{ start time.Duration }

func threadCPU() time.Duration {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts); err != nil {
		return 0
	}
	return time.Duration(ts.Nano())
}

func lockThread()                                { runtime.LockOSThread() }
func unlockThread()                              { runtime.UnlockOSThread() }
func (t *threadCPUTimer) begin()                 { t.start = threadCPU() }
func (t *threadCPUTimer) elapsed() time.Duration { return threadCPU() - t.start }

const haveThreadCPU = true
