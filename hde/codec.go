package hde

import (
	"fmt"
	"math"
	"time"

	"github.com/golang/snappy"
	"github.com/klauspost/compress/zstd"
	"github.com/pierrec/lz4/v4"

	"github.com/dwcp/dwcp/metrics"
)

// Codec identifies the general-purpose compressor applied to a frame's
// compressible section. Its value is written in the frame.
type Codec uint8

// Codecs. The zstd levels are klauspost/compress's: Fastest ~ zstd -1,
// Default ~ zstd -3, Better ~ zstd -7.
const (
	CodecNone Codec = iota
	CodecSnappy
	CodecLZ4
	CodecZstdFastest
	CodecZstdDefault
	CodecZstdBetter
	numCodecs
)

func (k Codec) valid() bool { return k < numCodecs }

func (k Codec) String() string {
	switch k {
	case CodecNone:
		return "none"
	case CodecSnappy:
		return "snappy"
	case CodecLZ4:
		return "lz4"
	case CodecZstdFastest:
		return "zstd-fastest"
	case CodecZstdDefault:
		return "zstd-default"
	case CodecZstdBetter:
		return "zstd-better"
	}
	return fmt.Sprintf("Codec(%d)", uint8(k))
}

// algorithm is the metrics label of the codec's family.
func (k Codec) algorithm() string {
	switch k {
	case CodecSnappy:
		return metrics.AlgorithmSnappy
	case CodecLZ4:
		return metrics.AlgorithmLZ4
	case CodecZstdFastest, CodecZstdDefault, CodecZstdBetter:
		return metrics.AlgorithmZstd
	}
	return metrics.AlgorithmNone
}

func (k Codec) zstdLevel() zstd.EncoderLevel {
	switch k {
	case CodecZstdDefault:
		return zstd.SpeedDefault
	case CodecZstdBetter:
		return zstd.SpeedBetterCompression
	}
	return zstd.SpeedFastest
}

// compressor owns one reusable encoder per codec. Not safe for concurrent use.
type compressor struct {
	zstd [numCodecs]*zstd.Encoder
	lz4  lz4.Compressor
}

// compress appends the compression of src with k to dst. When the codec
// cannot shrink src it reports ok=false and dst is returned unchanged.
func (c *compressor) compress(k Codec, dst, src []byte) (out []byte, ok bool, err error) {
	start := len(dst)
	switch k {
	case CodecNone:
		return append(dst, src...), true, nil
	case CodecSnappy:
		dst = grow(dst, snappy.MaxEncodedLen(len(src)))
		enc := snappy.Encode(dst[start:cap(dst)], src)
		dst = dst[:start+len(enc)]
	case CodecLZ4:
		dst = grow(dst, lz4.CompressBlockBound(len(src)))
		n, err := c.lz4.CompressBlock(src, dst[start:cap(dst)])
		if err != nil {
			return dst[:start], false, err
		}
		if n == 0 {
			return dst[:start], false, nil
		}
		dst = dst[:start+n]
	case CodecZstdFastest, CodecZstdDefault, CodecZstdBetter:
		if err := c.prepare(k); err != nil {
			return dst, false, err
		}
		dst = c.zstd[k].EncodeAll(src, dst)
	default:
		return dst, false, fmt.Errorf("hde: codec %d unknown", k)
	}
	if len(dst)-start >= len(src) {
		return dst[:start], false, nil
	}
	return dst, true, nil
}

// prepare creates k's encoder ahead of use, so that its set-up cost is not
// measured as compression time.
func (c *compressor) prepare(k Codec) error {
	if k < CodecZstdFastest || k > CodecZstdBetter || c.zstd[k] != nil {
		return nil
	}
	e, err := zstd.NewWriter(nil,
		zstd.WithEncoderLevel(k.zstdLevel()),
		zstd.WithEncoderConcurrency(1),
		zstd.WithEncoderCRC(false), // frames carry their own checksum
		zstd.WithZeroFrames(true))
	if err != nil {
		return err
	}
	c.zstd[k] = e
	return nil
}

func (c *compressor) close() {
	for i, e := range c.zstd {
		if e != nil {
			e.Close()
			c.zstd[i] = nil
		}
	}
}

// decompressor owns one reusable zstd decoder. Not safe for concurrent use.
type decompressor struct {
	zstd    *zstd.Decoder
	maxBody int
}

// decompress writes the decompression of src into dst[:n], growing dst as
// needed, and fails unless exactly n bytes come out. n is bounded by the
// caller; codecs are also checked against their maximum expansion before any
// allocation so that a small frame cannot claim a huge body.
func (d *decompressor) decompress(k Codec, dst, src []byte, n int) ([]byte, error) {
	switch k {
	case CodecNone:
		if len(src) != n {
			return dst, fmt.Errorf("%w: stored section of %d bytes, header says %d", ErrCorruptPayload, len(src), n)
		}
		return append(dst[:0], src...), nil
	case CodecSnappy:
		dl, err := snappy.DecodedLen(src)
		if err != nil || dl != n {
			return dst, fmt.Errorf("%w: snappy length %d (err %v), header says %d", ErrCorruptPayload, dl, err, n)
		}
		dst = grow(dst[:0], n)[:n]
		out, err := snappy.Decode(dst, src)
		if err != nil || len(out) != n {
			return dst, fmt.Errorf("%w: snappy: %v", ErrCorruptPayload, err)
		}
		return out, nil
	case CodecLZ4:
		// An LZ4 sequence of one token byte and a 2-byte offset expands to
		// at most 255 bytes per input byte.
		if int64(n) > 255*int64(len(src))+16 {
			return dst, fmt.Errorf("%w: lz4 body of %d bytes from %d compressed bytes is impossible", ErrCorruptPayload, n, len(src))
		}
		dst = grow(dst[:0], n)[:n]
		got, err := lz4.UncompressBlock(src, dst)
		if err != nil || got != n {
			return dst, fmt.Errorf("%w: lz4 gave %d of %d bytes: %v", ErrCorruptPayload, got, n, err)
		}
		return dst, nil
	case CodecZstdFastest, CodecZstdDefault, CodecZstdBetter:
		if d.zstd == nil {
			z, err := zstd.NewReader(nil,
				zstd.WithDecoderConcurrency(1),
				zstd.WithDecoderMaxMemory(uint64(d.maxBody)),
				zstd.WithDecodeAllCapLimit(true))
			if err != nil {
				return dst, err
			}
			d.zstd = z
		}
		// With the cap limit, DecodeAll never writes past cap(dst): one
		// byte of slack turns "too long" into a length mismatch, not growth.
		dst = grow(dst[:0], n+1)[:0]
		out, err := d.zstd.DecodeAll(src, dst[:0:n+1])
		if err != nil || len(out) != n {
			return dst, fmt.Errorf("%w: zstd gave %d of %d bytes: %v", ErrCorruptPayload, len(out), n, err)
		}
		return dst[:n], nil // out aliases dst; keep dst's full capacity for reuse
	}
	return dst, fmt.Errorf("%w: codec byte %d unknown", ErrCorruptPayload, uint8(k))
}

func (d *decompressor) close() {
	if d.zstd != nil {
		d.zstd.Close()
		d.zstd = nil
	}
}

// grow returns b with room for at least n more bytes.
func grow(b []byte, n int) []byte {
	if cap(b)-len(b) >= n {
		return b
	}
	nb := make([]byte, len(b), len(b)+n+len(b)/4)
	copy(nb, b)
	return nb
}

// codecEstimate holds the running figures of one codec on this data.
type codecEstimate struct {
	speed   float64 // input bytes per second of compression
	frac    float64 // compressed size / input size
	samples int
	last    int // batch number of the last sample
}

// CodecEstimate is a snapshot of the selector's figures for one codec.
type CodecEstimate struct {
	Codec Codec
	// Speed is the EWMA of compression speed in input bytes per second.
	Speed float64
	// Fraction is the EWMA of compressed size / input size.
	Fraction float64
	// Samples is the number of batches measured.
	Samples int
	// Effective is min(Speed, link bandwidth / Fraction): the input rate
	// this codec alone would sustain on the link. (The selector also counts
	// the batch's page-level time and stored bytes, see Encoder.)
	Effective float64
}

// selector picks the codec maximising effective throughput from running
// figures of each codec's speed and output fraction. Not safe for concurrent
// use; the link bandwidth is passed in by the caller.
type selector struct {
	codecs  []Codec
	alpha   float64
	explore int
	est     [numCodecs]codecEstimate
	batches int
	next    int // round-robin cursor of exploration
}

func newSelector(cfg Config) selector {
	s := selector{codecs: append([]Codec(nil), cfg.Codecs...), alpha: cfg.EWMAAlpha, explore: cfg.ExploreEvery}
	// Sending uncompressed costs no CPU and saves nothing: its effective
	// throughput is the link bandwidth itself, known without measuring.
	s.est[CodecNone] = codecEstimate{speed: math.Inf(1), frac: 1, samples: 1}
	return s
}

func (s *selector) effective(k Codec, link float64) float64 {
	e := &s.est[k]
	if e.frac <= 0 {
		return e.speed
	}
	return math.Min(e.speed, link/e.frac)
}

// batchShape describes the batch a codec is chosen for: the bytes the
// codec would compress, the bytes that go on the wire uncompressed anyway
// (stored pages, headers) and the CPU time already spent on the page level.
type batchShape struct {
	body, stored float64
	pageTime     float64 // seconds
}

// batchSeconds is how long the batch takes with codec k on a link of link
// bytes per second, when encoding and sending are pipelined: the longer of
// the CPU time (page level + compression) and the wire time.
func (s *selector) batchSeconds(k Codec, link float64, b batchShape) float64 {
	e := &s.est[k]
	cpu := b.pageTime
	if !math.IsInf(e.speed, 1) && e.speed > 0 {
		cpu += b.body / e.speed
	}
	wire := (b.body*e.frac + b.stored) / link
	return math.Max(cpu, wire)
}

// choose returns the codec finishing the batch soonest (maximising
// effective throughput), preferring the smaller output among those within
// tieTolerance of it. Every candidate must have been measured (see probes).
func (s *selector) choose(link float64, b batchShape) Codec {
	s.batches++
	best, bestT := s.codecs[0], s.batchSeconds(s.codecs[0], link, b)
	for _, k := range s.codecs[1:] {
		if t := s.batchSeconds(k, link, b); t < bestT {
			best, bestT = k, t
		}
	}
	// Codecs within tieTolerance of the best time are as good for the
	// migration's duration; among them the smallest output is kinder to a
	// shared link, so take it.
	for _, k := range s.codecs {
		if s.batchSeconds(k, link, b) <= bestT*(1+tieTolerance) && s.est[k].frac < s.est[best].frac {
			best = k
		}
	}
	return best
}

// probes appends to dst the codecs to measure on a sample of the next
// batch before choosing: all unmeasured ones at first, then, once every
// s.explore batches, the one with the stalest figures. Probing a sample,
// rather than sending a whole batch with a codec that may be worse, keeps
// exploration off the wire.
func (s *selector) probes(dst []Codec) []Codec {
	for _, k := range s.codecs {
		if s.est[k].samples == 0 {
			dst = append(dst, k)
		}
	}
	if len(dst) > 0 || s.explore <= 0 || (s.batches+1)%s.explore != 0 {
		return dst
	}
	stalest := Codec(numCodecs)
	for _, k := range s.codecs {
		if k != CodecNone && (stalest == numCodecs || s.est[k].last < s.est[stalest].last) {
			stalest = k
		}
	}
	if stalest != numCodecs {
		dst = append(dst, stalest)
	}
	return dst
}

// probeCodecs compresses a sample of data (probeSlices slices spread over
// it, probeBytes in all) with each codec of list and folds the measurements
// into sel. sampleBuf and scratch are reused and returned.
func probeCodecs(comp *compressor, sel *selector, list []Codec, data, sampleBuf, scratch []byte) ([]byte, []byte) {
	if len(list) == 0 {
		return sampleBuf, scratch
	}
	sample := data
	if len(data) > probeBytes {
		sampleBuf = sampleBuf[:0]
		step, slice := len(data)/probeSlices, probeBytes/probeSlices
		for i := 0; i < probeSlices; i++ {
			sampleBuf = append(sampleBuf, data[i*step:i*step+slice]...)
		}
		sample = sampleBuf
	}
	for _, k := range list {
		if k == CodecNone {
			continue
		}
		if sel.est[k].samples == 0 {
			// The first call of a codec allocates its tables: keep that
			// out of the measurement.
			scratch, _, _ = comp.compress(k, scratch[:0], sample)
		}
		t0 := time.Now()
		out, ok, err := comp.compress(k, scratch[:0], sample)
		d := time.Since(t0)
		scratch = out
		size := len(sample)
		if ok && err == nil {
			size = len(out)
		}
		sel.observe(k, len(sample), size, d)
	}
	return sampleBuf, scratch
}

// probeBytes is the size of the sample a probe compresses: large enough for
// a representative speed, small enough to cost under 1% of the encoding
// time at the default exploration rate.
const (
	probeBytes  = 128 << 10
	probeSlices = 8
)

// tieTolerance is the relative throughput difference below which the
// selector prefers the better compression ratio.
const tieTolerance = 0.05

// observe folds one compression of in bytes to out bytes taking d into k's
// figures.
func (s *selector) observe(k Codec, in, out int, d time.Duration) {
	if in <= 0 {
		return
	}
	sec := d.Seconds()
	if sec <= 0 {
		sec = 1e-9
	}
	speed := float64(in) / sec
	frac := float64(out) / float64(in)
	e := &s.est[k]
	if e.samples == 0 {
		e.speed, e.frac = speed, frac
	} else {
		e.speed += s.alpha * (speed - e.speed)
		e.frac += s.alpha * (frac - e.frac)
	}
	e.samples++
	e.last = s.batches
}

// appendSnapshot appends the current figures of every candidate to out.
func (s *selector) appendSnapshot(out []CodecEstimate, link float64) []CodecEstimate {
	for _, k := range s.codecs {
		e := s.est[k]
		out = append(out, CodecEstimate{Codec: k, Speed: e.speed, Fraction: e.frac, Samples: e.samples, Effective: s.effective(k, link)})
	}
	return out
}
