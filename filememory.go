package dwcp

import (
	"context"
	"fmt"
	"io"
	"math/bits"
	"os"
	"sync"
	"sync/atomic"
)

// FileMemory is a guest memory image kept in a file (a RAM snapshot, a
// memory-backed file of a userland guest). The guest writes through WriteAt,
// which tracks dirty pages and fails with ErrPaused while the guest is
// paused; the migration engine reads with ReadPage and, on a destination,
// writes with WritePage. Safe for concurrent use.
type FileMemory struct {
	f         *os.File
	path      string
	created   bool
	pageSize  int
	pageCount int
	dirty     []atomic.Uint64

	gate    sync.RWMutex // guest writes hold it shared; Pause exclusively
	paused  bool
	closeMu sync.Mutex
	closed  bool
}

// OpenFileMemory opens an existing image; its size must be a positive
// multiple of pageSize. The guest starts running (writable).
func OpenFileMemory(path string, pageSize int) (*FileMemory, error) {
	if err := validPageSize(pageSize); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return nil, fmt.Errorf("dwcp: open memory image: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("dwcp: stat memory image: %w", err)
	}
	size := st.Size()
	if size <= 0 || size%int64(pageSize) != 0 || size/int64(pageSize) > maxPageCount {
		f.Close()
		return nil, fmt.Errorf("dwcp: memory image %s has size %d, not a positive multiple of the %d-byte page size (at most %d pages)", path, size, pageSize, int64(maxPageCount))
	}
	return newFileMemory(f, path, false, pageSize, int(size/int64(pageSize)), false), nil
}

// CreateFileMemory creates (or truncates) an image of pageCount zero pages,
// paused, for the destination of a migration. Discard removes the file.
func CreateFileMemory(path string, pageSize, pageCount int) (*FileMemory, error) {
	if err := validPageSize(pageSize); err != nil {
		return nil, err
	}
	if pageCount <= 0 || pageCount > maxPageCount {
		return nil, fmt.Errorf("dwcp: page count %d is outside [1, %d]", pageCount, int64(maxPageCount))
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("dwcp: create memory image: %w", err)
	}
	if err := f.Truncate(int64(pageSize) * int64(pageCount)); err != nil {
		f.Close()
		os.Remove(path)
		return nil, fmt.Errorf("dwcp: size memory image: %w", err)
	}
	return newFileMemory(f, path, true, pageSize, pageCount, true), nil
}

func newFileMemory(f *os.File, path string, created bool, pageSize, pageCount int, paused bool) *FileMemory {
	return &FileMemory{
		f: f, path: path, created: created,
		pageSize: pageSize, pageCount: pageCount,
		dirty:  make([]atomic.Uint64, (pageCount+63)/64),
		paused: paused,
	}
}

// PageSize implements GuestMemory.
func (m *FileMemory) PageSize() int { return m.pageSize }

// PageCount implements GuestMemory.
func (m *FileMemory) PageCount() int { return m.pageCount }

// Path is the image's file name.
func (m *FileMemory) Path() string { return m.path }

// WriteAt is the guest's write: it lands in the image and marks every page
// it touches dirty. It fails with ErrPaused while the guest is paused.
func (m *FileMemory) WriteAt(p []byte, off int64) (int, error) {
	size := int64(m.pageSize) * int64(m.pageCount)
	if off < 0 || off > size || int64(len(p)) > size-off {
		return 0, fmt.Errorf("dwcp: write of %d bytes at %d outside the %d-byte image", len(p), off, size)
	}
	m.gate.RLock()
	defer m.gate.RUnlock()
	if m.paused {
		return 0, ErrPaused
	}
	n, err := m.f.WriteAt(p, off)
	if n > 0 {
		first := int(off / int64(m.pageSize))
		last := int((off + int64(n) - 1) / int64(m.pageSize))
		for i := first; i <= last; i++ {
			m.markDirty(i)
		}
	}
	return n, err
}

// ReadAt reads the image (io.ReaderAt).
func (m *FileMemory) ReadAt(p []byte, off int64) (int, error) { return m.f.ReadAt(p, off) }

// ReadPage implements GuestMemory.
func (m *FileMemory) ReadPage(index int, dst []byte) error {
	if index < 0 || index >= m.pageCount {
		return fmt.Errorf("dwcp: page %d out of range [0, %d)", index, m.pageCount)
	}
	if len(dst) != m.pageSize {
		return fmt.Errorf("dwcp: read buffer of %d bytes for %d-byte pages", len(dst), m.pageSize)
	}
	n, err := m.f.ReadAt(dst, int64(index)*int64(m.pageSize))
	if n == len(dst) {
		return nil
	}
	if err == nil || err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return fmt.Errorf("dwcp: read page %d: %w", index, err)
}

// WritePage implements IncomingMemory (the hypervisor's write; allowed
// while paused).
func (m *FileMemory) WritePage(index int, data []byte) error {
	if index < 0 || index >= m.pageCount {
		return fmt.Errorf("dwcp: page %d out of range [0, %d)", index, m.pageCount)
	}
	if len(data) != m.pageSize {
		return fmt.Errorf("dwcp: write of %d bytes to a %d-byte page", len(data), m.pageSize)
	}
	if _, err := m.f.WriteAt(data, int64(index)*int64(m.pageSize)); err != nil {
		return fmt.Errorf("dwcp: write page %d: %w", index, err)
	}
	m.markDirty(index)
	return nil
}

func (m *FileMemory) markDirty(i int) {
	w := &m.dirty[i/64]
	bit := uint64(1) << (i % 64)
	if w.Load()&bit == 0 {
		w.Or(bit)
	}
}

// CollectDirty implements GuestMemory.
func (m *FileMemory) CollectDirty(dst []int) []int {
	for wi := range m.dirty {
		w := &m.dirty[wi]
		if w.Load() == 0 {
			continue
		}
		set := w.Swap(0)
		for set != 0 {
			b := bits.TrailingZeros64(set)
			dst = append(dst, wi*64+b)
			set &^= 1 << b
		}
	}
	return dst
}

// Pause implements GuestMemory: after it returns no guest write is in
// flight and new ones fail with ErrPaused.
func (m *FileMemory) Pause(ctx context.Context) error {
	m.gate.Lock()
	m.paused = true
	m.gate.Unlock()
	return nil
}

// Resume implements GuestMemory and IncomingMemory.
func (m *FileMemory) Resume(ctx context.Context) error {
	m.gate.Lock()
	m.paused = false
	m.gate.Unlock()
	return nil
}

// Sync flushes the image to stable storage.
func (m *FileMemory) Sync() error { return m.f.Sync() }

// Discard implements IncomingMemory: it closes the image and, if
// CreateFileMemory made it, removes the file.
func (m *FileMemory) Discard() error {
	err := m.Close()
	if m.created {
		if rerr := os.Remove(m.path); rerr != nil && err == nil && !os.IsNotExist(rerr) {
			err = rerr
		}
	}
	return err
}

// Close pauses the guest and closes the image; safe to call twice.
func (m *FileMemory) Close() error {
	m.closeMu.Lock()
	defer m.closeMu.Unlock()
	if m.closed {
		return nil
	}
	m.closed = true
	_ = m.Pause(context.Background())
	return m.f.Close()
}
