package hde

import "errors"

// Errors returned by the decoders. Every error caused by bad input wraps one
// of these sentinels (test with errors.Is); the message after the sentinel
// names the offending value.
var (
	// ErrMalformed reports a frame whose structure is invalid: bad magic,
	// unknown page kind, trailing bytes, a duplicate page index in a batch.
	ErrMalformed = errors.New("hde: malformed frame")
	// ErrVersion reports a frame written by an unsupported format version.
	ErrVersion = errors.New("hde: unsupported frame version")
	// ErrTruncated reports a frame or a record that ends early.
	ErrTruncated = errors.New("hde: truncated frame")
	// ErrTooLarge reports a length past the configured limits (pages per
	// batch, body size, chunk size, page index range).
	ErrTooLarge = errors.New("hde: length exceeds limit")
	// ErrUnknownReference reports a duplicate reference or a delta whose base
	// page the decoder does not hold.
	ErrUnknownReference = errors.New("hde: reference to unknown page")
	// ErrChecksum reports decoded pages whose checksum differs from the one
	// the encoder computed: the frame was corrupted or the two sides diverged.
	ErrChecksum = errors.New("hde: checksum mismatch")
	// ErrCorruptPayload reports compressed bytes the codec could not decode,
	// or a codec byte this version does not know.
	ErrCorruptPayload = errors.New("hde: corrupt compressed payload")
	// ErrPageSize reports a frame whose page size differs from the decoder's.
	ErrPageSize = errors.New("hde: page size mismatch")
	// ErrSequence reports a batch frame delivered out of order: batch frames
	// of one Encoder must reach one Decoder in the order they were encoded.
	ErrSequence = errors.New("hde: batch out of sequence")
	// ErrDesynchronized is returned by every DecodeBatch after a frame failed
	// part-way through changing the decoder's state; call Reset (and restart
	// the encoder) to continue.
	ErrDesynchronized = errors.New("hde: decoder state desynchronized by an earlier error")
	// ErrInvalidBatch reports pages given to EncodeBatch that cannot be
	// encoded (wrong length, index out of range, index repeated in the batch).
	ErrInvalidBatch = errors.New("hde: invalid batch")
	// ErrClosed is returned by calls on a closed Encoder or Decoder.
	ErrClosed = errors.New("hde: closed")
)
