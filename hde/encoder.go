package hde

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cespare/xxhash/v2"

	"github.com/dwcp/dwcp/metrics"
)

// Page is one memory page: its page number and its pageSize bytes.
type Page struct {
	Index uint64
	Data  []byte
}

// Encoder turns batches of pages into frames. It keeps the migration's state
// (previous page versions, the duplicate index, the selector's figures)
// between batches, so all batches of one migration stream must go through one
// Encoder, and its frames must reach one Decoder in order.
//
// EncodeBatch, Reset and Close must not be called concurrently with each
// other; SetLinkBandwidth and Stats may be called from any goroutine.
type Encoder struct {
	cfg   Config
	rec   *recorder
	cache *pageCache
	comp  compressor
	sel   selector

	linkBandwidth

	seq       uint64
	seen      map[uint64]struct{}
	data      []byte // body under construction: page data, then records
	recs      []byte
	stored    []byte
	payload   []byte
	sums      []byte
	hist      [256]uint16
	zeroHash  uint64
	probeList []Codec
	sample    []byte
	snap      []byte // private copy of the page being encoded
	closed    bool

	mu    sync.Mutex
	stats EncoderStats
}

// EncoderStats are an Encoder's totals since it was created or Reset.
type EncoderStats struct {
	Batches int64
	// Pages by how they were sent.
	ZeroPages, DuplicatePages, DeltaPages, RawPages, StoredPages int64
	// InputBytes counts pages x page size; OutputBytes counts frame bytes.
	InputBytes, OutputBytes int64
	// Selections counts batches by the codec of their compressed section.
	Selections map[Codec]int64
	// Estimates are the selector's current figures, one per candidate codec.
	Estimates []CodecEstimate
	// LinkBandwidth is the bandwidth the selector currently assumes, bytes/s.
	LinkBandwidth float64
}

// SavedFraction is 1 - OutputBytes/InputBytes (0 before any input).
func (s EncoderStats) SavedFraction() float64 {
	if s.InputBytes == 0 {
		return 0
	}
	return 1 - float64(s.OutputBytes)/float64(s.InputBytes)
}

// NewEncoder returns an Encoder for cfg that records into m (nil: a private,
// unregistered catalogue).
func NewEncoder(cfg Config, m *metrics.Metrics) (*Encoder, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.Codecs = append([]Codec(nil), cfg.Codecs...)
	e := &Encoder{
		cfg:      cfg,
		rec:      newRecorder(m, cfg.DataClass),
		sel:      newSelector(cfg),
		seen:     make(map[uint64]struct{}),
		zeroHash: xxhash.Sum64(make([]byte, cfg.PageSize)),
		snap:     make([]byte, cfg.PageSize),
	}
	if cfg.Mode == ModeAdaptive {
		e.cache = newPageCache(cfg.PageSize, cfg.cachePages(), true)
	}
	for _, k := range append([]Codec{cfg.BaselineCodec}, cfg.Codecs...) {
		if err := e.comp.prepare(k); err != nil {
			return nil, err
		}
	}
	e.linkBandwidth.init(cfg.LinkBandwidth)
	e.stats.Selections = make(map[Codec]int64)
	return e, nil
}

// SetLinkBandwidth reports the bandwidth of the link the frames will cross,
// in bytes per second (the engine feeds it from its bandwidth forecast). The
// selector uses it from the next batch on. Non-positive or non-finite values
// are ignored. Safe for concurrent use.
func (e *Encoder) SetLinkBandwidth(bytesPerSecond float64) { e.linkBandwidth.set(bytesPerSecond) }

// linkBandwidth is the link speed, in bytes per second, that the codec
// selector plans for; it is set from any goroutine while batches encode.
type linkBandwidth struct{ bits atomic.Uint64 }

func (l *linkBandwidth) init(bytesPerSecond float64) { l.bits.Store(math.Float64bits(bytesPerSecond)) }

func (l *linkBandwidth) set(bytesPerSecond float64) {
	if bytesPerSecond > 0 && !math.IsInf(bytesPerSecond, 0) {
		l.bits.Store(math.Float64bits(bytesPerSecond))
	}
}

func (l *linkBandwidth) link() float64 { return math.Float64frombits(l.bits.Load()) }

// Reset forgets all migration state (cached pages, batch sequence, totals)
// but keeps the selector's codec figures and the buffers. Pair it with a
// Reset of the Decoder.
func (e *Encoder) Reset() {
	if e.cache != nil {
		e.cache.reset()
	}
	e.seq = 0
	e.mu.Lock()
	e.stats = EncoderStats{Selections: make(map[Codec]int64)}
	e.mu.Unlock()
}

// Close releases the codecs. It is safe to call more than once.
func (e *Encoder) Close() error {
	e.comp.close()
	e.closed = true
	return nil
}

// Stats returns a snapshot of the totals. Safe for concurrent use.
func (e *Encoder) Stats() EncoderStats {
	e.mu.Lock()
	defer e.mu.Unlock()
	s := e.stats
	s.Selections = make(map[Codec]int64, len(e.stats.Selections))
	for k, v := range e.stats.Selections {
		s.Selections[k] = v
	}
	s.Estimates = append([]CodecEstimate(nil), e.stats.Estimates...)
	return s
}

// EncodeBatch appends one frame holding pages to dst and returns it. Each
// page must be PageSize bytes; indices must be unique within the batch and
// below 2^56; at most MaxBatchPages pages. The Encoder does not retain pages.
// Pages may be written concurrently (a running guest): each is read exactly
// once, so a concurrent write sends a torn but self-consistent page, which
// the engine's dirty tracking resends in the next round.
// On error nothing is appended and the Encoder's state is unchanged.
func (e *Encoder) EncodeBatch(dst []byte, pages []Page) ([]byte, error) {
	if e.closed {
		return dst, ErrClosed
	}
	if err := e.validate(pages); err != nil {
		e.rec.failure()
		return dst, err
	}
	start := time.Now()
	ps := e.cfg.PageSize
	e.data, e.recs, e.stored, e.sums = e.data[:0], e.recs[:0], e.stored[:0], e.sums[:0]
	var kinds [numKinds]int
	var flags uint8
	if e.cfg.Mode == ModeBaseline {
		flags = flagStateless
	}
	prev := uint64(math.MaxUint64) // so that index 0 first has gap 0
	for _, p := range pages {
		kind, h := kindRaw, uint64(0)
		var extra uint64
		if e.cfg.Mode == ModeBaseline {
			// Hash the copy, not the source: the guest may be writing.
			e.data = append(e.data, p.Data...)
			h = xxhash.Sum64(e.data[len(e.data)-ps:])
		} else {
			// Read the page once: the guest may still be writing it, and
			// the hash, the cached copy and the bytes sent must all be the
			// same version or the two sides' caches would diverge.
			copy(e.snap, p.Data)
			kind, h, extra = e.encodePage(Page{Index: p.Index, Data: e.snap})
		}
		kinds[kind]++
		e.recs = binary.AppendUvarint(e.recs, zigzag(int64(p.Index-(prev+1)))<<3|uint64(kind))
		if kind == kindDup || kind == kindDelta {
			e.recs = binary.AppendUvarint(e.recs, extra)
		}
		prev = p.Index
		e.sums = binary.LittleEndian.AppendUint64(e.sums, p.Index)
		e.sums = binary.LittleEndian.AppendUint64(e.sums, h)
	}
	recLen := len(e.recs)
	body := append(e.data, e.recs...)
	e.data = body

	codec := CodecNone
	switch {
	case e.cfg.Mode == ModeBaseline:
		codec = e.cfg.BaselineCodec
	case len(body) >= e.cfg.MinCompressBytes:
		shape := batchShape{
			body:     float64(len(body)),
			stored:   float64(len(e.stored) + maxHeaderLen),
			pageTime: time.Since(start).Seconds(),
		}
		e.probe(body)
		codec = e.sel.choose(e.link(), shape)
	}
	payload := body
	if codec != CodecNone {
		cStart := time.Now()
		out, ok, err := e.comp.compress(codec, e.payload[:0], body)
		if err != nil {
			// A codec failing on valid input is a codec bug; send the body
			// uncompressed rather than fail the migration.
			e.rec.failure()
			ok = false
		}
		if e.cfg.Mode == ModeAdaptive {
			size := len(body)
			if ok {
				size = len(out)
			}
			e.sel.observe(codec, len(body), size, time.Since(cStart))
		}
		e.payload = out
		if ok {
			payload = out
		} else {
			codec = CodecNone
		}
	}

	h := batchHeader{
		flags:      flags,
		codec:      codec,
		pageShift:  e.cfg.pageShift(),
		seq:        e.seq,
		pages:      uint64(len(pages)),
		recLen:     uint64(recLen),
		bodyLen:    uint64(len(body)),
		payloadLen: uint64(len(payload)),
		storedLen:  uint64(len(e.stored)),
		checksum:   xxhash.Sum64(e.sums),
	}
	frameStart := len(dst)
	dst = appendBatchHeader(dst, &h)
	dst = append(dst, payload...)
	dst = append(dst, e.stored...)
	e.seq++

	elapsed := time.Since(start)
	in, out := len(pages)*ps, len(dst)-frameStart
	e.rec.batch(in, out, &kinds, len(pages), codec, elapsed)
	e.mu.Lock()
	st := &e.stats
	st.Batches++
	st.ZeroPages += int64(kinds[kindZero])
	st.DuplicatePages += int64(kinds[kindDup])
	st.DeltaPages += int64(kinds[kindDelta])
	st.RawPages += int64(kinds[kindRaw])
	st.StoredPages += int64(kinds[kindStored])
	st.InputBytes += int64(in)
	st.OutputBytes += int64(out)
	st.Selections[codec]++
	st.LinkBandwidth = e.link()
	st.Estimates = e.sel.appendSnapshot(st.Estimates[:0], st.LinkBandwidth)
	e.mu.Unlock()
	return dst, nil
}

// probe measures the codecs the selector asks about on a sample of body.
func (e *Encoder) probe(body []byte) {
	e.probeList = e.sel.probes(e.probeList[:0])
	e.sample, e.payload = probeCodecs(&e.comp, &e.sel, e.probeList, body, e.sample, e.payload)
}

func (e *Encoder) validate(pages []Page) error {
	if len(pages) > e.cfg.MaxBatchPages {
		return wrapf(ErrInvalidBatch, "%d pages, MaxBatchPages is %d", len(pages), e.cfg.MaxBatchPages)
	}
	clear(e.seen)
	for i, p := range pages {
		if len(p.Data) != e.cfg.PageSize {
			return wrapf(ErrInvalidBatch, "page %d (index %d) has %d bytes, PageSize is %d", i, p.Index, len(p.Data), e.cfg.PageSize)
		}
		if p.Index > maxPageIndex {
			return wrapf(ErrInvalidBatch, "page %d has index %d, above the limit %d", i, p.Index, uint64(maxPageIndex))
		}
		if _, dup := e.seen[p.Index]; dup {
			return wrapf(ErrInvalidBatch, "page index %d appears twice in the batch", p.Index)
		}
		e.seen[p.Index] = struct{}{}
	}
	return nil
}

// encodePage classifies one page, appends its bytes to the data or stored
// section and updates the cache exactly as the decoder will. It returns the
// kind, the page's content hash and the record's extra field.
func (e *Encoder) encodePage(p Page) (kind int, h uint64, extra uint64) {
	if isZero(p.Data) {
		e.cache.remove(p.Index)
		return kindZero, e.zeroHash, 0
	}
	h = xxhash.Sum64(p.Data)
	defer e.cache.store(p.Index, p.Data, h)
	// A hash hit is only a candidate: compare the bytes, so that a collision
	// can never make the receiver write the wrong content.
	if s, ok := e.cache.findHash(h); ok && bytes.Equal(e.cache.page(s), p.Data) {
		ref := e.cache.slots[s].index
		return kindDup, h, zigzag(int64(ref - p.Index))
	}
	if s, ok := e.cache.lookup(p.Index); ok {
		before := len(e.data)
		var fits bool
		e.data, fits = appendDelta(e.data, e.cache.page(s), p.Data, e.cfg.PageSize-e.cfg.PageSize/8)
		if fits {
			return kindDelta, h, uint64(len(e.data) - before)
		}
	}
	if e.cfg.EntropyThreshold < 8 && sampledEntropy(p.Data, &e.hist) > e.cfg.EntropyThreshold {
		e.stored = append(e.stored, p.Data...)
		return kindStored, h, 0
	}
	e.data = append(e.data, p.Data...)
	return kindRaw, h, 0
}

// String describes the encoder's configuration.
func (e *Encoder) String() string {
	return fmt.Sprintf("hde.Encoder{mode=%s page=%d cache=%d pages}", e.cfg.Mode, e.cfg.PageSize, e.cfg.cachePages())
}
