package hde

import (
	"fmt"
	"math/bits"

	"github.com/dwcp/dwcp/metrics"
)

// Mode selects the protocol of an Encoder. Both modes write the same frame
// format, so one Decoder reads either.
type Mode uint8

const (
	// ModeAdaptive is DWCP v3: zero flags, duplicate references, XOR deltas
	// against the previous version of a page, per-page entropy routing and
	// adaptive batch compression.
	ModeAdaptive Mode = iota
	// ModeBaseline is the DWCP v1 protocol: every page raw, the batch
	// compressed with one fixed codec (Config.BaselineCodec), no state kept
	// between batches. Frames are marked stateless.
	ModeBaseline
)

func (m Mode) String() string {
	switch m {
	case ModeAdaptive:
		return "adaptive"
	case ModeBaseline:
		return "baseline"
	}
	return fmt.Sprintf("Mode(%d)", uint8(m))
}

// Config configures Encoders, Decoders and the opaque-stream coder. The zero
// value is not valid; start from DefaultConfig. The decoding side must use the
// same PageSize and limits at least as large as the encoding side's.
type Config struct {
	// PageSize is the size of a memory page in bytes: a power of two from
	// 512 to 1 MiB. Default 4096.
	PageSize int
	// Mode selects adaptive (v3) or baseline (v1) encoding. Default ModeAdaptive.
	Mode Mode
	// BaselineCodec is the fixed codec of ModeBaseline. Default CodecZstdFastest
	// (what QEMU multifd uses: zstd level 1).
	BaselineCodec Codec
	// Codecs are the candidates of the adaptive selector. Default: none,
	// snappy, lz4, zstd-fastest, zstd-default, zstd-better.
	Codecs []Codec
	// CacheBytes bounds the memory each side spends on previous page
	// versions (the delta base and the duplicate store), in bytes; it is
	// rounded down to whole pages. Default 256 MiB. 0 disables duplicate
	// references and deltas (zero flags and compression still apply).
	CacheBytes int64
	// MaxBatchPages bounds the pages of one batch frame. Default 4096.
	MaxBatchPages int
	// LinkBandwidth is the link bandwidth, in bytes per second, that the
	// selector assumes until SetLinkBandwidth reports one. Default 125e6
	// (1 Gbit/s).
	LinkBandwidth float64
	// EWMAAlpha is the weight of the newest sample in the running speed and
	// ratio figures of each codec, in (0, 1]. Default 0.2.
	EWMAAlpha float64
	// ExploreEvery makes the selector re-measure the codec with the stalest
	// figures once every ExploreEvery batches, on a 128 KiB sample of the
	// batch (the batch itself still goes out with the best codec), so the
	// figures stay current as the data changes. 0 disables it after the
	// initial measurement of every codec. Default 8.
	ExploreEvery int
	// EntropyThreshold is the sampled Shannon entropy, in bits per byte,
	// above which a raw page is judged incompressible and stored without
	// compression. Range (0, 8]; 8 disables the check. Default 7.0.
	EntropyThreshold float64
	// MinCompressBytes is the smallest compressible section worth handing to
	// a codec; smaller sections are stored. Default 512.
	MinCompressBytes int
	// ChunkSize is the largest chunk of the opaque-stream mode. Default 256 KiB,
	// at most 64 MiB.
	ChunkSize int
	// DataClass labels the bytes in the hde_* metrics: one of
	// metrics.DataClassVMMemory, DataClassText, DataClassBinary. Default
	// vm_memory for pages.
	DataClass string
}

// DefaultConfig returns the configuration described on each field.
func DefaultConfig() Config {
	return Config{
		PageSize:         4096,
		Mode:             ModeAdaptive,
		BaselineCodec:    CodecZstdFastest,
		Codecs:           []Codec{CodecNone, CodecSnappy, CodecLZ4, CodecZstdFastest, CodecZstdDefault, CodecZstdBetter},
		CacheBytes:       256 << 20,
		MaxBatchPages:    4096,
		LinkBandwidth:    125e6,
		EWMAAlpha:        0.2,
		ExploreEvery:     8,
		EntropyThreshold: 7.0,
		MinCompressBytes: 512,
		ChunkSize:        256 << 10,
		DataClass:        metrics.DataClassVMMemory,
	}
}

const (
	minPageSize  = 512
	maxPageSize  = 1 << 20
	maxChunkSize = 64 << 20
	// maxBodyBytes caps the uncompressed body of any frame whatever the
	// configuration, so a frame can never ask for more than 1 GiB.
	maxBodyBytes = 1 << 30
)

// Validate reports the first invalid field, naming its value.
func (c Config) Validate() error {
	if c.PageSize < minPageSize || c.PageSize > maxPageSize || bits.OnesCount(uint(c.PageSize)) != 1 {
		return fmt.Errorf("hde: PageSize %d must be a power of two in [%d, %d]", c.PageSize, minPageSize, maxPageSize)
	}
	if c.Mode != ModeAdaptive && c.Mode != ModeBaseline {
		return fmt.Errorf("hde: Mode %d is unknown", c.Mode)
	}
	if !c.BaselineCodec.valid() {
		return fmt.Errorf("hde: BaselineCodec %d is unknown", c.BaselineCodec)
	}
	if c.Mode == ModeAdaptive && len(c.Codecs) == 0 {
		return fmt.Errorf("hde: Codecs is empty; list at least CodecNone")
	}
	seen := map[Codec]bool{}
	for _, k := range c.Codecs {
		if !k.valid() {
			return fmt.Errorf("hde: Codecs contains unknown codec %d", k)
		}
		if seen[k] {
			return fmt.Errorf("hde: Codecs lists %s twice", k)
		}
		seen[k] = true
	}
	if c.CacheBytes < 0 {
		return fmt.Errorf("hde: CacheBytes %d must not be negative", c.CacheBytes)
	}
	if c.CacheBytes/int64(c.PageSize) > 1<<31-1 {
		return fmt.Errorf("hde: CacheBytes %d holds more than 2^31 pages", c.CacheBytes)
	}
	if c.MaxBatchPages < 1 {
		return fmt.Errorf("hde: MaxBatchPages %d must be at least 1", c.MaxBatchPages)
	}
	if int64(c.MaxBatchPages)*int64(c.PageSize+16) > maxBodyBytes {
		return fmt.Errorf("hde: MaxBatchPages %d x PageSize %d exceeds the 1 GiB frame limit", c.MaxBatchPages, c.PageSize)
	}
	if !(c.LinkBandwidth > 0) {
		return fmt.Errorf("hde: LinkBandwidth %g must be positive", c.LinkBandwidth)
	}
	if !(c.EWMAAlpha > 0 && c.EWMAAlpha <= 1) {
		return fmt.Errorf("hde: EWMAAlpha %g must be in (0, 1]", c.EWMAAlpha)
	}
	if c.ExploreEvery < 0 {
		return fmt.Errorf("hde: ExploreEvery %d must not be negative", c.ExploreEvery)
	}
	if !(c.EntropyThreshold > 0 && c.EntropyThreshold <= 8) {
		return fmt.Errorf("hde: EntropyThreshold %g must be in (0, 8]", c.EntropyThreshold)
	}
	if c.MinCompressBytes < 0 {
		return fmt.Errorf("hde: MinCompressBytes %d must not be negative", c.MinCompressBytes)
	}
	if c.ChunkSize < 1 || c.ChunkSize > maxChunkSize {
		return fmt.Errorf("hde: ChunkSize %d must be in [1, %d]", c.ChunkSize, maxChunkSize)
	}
	switch c.DataClass {
	case metrics.DataClassVMMemory, metrics.DataClassText, metrics.DataClassBinary:
	default:
		return fmt.Errorf("hde: DataClass %q is not one of vm_memory, text, binary", c.DataClass)
	}
	return nil
}

func (c Config) cachePages() int { return int(c.CacheBytes / int64(c.PageSize)) }

func (c Config) pageShift() uint8 { return uint8(bits.TrailingZeros(uint(c.PageSize))) }

// maxBody is the largest uncompressed body a batch frame of this
// configuration may declare: every page raw plus its record.
func (c Config) maxBody() int { return c.MaxBatchPages * (c.PageSize + 24) }
