package ass

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
)

// Durability. A data directory holds one snapshot and one or more delta logs:
//
//	snapshot          "ASNP" | version | log generation (uint64 BE) | CRC-32C | length | state
//	log-<generation>  records: length (uint32 BE) | CRC-32C (uint32 BE) | states
//
// Every record holds one or more OR-Map states back to back (a local delta,
// a remote delta interval, or key states from a digest exchange). Recovery joins the snapshot with every
// record of the logs of its generation and later. Because the join is
// idempotent, replaying a record the snapshot already holds is harmless, so
// a crash at any point between rotating the log, writing the snapshot and
// deleting old logs recovers correctly. A torn record at the end of a log (a
// crash mid-append) is cut off; a bad record anywhere else is an error.
const (
	snapshotName    = "snapshot"
	snapshotMagic   = "ASNP"
	snapshotVersion = 1
	logPrefix       = "log-"
	recordHeader    = 8
)

type store struct {
	dir string

	syncMu sync.Mutex // serialises fsync and rotation; taken before mu
	mu     sync.Mutex // guards the fields below
	log    *os.File
	gen    uint64
	size   int64 // bytes in the current log
	// written counts bytes appended over the store's life, synced the part
	// of them known to be on disk; both only grow.
	written, synced int64
	failed          error // the first write or sync error; the store refuses work after it
}

// openStore opens (creating if needed) dir and returns the recovered state.
func openStore(dir string) (*store, *ORMap, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, nil, fmt.Errorf("ass: data dir: %w", err)
	}
	state := NewORMap()
	gen := uint64(0)
	snap, err := os.ReadFile(filepath.Join(dir, snapshotName))
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return nil, nil, fmt.Errorf("ass: read snapshot: %w", err)
	default:
		g, m, err := decodeSnapshot(snap)
		if err != nil {
			return nil, nil, fmt.Errorf("ass: snapshot in %s: %w", dir, err)
		}
		gen, state = g, m
	}
	gens, err := logGenerations(dir)
	if err != nil {
		return nil, nil, err
	}
	last := gen
	for _, g := range gens {
		if g < gen {
			os.Remove(filepath.Join(dir, logName(g))) // left over from a crash after a snapshot
			continue
		}
		if err := replayLog(filepath.Join(dir, logName(g)), state); err != nil {
			return nil, nil, err
		}
		last = g
	}
	f, err := os.OpenFile(filepath.Join(dir, logName(last)), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, nil, fmt.Errorf("ass: open log: %w", err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	if err := syncDir(dir); err != nil {
		f.Close()
		return nil, nil, err
	}
	return &store{dir: dir, log: f, gen: last, size: fi.Size()}, state, nil
}

func logName(gen uint64) string { return fmt.Sprintf("%s%016x", logPrefix, gen) }

func logGenerations(dir string) ([]uint64, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("ass: list data dir: %w", err)
	}
	var gens []uint64
	for _, e := range ents {
		if name, ok := strings.CutPrefix(e.Name(), logPrefix); ok {
			if g, err := strconv.ParseUint(name, 16, 64); err == nil {
				gens = append(gens, g)
			}
		}
	}
	sort.Slice(gens, func(i, j int) bool { return gens[i] < gens[j] })
	return gens, nil
}

// replayLog merges every record of the log at path into state and truncates
// a torn tail.
func replayLog(path string, state *ORMap) error {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("ass: open log: %w", err)
	}
	defer f.Close()
	br := bufio.NewReaderSize(f, 1<<20)
	var good int64
	for {
		rec, err := readRecord(br)
		if err == io.EOF {
			return nil
		}
		var states []*ORMap
		if err == nil {
			states, err = decodeStates(rec)
		}
		if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, ErrCorrupt) {
			// Only the end of a log can be torn (a crash mid-append, or
			// zeroed blocks after it); a bad record followed by data is
			// corruption that recovery must not paper over.
			if !restIsZero(br) {
				return fmt.Errorf("ass: log %s: bad record at offset %d followed by data: %w", path, good, err)
			}
			if terr := f.Truncate(good); terr != nil {
				return fmt.Errorf("ass: truncate torn log %s: %w", path, terr)
			}
			return f.Sync()
		}
		if err != nil {
			return fmt.Errorf("ass: read log %s: %w", path, err)
		}
		for _, m := range states {
			state.mergeOwned(m)
		}
		good += int64(recordHeader + len(rec))
	}
}

// decodeStates decodes a log record: one or more OR-Map values back to back.
func decodeStates(rec []byte) ([]*ORMap, error) {
	d := decoder{buf: rec}
	var out []*ORMap
	for d.err == nil && (d.off < len(rec) || len(out) == 0) {
		out = append(out, d.mapValue())
	}
	return out, d.err
}

func restIsZero(r io.Reader) bool {
	buf := make([]byte, 64<<10)
	for {
		n, err := r.Read(buf)
		for _, b := range buf[:n] {
			if b != 0 {
				return false
			}
		}
		if err != nil {
			return true
		}
	}
}

func readRecord(r io.Reader) ([]byte, error) {
	var h [recordHeader]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return nil, err
	}
	n := binary.BigEndian.Uint32(h[:])
	if n > 1<<30 {
		return nil, fmt.Errorf("%w: log record of %d bytes", ErrCorrupt, n)
	}
	rec := make([]byte, n)
	if _, err := io.ReadFull(r, rec); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	if crc32.Checksum(rec, castagnoli) != binary.BigEndian.Uint32(h[4:]) {
		return nil, fmt.Errorf("%w: log record checksum", ErrCorrupt)
	}
	return rec, nil
}

// append writes one record (an encoded OR-Map) to the log, without fsync,
// and returns the position that sync must reach for the record to be durable.
func (s *store) append(state []byte) (int64, error) {
	var h [recordHeader]byte
	binary.BigEndian.PutUint32(h[:], uint32(len(state)))
	binary.BigEndian.PutUint32(h[4:], crc32.Checksum(state, castagnoli))
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.failed != nil {
		return 0, s.failed
	}
	// One write call per record, so a crash tears at most the last record.
	rec := make([]byte, 0, recordHeader+len(state))
	rec = append(append(rec, h[:]...), state...)
	if _, err := s.log.Write(rec); err != nil {
		s.failed = fmt.Errorf("ass: append to log: %w", err)
		return 0, s.failed
	}
	s.size += int64(len(rec))
	s.written += int64(len(rec))
	return s.written, nil
}

// sync makes every record up to pos durable. Concurrent callers share one
// fsync (group commit).
func (s *store) sync(pos int64) error {
	s.syncMu.Lock()
	defer s.syncMu.Unlock()
	s.mu.Lock()
	if s.failed != nil {
		s.mu.Unlock()
		return s.failed
	}
	if s.synced >= pos {
		s.mu.Unlock()
		return nil
	}
	f, upto := s.log, s.written
	s.mu.Unlock()
	if err := f.Sync(); err != nil {
		s.mu.Lock()
		s.failed = fmt.Errorf("ass: fsync log: %w", err)
		s.mu.Unlock()
		return s.failed
	}
	s.mu.Lock()
	s.synced = upto
	s.mu.Unlock()
	return nil
}

// syncAll makes everything appended so far durable.
func (s *store) syncAll() error {
	s.mu.Lock()
	pos := s.written
	s.mu.Unlock()
	return s.sync(pos)
}

func (s *store) logSize() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.size
}

// rotate syncs and closes the current log, opens the next generation and
// returns it. The caller holds the replica lock, so the state it encodes
// next holds exactly the records of the logs before the new one.
func (s *store) rotate() (uint64, error) {
	s.syncMu.Lock()
	defer s.syncMu.Unlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.failed != nil {
		return 0, s.failed
	}
	if err := s.log.Sync(); err != nil {
		s.failed = fmt.Errorf("ass: fsync log: %w", err)
		return 0, s.failed
	}
	s.synced = s.written
	next := s.gen + 1
	f, err := os.OpenFile(filepath.Join(s.dir, logName(next)), os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		s.failed = fmt.Errorf("ass: create log: %w", err)
		return 0, s.failed
	}
	if err := syncDir(s.dir); err != nil {
		f.Close()
		s.failed = err
		return 0, err
	}
	s.log.Close()
	s.log, s.gen, s.size = f, next, 0
	return next, nil
}

// writeSnapshot atomically replaces the snapshot with state, which must hold
// every record of the logs before generation gen, then deletes those logs.
func (s *store) writeSnapshot(gen uint64, state []byte) error {
	b := make([]byte, 0, 4+1+8+4+8+len(state))
	b = append(b, snapshotMagic...)
	b = append(b, snapshotVersion)
	b = binary.BigEndian.AppendUint64(b, gen)
	b = binary.BigEndian.AppendUint32(b, crc32.Checksum(state, castagnoli))
	b = binary.BigEndian.AppendUint64(b, uint64(len(state)))
	b = append(b, state...)
	tmp := filepath.Join(s.dir, snapshotName+".tmp")
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return fmt.Errorf("ass: create snapshot: %w", err)
	}
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, filepath.Join(s.dir, snapshotName))
	}
	if err == nil {
		err = syncDir(s.dir)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("ass: write snapshot: %w", err)
	}
	gens, err := logGenerations(s.dir)
	if err != nil {
		return err
	}
	for _, g := range gens {
		if g < gen {
			os.Remove(filepath.Join(s.dir, logName(g)))
		}
	}
	return nil
}

func decodeSnapshot(b []byte) (uint64, *ORMap, error) {
	const header = 4 + 1 + 8 + 4 + 8
	if len(b) < header || string(b[:4]) != snapshotMagic {
		return 0, nil, fmt.Errorf("%w: not a snapshot", ErrCorrupt)
	}
	if b[4] != snapshotVersion {
		return 0, nil, fmt.Errorf("%w: snapshot version %d, want %d", ErrCorrupt, b[4], snapshotVersion)
	}
	gen := binary.BigEndian.Uint64(b[5:])
	sum := binary.BigEndian.Uint32(b[13:])
	n := binary.BigEndian.Uint64(b[17:])
	state := b[header:]
	if uint64(len(state)) != n {
		return 0, nil, fmt.Errorf("%w: snapshot says %d bytes, has %d", ErrCorrupt, n, len(state))
	}
	if crc32.Checksum(state, castagnoli) != sum {
		return 0, nil, fmt.Errorf("%w: snapshot checksum", ErrCorrupt)
	}
	d := decoder{buf: state}
	m := d.mapValue()
	d.end()
	if d.err != nil {
		return 0, nil, d.err
	}
	return gen, m, nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("ass: open data dir: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("ass: fsync data dir: %w", err)
	}
	return nil
}

func (s *store) close() error {
	s.syncMu.Lock()
	defer s.syncMu.Unlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.log == nil {
		return nil
	}
	err := s.log.Sync()
	if cerr := s.log.Close(); err == nil {
		err = cerr
	}
	s.log = nil
	if s.failed == nil {
		s.failed = ErrClosed
	}
	return err
}
