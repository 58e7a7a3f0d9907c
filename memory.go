package dwcp

import (
	"context"
	"errors"
	"fmt"
)

// GuestMemory is the source side's view of a running guest. The engine reads
// pages while the guest keeps running, asks which pages were written since the
// last time it asked, and pauses the guest for the final copy.
//
// Contract (every implementation must keep it, the engine's verification
// depends on it):
//   - PageSize and PageCount are constant for the life of the value;
//     PageSize is a power of two between 512 and 2 MiB.
//   - ReadPage copies page index into dst (len(dst) == PageSize) and must not
//     retain dst. It is called concurrently with the guest's writes; the copy
//     may be any version of the page, but a write that lands after the copy
//     started must be reported by a later CollectDirty.
//   - CollectDirty appends to dst, in increasing order, the index of every
//     page written since the previous call (or since creation), clears that
//     set and returns the extended slice. A write must be visible to ReadPage
//     before its page appears in the set ("write, then mark dirty").
//   - Pause stops every write to memory before it returns; Resume lets the
//     guest run again. Both are idempotent.
//
// ReadPage may be called from several goroutines at once (v3 reads through
// parallel lanes); CollectDirty from one goroutine at a time; Pause and
// Resume from any goroutine.
type GuestMemory interface {
	PageSize() int
	PageCount() int
	ReadPage(index int, dst []byte) error
	CollectDirty(dst []int) []int
	Pause(ctx context.Context) error
	Resume(ctx context.Context) error
}

// Throttler is implemented by guests that can slow their own dirtying, as
// QEMU's auto-converge throttles vCPUs. SetThrottle takes a percentage in
// [0, 99]: the share of the guest's time taken away from it. A guest without
// Throttler cannot be auto-converged; a migration that does not converge
// then fails as soon as auto-converge would have started.
type Throttler interface {
	SetThrottle(percent int)
}

// IncomingMemory is the destination side's memory of a guest under
// migration. The engine writes pages into it, from several goroutines at
// once but never the same page concurrently (v3 decodes in parallel lanes),
// checks them against the source's hashes, and calls Resume once the migration has
// been verified and ownership handed over. Discard is called instead of
// Resume when the migration fails: the incoming copy must never run.
type IncomingMemory interface {
	PageSize() int
	PageCount() int
	WritePage(index int, data []byte) error
	Resume(ctx context.Context) error
	Discard() error
}

// IncomingSpec describes the guest a source offers; the destination's
// IncomingFunc builds an IncomingMemory of that shape (or refuses it).
type IncomingSpec struct {
	MigrationID string
	VMID        string
	SourceNode  string
	PageSize    int
	PageCount   int
	Version     Version
}

// Bytes is the guest's memory size.
func (s IncomingSpec) Bytes() int64 { return int64(s.PageSize) * int64(s.PageCount) }

// IncomingFunc creates the destination memory for an offered migration. The
// spec comes from the network: refuse (return an error) what this host
// cannot or will not hold; the source then gets ErrRejected.
type IncomingFunc func(ctx context.Context, spec IncomingSpec) (IncomingMemory, error)

// ErrPaused is returned by writes to a paused guest.
var ErrPaused = errors.New("dwcp: guest is paused")

func validPageSize(n int) error {
	if n < 512 || n > 2<<20 || n&(n-1) != 0 {
		return fmt.Errorf("dwcp: page size %d is not a power of two in [512, 2 MiB]", n)
	}
	return nil
}

// maxPageCount bounds the page indices on the wire (uint32).
const maxPageCount = 1<<32 - 1
