package hde

import (
	"encoding/binary"
	"sync"

	"github.com/cespare/xxhash/v2"

	"github.com/dwcp/dwcp/metrics"
)

// Decoder turns frames back into pages. It mirrors the Encoder's state, so
// it must see every frame of its Encoder, in order. Not safe for concurrent
// use, except Stats.
type Decoder struct {
	cfg    Config
	rec    *recorder
	cache  *pageCache
	decomp decompressor

	nextSeq  uint64
	broken   error
	body     []byte
	scratch  []byte
	out      [][]byte
	idx      []uint64
	seen     map[uint64]struct{}
	sums     []byte
	zeroPage []byte
	zeroHash uint64
	closed   bool

	mu    sync.Mutex
	stats DecoderStats
}

// DecoderStats are a Decoder's totals since it was created or Reset.
type DecoderStats struct {
	Batches int64
	Pages   int64
	// FrameBytes counts frames decoded; PageBytes the page bytes delivered.
	FrameBytes, PageBytes int64
	// Failures counts frames rejected.
	Failures int64
}

// NewDecoder returns a Decoder for cfg that records errors into m (nil: a
// private, unregistered catalogue). cfg.PageSize must equal the Encoder's;
// MaxBatchPages and CacheBytes must be at least the Encoder's.
func NewDecoder(cfg Config, m *metrics.Metrics) (*Decoder, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	zero := make([]byte, cfg.PageSize)
	return &Decoder{
		cfg:      cfg,
		rec:      newRecorder(m, cfg.DataClass),
		cache:    newPageCache(cfg.PageSize, cfg.cachePages(), false),
		decomp:   decompressor{maxBody: cfg.maxBody()},
		seen:     make(map[uint64]struct{}),
		zeroPage: zero,
		zeroHash: xxhash.Sum64(zero),
	}, nil
}

// Reset forgets all migration state, ready for frames of a Reset Encoder.
func (d *Decoder) Reset() {
	d.cache.reset()
	d.nextSeq = 0
	d.broken = nil
	d.mu.Lock()
	d.stats = DecoderStats{}
	d.mu.Unlock()
}

// Close releases the codecs. It is safe to call more than once.
func (d *Decoder) Close() error {
	d.decomp.close()
	d.closed = true
	return nil
}

// Stats returns a snapshot of the totals. Safe for concurrent use.
func (d *Decoder) Stats() DecoderStats {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.stats
}

// DecodeBatch decodes one frame and calls fn for each page in the order the
// encoder received them. data is valid only during the call and must not be
// modified or retained (it may alias the decoder's cache or a shared zero
// page); copy it out. fn is called only after the whole frame has been
// decoded and its checksum verified, so no page of a bad frame is ever
// delivered. A nil fn only validates and applies the frame. If fn returns
// an error, DecodeBatch stops and returns it; the frame still counts as
// decoded.
//
// A malformed frame yields an error wrapping one of the package's sentinels.
// When the error occurs after the frame started changing the decoder's state
// (past header and payload checks), the Decoder becomes desynchronized: every
// later call fails with ErrDesynchronized until Reset.
func (d *Decoder) DecodeBatch(frame []byte, fn func(index uint64, data []byte) error) error {
	if d.closed {
		return ErrClosed
	}
	if d.broken != nil {
		return wrapf(ErrDesynchronized, "after: %v", d.broken)
	}
	n, err := d.decode(frame)
	if err != nil {
		d.rec.failure()
		d.mu.Lock()
		d.stats.Failures++
		d.mu.Unlock()
		return err
	}
	d.mu.Lock()
	d.stats.Batches++
	d.stats.Pages += int64(n)
	d.stats.FrameBytes += int64(len(frame))
	d.stats.PageBytes += int64(n) * int64(d.cfg.PageSize)
	d.mu.Unlock()
	if fn == nil {
		return nil
	}
	for i := 0; i < n; i++ {
		if err := fn(d.idx[i], d.out[i]); err != nil {
			return err
		}
	}
	return nil
}

// decode fills d.idx and d.out with the frame's pages and returns their count.
func (d *Decoder) decode(frame []byte) (int, error) {
	var h batchHeader
	off, err := parseBatchHeader(frame, &h)
	if err != nil {
		return 0, err
	}
	ps := d.cfg.PageSize
	stateless := h.flags&flagStateless != 0
	switch {
	case h.pageShift != d.cfg.pageShift():
		return 0, wrapf(ErrPageSize, "frame pages are 2^%d bytes, decoder's are %d", h.pageShift, ps)
	case h.pages > uint64(d.cfg.MaxBatchPages):
		return 0, wrapf(ErrTooLarge, "%d pages, MaxBatchPages is %d", h.pages, d.cfg.MaxBatchPages)
	case h.bodyLen > uint64(d.cfg.maxBody()):
		return 0, wrapf(ErrTooLarge, "body of %d bytes, limit %d", h.bodyLen, d.cfg.maxBody())
	case h.pages > h.recLen:
		return 0, wrapf(ErrMalformed, "%d pages in %d bytes of records", h.pages, h.recLen)
	case h.recLen > h.bodyLen:
		return 0, wrapf(ErrMalformed, "records of %d bytes in a body of %d", h.recLen, h.bodyLen)
	case h.storedLen > h.pages*uint64(ps) || h.storedLen%uint64(ps) != 0:
		return 0, wrapf(ErrMalformed, "stored section of %d bytes for %d pages of %d", h.storedLen, h.pages, ps)
	case h.payloadLen > uint64(len(frame)-off) || h.storedLen > uint64(len(frame)-off)-h.payloadLen:
		return 0, wrapf(ErrTruncated, "frame of %d bytes, header declares %d+%d+%d", len(frame), off, h.payloadLen, h.storedLen)
	case uint64(off)+h.payloadLen+h.storedLen != uint64(len(frame)):
		return 0, wrapf(ErrMalformed, "%d trailing bytes after the frame", uint64(len(frame))-uint64(off)-h.payloadLen-h.storedLen)
	case !stateless && h.seq != d.nextSeq:
		return 0, wrapf(ErrSequence, "batch %d, expected %d", h.seq, d.nextSeq)
	}
	payload := frame[off : off+int(h.payloadLen)]
	stored := frame[off+int(h.payloadLen):]
	d.body, err = d.decomp.decompress(h.codec, d.body, payload, int(h.bodyLen))
	if err != nil {
		return 0, err
	}
	body := d.body
	data, recs := body[:len(body)-int(h.recLen)], body[len(body)-int(h.recLen):]

	pages := int(h.pages)
	d.idx, d.out, d.sums = d.idx[:0], d.out[:0], d.sums[:0]
	clear(d.seen)
	if need := pages * ps; cap(d.scratch) < need {
		d.scratch = make([]byte, need)
	}
	mutated := false
	fail := func(e error) (int, error) {
		if mutated {
			d.broken = e
		}
		return 0, e
	}
	prev := ^uint64(0)
	for i := 0; i < pages; i++ {
		v, n := binary.Uvarint(recs)
		if n <= 0 {
			return fail(wrapf(ErrTruncated, "record %d of %d missing", i, pages))
		}
		recs = recs[n:]
		kind := int(v & 7)
		index := prev + 1 + uint64(unzigzag(v>>3))
		if v>>3 > zigzag(maxPageIndex) || index > maxPageIndex {
			return fail(wrapf(ErrTooLarge, "record %d: page index past %d", i, uint64(maxPageIndex)))
		}
		if _, dup := d.seen[index]; dup {
			return fail(wrapf(ErrMalformed, "page index %d twice in one batch", index))
		}
		d.seen[index] = struct{}{}
		prev = index
		if stateless && kind != kindRaw && kind != kindStored && kind != kindZero {
			return fail(wrapf(ErrMalformed, "record %d: kind %d in a stateless frame", i, kind))
		}
		page := d.scratch[i*ps : (i+1)*ps]
		var sum uint64
		switch kind {
		case kindZero:
			page, sum = d.zeroPage, d.zeroHash
			if !stateless {
				mutated = true
				d.cache.remove(index)
			}
		case kindDup:
			r, n := binary.Uvarint(recs)
			if n <= 0 {
				return fail(wrapf(ErrTruncated, "record %d: reference missing", i))
			}
			recs = recs[n:]
			ref := index + uint64(unzigzag(r))
			s, ok := d.cache.lookup(ref)
			if !ok {
				return fail(wrapf(ErrUnknownReference, "record %d: page %d refers to page %d", i, index, ref))
			}
			copy(page, d.cache.page(s))
			sum = d.cache.hash(s)
			mutated = true
			d.cache.store(index, page, sum)
		case kindDelta:
			l, n := binary.Uvarint(recs)
			if n <= 0 {
				return fail(wrapf(ErrTruncated, "record %d: delta length missing", i))
			}
			recs = recs[n:]
			if l > uint64(len(data)) {
				return fail(wrapf(ErrTruncated, "record %d: delta of %d bytes, %d left", i, l, len(data)))
			}
			s, ok := d.cache.lookup(index)
			if !ok {
				return fail(wrapf(ErrUnknownReference, "record %d: delta for page %d without a previous version", i, index))
			}
			copy(page, d.cache.page(s))
			if err := applyDelta(page, data[:l]); err != nil {
				return fail(wrapf(err, "record %d", i))
			}
			data = data[l:]
			sum = xxhash.Sum64(page)
			mutated = true
			d.cache.store(index, page, sum)
		case kindRaw, kindStored:
			src := &data
			if kind == kindStored {
				src = &stored
			}
			if len(*src) < ps {
				return fail(wrapf(ErrTruncated, "record %d: raw page needs %d bytes, %d left", i, ps, len(*src)))
			}
			page = (*src)[:ps:ps] // aliases the body or the frame: no copy
			*src = (*src)[ps:]
			sum = xxhash.Sum64(page)
			if !stateless {
				mutated = true
				d.cache.store(index, page, sum)
			}
		default:
			return fail(wrapf(ErrMalformed, "record %d: unknown page kind %d", i, kind))
		}
		d.idx = append(d.idx, index)
		d.out = append(d.out, page)
		d.sums = binary.LittleEndian.AppendUint64(d.sums, index)
		d.sums = binary.LittleEndian.AppendUint64(d.sums, sum)
	}
	switch {
	case len(recs) != 0:
		return fail(wrapf(ErrMalformed, "%d bytes after the last record", len(recs)))
	case len(data) != 0:
		return fail(wrapf(ErrMalformed, "%d unused bytes of page data", len(data)))
	case len(stored) != 0:
		return fail(wrapf(ErrMalformed, "%d unused stored bytes", len(stored)))
	}
	if got := xxhash.Sum64(d.sums); got != h.checksum {
		return fail(wrapf(ErrChecksum, "pages hash to %#x, frame says %#x", got, h.checksum))
	}
	if !stateless {
		d.nextSeq++
	}
	return pages, nil
}
