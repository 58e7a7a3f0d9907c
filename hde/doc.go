// Package hde is DWCP's Hierarchical Delta Encoding: it turns batches of VM
// memory pages into compact, checksummed frames for live migration, and back.
//
// # Levels
//
// Page level. Each page of a batch becomes the cheapest of:
//   - a zero flag, for an all-zero page (checked 64 bytes per step);
//   - a duplicate reference to a page already sent whose cached content is
//     identical: candidates come from an xxhash64 index, and the sender
//     compares the bytes, so a hash collision can never corrupt memory;
//   - an XOR delta against the previous version of the same page, run-length
//     encoded in the style of QEMU's XBZRLE, when it is smaller than the page;
//   - the raw page, which goes to the compressed section unless its sampled
//     byte entropy says it is incompressible, in which case it is stored.
//
// Batch level. The compressible section is compressed with none, snappy, lz4
// or zstd (fastest, default, better). The selector keeps EWMA figures of each
// codec's speed and output fraction on this data and picks the codec that
// finishes the batch soonest when encoding and sending are pipelined, i.e.
// the one maximising effective throughput: it minimises
// max(page-level time + body/speed, (body*fraction + stored)/link) for the
// link bandwidth the caller reports with SetLinkBandwidth, and within 5% of
// the best prefers the smaller output. Codecs are first measured, and then
// re-measured once every ExploreEvery batches, on a 128 KiB sample of a
// batch, so exploration never puts a worse batch on the wire. On a link
// faster than this core can compress, the answer is "none".
//
// Migration level. Both sides keep a bounded LRU cache of the last version
// of each page (Config.CacheBytes) and apply exactly the same updates in the
// same order, so the decoder needs nothing but the frames. Frames carry a
// batch sequence number; a lost, repeated or reordered frame is rejected
// (ErrSequence) instead of decoding to wrong memory.
//
// ModeBaseline is the v1 protocol in the same frame format: every page raw,
// one fixed codec, no state, frames decodable in any order.
//
// The opaque-stream mode (StreamEncoder, StreamDecoder, NewWriter, NewReader)
// compresses byte streams with no page structure, such as QEMU's own
// migration stream, in checksummed chunks with the same adaptive selector.
//
// # Usage
//
//	enc, _ := hde.NewEncoder(hde.DefaultConfig(), m) // m *metrics.Metrics, or nil
//	defer enc.Close()
//	enc.SetLinkBandwidth(forecastBytesPerSecond)
//	frame, err := enc.EncodeBatch(frame[:0], pages) // pages []hde.Page{{Index, Data}}
//	// ... send frame ...
//	dec, _ := hde.NewDecoder(hde.DefaultConfig(), m)
//	defer dec.Close()
//	err = dec.DecodeBatch(frame, func(index uint64, data []byte) error {
//		copy(guestMemory[index*4096:], data) // data is valid only during the call
//		return nil
//	})
//
// # Wire format
//
// A batch frame is a versioned header (magic "HDEB", version, flags, codec,
// page size, sequence, page count and the lengths of every section), an
// xxhash64 checksum over every decoded page, the compressed body and the
// stored pages; see wire.go. The decoder checks every length against the
// frame and its Config limits before allocating, decodes the whole frame,
// verifies the checksum, and only then hands pages to the callback: a bad
// frame delivers no page. Errors wrap the package's sentinels (ErrVersion,
// ErrTruncated, ErrMalformed, ErrTooLarge, ErrUnknownReference, ErrChecksum,
// ErrCorruptPayload, ErrPageSize, ErrSequence); after a frame fails part-way
// through changing the decoder's state every later frame fails with
// ErrDesynchronized until Reset.
//
// # Concurrency
//
// An Encoder or a Decoder serves one migration stream from one goroutine.
// SetLinkBandwidth and Stats are safe from any goroutine. To use several
// streams in parallel, give each its own Encoder/Decoder pair (for example
// pages partitioned by index); duplicate detection then works per stream.
//
// # Metrics
//
// Encoders record into the shared catalogue (package metrics):
// dwcp_v3_hde_input_bytes_total and _output_bytes_total by data class (all
// and Config.DataClass), dwcp_v3_hde_compression_ratio (bytes saved since
// start, recomputed from those counters so that encoders sharing a catalogue
// report the combined figure), dwcp_v3_hde_compression_latency_seconds (per
// page: batch time divided by its pages), dwcp_v3_hde_dedup_ratio (zero and
// duplicate pages over all pages), dwcp_v3_hde_pages_total{kind},
// dwcp_v3_hde_algorithm_selections_total{algorithm} (one per batch; none
// when the section was too small or incompressible),
// dwcp_v3_migration_latency_seconds{component="hde"} (one batch encode) and
// dwcp_v3_errors_total{component="hde",error_type="compression_error"} for
// rejected batches and frames.
//
// # Corpus
//
// NewCorpus generates a seeded synthetic guest memory (zero, duplicate,
// text, code, heap-like and incompressible pages, see CorpusMix) and
// NextRound dirties it like a running guest; the benchmarks compare HDE with
// plain zstd, lz4 and snappy on it, or on a memory image given in HDE_IMAGE.
package hde
