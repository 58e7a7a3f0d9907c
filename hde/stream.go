package hde

import (
	"bufio"
	"encoding/binary"
	"errors"
	"io"
	"sync"
	"time"

	"github.com/cespare/xxhash/v2"

	"github.com/dwcp/dwcp/metrics"
)

// Chunk frame of the opaque-stream mode, format version 1:
//
//	magic      "HDES"
//	version    u8 = 1
//	codec      u8
//	rawLen     uvarint  decoded size, at most the decoder's ChunkSize
//	payloadLen uvarint  at most rawLen; equal to it for codec none
//	checksum   u64      xxhash64 of the decoded chunk
//	payload    payloadLen bytes
//
// Chunks are independent: no state links them, so they can be decoded in
// any order and a stream can be cut at any chunk boundary.
const (
	chunkMagic        = "HDES"
	chunkFixedLen     = 6
	maxChunkHeaderLen = chunkFixedLen + 2*binary.MaxVarintLen64 + 8
)

// StreamEncoder compresses opaque byte chunks (no page structure) with the
// adaptive codec selector. Not safe for concurrent use, except
// SetLinkBandwidth and Stats.
type StreamEncoder struct {
	cfg  Config
	rec  *recorder
	comp compressor
	sel  selector
	linkBandwidth
	payload []byte
	hist    [256]uint16
	probes  []Codec
	sample  []byte
	closed  bool

	mu    sync.Mutex
	stats EncoderStats
}

// NewStreamEncoder returns a StreamEncoder; cfg.DataClass labels its bytes
// in the metrics (binary is the usual choice for foreign streams).
func NewStreamEncoder(cfg Config, m *metrics.Metrics) (*StreamEncoder, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	s := &StreamEncoder{cfg: cfg, rec: newRecorder(m, cfg.DataClass), sel: newSelector(cfg)}
	for _, k := range cfg.Codecs {
		if err := s.comp.prepare(k); err != nil {
			return nil, err
		}
	}
	s.linkBandwidth.init(cfg.LinkBandwidth)
	s.stats.Selections = make(map[Codec]int64)
	return s, nil
}

// SetLinkBandwidth is Encoder.SetLinkBandwidth for streams.
func (s *StreamEncoder) SetLinkBandwidth(bytesPerSecond float64) { s.linkBandwidth.set(bytesPerSecond) }

// Stats returns the totals (page counts stay zero).
func (s *StreamEncoder) Stats() EncoderStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.stats
	st.Selections = make(map[Codec]int64, len(s.stats.Selections))
	for k, v := range s.stats.Selections {
		st.Selections[k] = v
	}
	st.Estimates = append([]CodecEstimate(nil), s.stats.Estimates...)
	return st
}

// Close releases the codecs; safe to call more than once.
func (s *StreamEncoder) Close() error {
	s.comp.close()
	s.closed = true
	return nil
}

// EncodeChunk appends the frame of chunk (at most ChunkSize bytes) to dst.
func (s *StreamEncoder) EncodeChunk(dst, chunk []byte) ([]byte, error) {
	if s.closed {
		return dst, ErrClosed
	}
	if len(chunk) > s.cfg.ChunkSize {
		s.rec.failure()
		return dst, wrapf(ErrInvalidBatch, "chunk of %d bytes, ChunkSize is %d", len(chunk), s.cfg.ChunkSize)
	}
	start := time.Now()
	link := s.link()
	codec := CodecNone
	if len(chunk) >= s.cfg.MinCompressBytes && !(s.cfg.EntropyThreshold < 8 && sampledEntropy(chunk, &s.hist) > s.cfg.EntropyThreshold) {
		s.probes = s.sel.probes(s.probes[:0])
		s.sample, s.payload = probeCodecs(&s.comp, &s.sel, s.probes, chunk, s.sample, s.payload)
		codec = s.sel.choose(link, batchShape{body: float64(len(chunk)), stored: maxChunkHeaderLen})
	}
	payload := chunk
	if codec != CodecNone {
		cStart := time.Now()
		out, ok, err := s.comp.compress(codec, s.payload[:0], chunk)
		if err != nil {
			s.rec.failure()
			ok = false
		}
		size := len(chunk)
		if ok {
			size = len(out)
		}
		s.sel.observe(codec, len(chunk), size, time.Since(cStart))
		s.payload = out
		if ok {
			payload = out
		} else {
			codec = CodecNone
		}
	}
	frameStart := len(dst)
	dst = append(dst, chunkMagic...)
	dst = append(dst, formatVersion, uint8(codec))
	dst = binary.AppendUvarint(dst, uint64(len(chunk)))
	dst = binary.AppendUvarint(dst, uint64(len(payload)))
	dst = binary.LittleEndian.AppendUint64(dst, xxhash.Sum64(chunk))
	dst = append(dst, payload...)

	out := len(dst) - frameStart
	s.rec.batch(len(chunk), out, nil, 0, codec, time.Since(start))
	s.mu.Lock()
	s.stats.Batches++
	s.stats.InputBytes += int64(len(chunk))
	s.stats.OutputBytes += int64(out)
	s.stats.Selections[codec]++
	s.stats.LinkBandwidth = link
	s.stats.Estimates = s.sel.appendSnapshot(s.stats.Estimates[:0], link)
	s.mu.Unlock()
	return dst, nil
}

// StreamDecoder decodes chunk frames. Not safe for concurrent use.
type StreamDecoder struct {
	cfg    Config
	rec    *recorder
	decomp decompressor
	buf    []byte
	closed bool
}

// NewStreamDecoder returns a StreamDecoder accepting chunks up to cfg.ChunkSize.
func NewStreamDecoder(cfg Config, m *metrics.Metrics) (*StreamDecoder, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &StreamDecoder{cfg: cfg, rec: newRecorder(m, cfg.DataClass), decomp: decompressor{maxBody: cfg.ChunkSize}}, nil
}

// Close releases the codecs; safe to call more than once.
func (d *StreamDecoder) Close() error {
	d.decomp.close()
	d.closed = true
	return nil
}

type chunkHeader struct {
	codec      Codec
	rawLen     uint64
	payloadLen uint64
	checksum   uint64
}

func (d *StreamDecoder) checkHeader(h *chunkHeader) error {
	switch {
	case h.rawLen > uint64(d.cfg.ChunkSize):
		return wrapf(ErrTooLarge, "chunk of %d bytes, ChunkSize is %d", h.rawLen, d.cfg.ChunkSize)
	case h.payloadLen > h.rawLen:
		return wrapf(ErrMalformed, "payload of %d bytes for a %d-byte chunk", h.payloadLen, h.rawLen)
	case h.codec == CodecNone && h.payloadLen != h.rawLen:
		return wrapf(ErrMalformed, "stored chunk of %d bytes declares %d", h.payloadLen, h.rawLen)
	}
	return nil
}

// DecodeChunk decodes the single chunk frame in frame (exactly one frame)
// and appends its bytes to dst.
func (d *StreamDecoder) DecodeChunk(dst, frame []byte) ([]byte, error) {
	out, err := d.decodeChunk(dst, frame)
	if err != nil {
		d.rec.failure()
	}
	return out, err
}

func (d *StreamDecoder) decodeChunk(dst, frame []byte) ([]byte, error) {
	if d.closed {
		return dst, ErrClosed
	}
	var h chunkHeader
	n, err := parseChunkHeader(frame, &h)
	if err != nil {
		return dst, err
	}
	if err := d.checkHeader(&h); err != nil {
		return dst, err
	}
	switch rest := uint64(len(frame) - n); {
	case rest < h.payloadLen:
		return dst, wrapf(ErrTruncated, "chunk payload of %d bytes, %d present", h.payloadLen, rest)
	case rest > h.payloadLen:
		return dst, wrapf(ErrMalformed, "%d trailing bytes after the chunk", rest-h.payloadLen)
	}
	return d.finish(dst, &h, frame[n:])
}

func (d *StreamDecoder) finish(dst []byte, h *chunkHeader, payload []byte) ([]byte, error) {
	var err error
	d.buf, err = d.decomp.decompress(h.codec, d.buf, payload, int(h.rawLen))
	if err != nil {
		return dst, err
	}
	if got := xxhash.Sum64(d.buf); got != h.checksum {
		return dst, wrapf(ErrChecksum, "chunk hashes to %#x, frame says %#x", got, h.checksum)
	}
	return append(dst, d.buf...), nil
}

func parseChunkHeader(frame []byte, h *chunkHeader) (int, error) {
	if len(frame) >= 4 && string(frame[:4]) != chunkMagic {
		return 0, wrapf(ErrMalformed, "bad chunk magic %q", frame[:4])
	}
	if len(frame) < chunkFixedLen {
		return 0, wrapf(ErrTruncated, "chunk frame of %d bytes", len(frame))
	}
	if frame[4] != formatVersion {
		return 0, wrapf(ErrVersion, "chunk version %d, this decoder reads %d", frame[4], formatVersion)
	}
	h.codec = Codec(frame[5])
	if !h.codec.valid() {
		return 0, wrapf(ErrCorruptPayload, "codec byte %d unknown", frame[5])
	}
	off := chunkFixedLen
	for _, f := range []*uint64{&h.rawLen, &h.payloadLen} {
		v, n := binary.Uvarint(frame[off:])
		if n == 0 {
			return 0, wrapf(ErrTruncated, "chunk header ends at byte %d", len(frame))
		}
		if n < 0 {
			return 0, wrapf(ErrMalformed, "chunk header varint at byte %d overflows", off)
		}
		*f = v
		off += n
	}
	if len(frame)-off < 8 {
		return 0, wrapf(ErrTruncated, "chunk header ends before its checksum")
	}
	h.checksum = binary.LittleEndian.Uint64(frame[off:])
	return off + 8, nil
}

// Writer is an io.WriteCloser that cuts what is written into ChunkSize
// chunks and writes their frames to the underlying writer.
type Writer struct {
	enc   *StreamEncoder
	w     io.Writer
	buf   []byte
	frame []byte
	err   error
}

// NewWriter returns a Writer encoding with enc onto w.
func NewWriter(w io.Writer, enc *StreamEncoder) *Writer {
	return &Writer{enc: enc, w: w, buf: make([]byte, 0, enc.cfg.ChunkSize)}
}

// Write buffers p, emitting a frame for every full chunk.
func (w *Writer) Write(p []byte) (int, error) {
	if w.err != nil {
		return 0, w.err
	}
	n := 0
	for len(p) > 0 {
		k := min(len(p), cap(w.buf)-len(w.buf))
		w.buf = append(w.buf, p[:k]...)
		p, n = p[k:], n+k
		if len(w.buf) == cap(w.buf) {
			if err := w.Flush(); err != nil {
				return n, err
			}
		}
	}
	return n, nil
}

// Flush emits the buffered bytes as a (possibly short) chunk.
func (w *Writer) Flush() error {
	if w.err != nil || len(w.buf) == 0 {
		return w.err
	}
	w.frame, w.err = w.enc.EncodeChunk(w.frame[:0], w.buf)
	if w.err == nil {
		_, w.err = w.w.Write(w.frame)
	}
	w.buf = w.buf[:0]
	return w.err
}

// Close flushes the last chunk. It does not close the underlying writer.
func (w *Writer) Close() error {
	err := w.Flush()
	if w.err == nil {
		w.err = errors.New("hde: write to closed Writer")
	}
	return err
}

// Reader is an io.Reader that decodes a sequence of chunk frames.
type Reader struct {
	dec     *StreamDecoder
	r       *bufio.Reader
	out     []byte // undelivered part of obuf
	obuf    []byte
	payload []byte
	err     error
}

// NewReader returns a Reader decoding frames from r with dec.
func NewReader(r io.Reader, dec *StreamDecoder) *Reader {
	return &Reader{dec: dec, r: bufio.NewReader(r)}
}

// Read returns decoded bytes. It returns io.EOF at a clean end between
// frames and an error wrapping ErrTruncated inside one.
func (r *Reader) Read(p []byte) (int, error) {
	for len(r.out) == 0 {
		if r.err != nil {
			return 0, r.err
		}
		r.err = r.next()
	}
	n := copy(p, r.out)
	r.out = r.out[n:]
	return n, nil
}

func (r *Reader) next() error {
	var fixed [chunkFixedLen]byte
	if _, err := io.ReadFull(r.r, fixed[:]); err != nil {
		if err == io.EOF {
			return io.EOF
		}
		return r.fail(wrapf(ErrTruncated, "chunk header: %v", err))
	}
	hdr := append(make([]byte, 0, maxChunkHeaderLen), fixed[:]...)
	for i := 0; i < 2; i++ {
		v, err := binary.ReadUvarint(r.r)
		if err != nil {
			if err == io.EOF || err == io.ErrUnexpectedEOF {
				return r.fail(wrapf(ErrTruncated, "chunk header: %v", err))
			}
			return r.fail(wrapf(ErrMalformed, "chunk header: %v", err))
		}
		hdr = binary.AppendUvarint(hdr, v)
	}
	var sum [8]byte
	if _, err := io.ReadFull(r.r, sum[:]); err != nil {
		return r.fail(wrapf(ErrTruncated, "chunk checksum: %v", err))
	}
	hdr = append(hdr, sum[:]...)
	var h chunkHeader
	if _, err := parseChunkHeader(hdr, &h); err != nil {
		return r.fail(err)
	}
	if err := r.dec.checkHeader(&h); err != nil {
		return r.fail(err)
	}
	r.payload = grow(r.payload[:0], int(h.payloadLen))[:h.payloadLen]
	if _, err := io.ReadFull(r.r, r.payload); err != nil {
		return r.fail(wrapf(ErrTruncated, "chunk payload: %v", err))
	}
	out, err := r.dec.finish(r.obuf[:0], &h, r.payload)
	if err != nil {
		return r.fail(err)
	}
	r.obuf, r.out = out, out
	return nil
}

func (r *Reader) fail(err error) error {
	r.dec.rec.failure()
	return err
}
