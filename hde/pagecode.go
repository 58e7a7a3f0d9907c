package hde

import (
	"encoding/binary"
	"math"
	"math/bits"
)

// isZero reports whether every byte of p is zero. It ORs eight 8-byte words
// per step, so a 4 KiB zero page costs 64 iterations, and returns at the
// first non-zero block, which for most non-zero pages is the first one.
func isZero(p []byte) bool {
	for len(p) >= 64 {
		w := binary.LittleEndian.Uint64(p[0:8]) | binary.LittleEndian.Uint64(p[8:16]) |
			binary.LittleEndian.Uint64(p[16:24]) | binary.LittleEndian.Uint64(p[24:32]) |
			binary.LittleEndian.Uint64(p[32:40]) | binary.LittleEndian.Uint64(p[40:48]) |
			binary.LittleEndian.Uint64(p[48:56]) | binary.LittleEndian.Uint64(p[56:64])
		if w != 0 {
			return false
		}
		p = p[64:]
	}
	for _, b := range p {
		if b != 0 {
			return false
		}
	}
	return true
}

// Delta format (XBZRLE-like, after QEMU docs/xbzrle.txt): a sequence of
// pairs (zero-run uvarint, data-run uvarint, data-run bytes of the NEW page)
// over the XOR of the old and new page. Runs of equal bytes shorter than
// deltaMinGap inside a changed region are carried as data, since splitting
// there would cost two varints. A trailing run of equal bytes is omitted.
const deltaMinGap = 3

// appendDelta appends the delta turning old into cur to dst. It gives up and
// returns ok=false as soon as the delta would exceed limit bytes.
func appendDelta(dst, old, cur []byte, limit int) ([]byte, bool) {
	start := len(dst)
	n := len(cur)
	i := 0
	for i < n {
		// Equal run, a word at a time.
		zs := i
		for i+8 <= n {
			x := binary.LittleEndian.Uint64(old[i:]) ^ binary.LittleEndian.Uint64(cur[i:])
			if x != 0 {
				i += bits.TrailingZeros64(x) >> 3
				break
			}
			i += 8
		}
		if i+8 > n {
			for i < n && old[i] == cur[i] {
				i++
			}
		}
		if i >= n {
			break
		}
		zrun := i - zs
		// Changed run: extend until deltaMinGap equal bytes in a row.
		ds := i
		for i < n {
			if old[i] != cur[i] {
				i++
				continue
			}
			j := i + 1
			for j < n && j-i < deltaMinGap && old[j] == cur[j] {
				j++
			}
			if j-i >= deltaMinGap || j == n {
				break
			}
			i = j
		}
		drun := i - ds
		if len(dst)-start+drun+2*binary.MaxVarintLen32 > limit {
			return dst[:start], false
		}
		dst = binary.AppendUvarint(dst, uint64(zrun))
		dst = binary.AppendUvarint(dst, uint64(drun))
		dst = append(dst, cur[ds:i]...)
	}
	return dst, true
}

// applyDelta overwrites page (holding the old version) with the delta's
// changed runs. It validates every length against the page bounds.
func applyDelta(page, delta []byte) error {
	pos := 0
	for len(delta) > 0 {
		zrun, n := binary.Uvarint(delta)
		if n <= 0 {
			return errTruncatedDelta
		}
		delta = delta[n:]
		drun, n := binary.Uvarint(delta)
		if n <= 0 {
			return errTruncatedDelta
		}
		delta = delta[n:]
		if zrun > uint64(len(page)-pos) || drun > uint64(len(page)-pos)-zrun || drun == 0 {
			return errDeltaBounds
		}
		if drun > uint64(len(delta)) {
			return errTruncatedDelta
		}
		pos += int(zrun)
		copy(page[pos:], delta[:drun])
		pos += int(drun)
		delta = delta[drun:]
	}
	return nil
}

var (
	errTruncatedDelta = wrapf(ErrTruncated, "delta record ends inside a run")
	errDeltaBounds    = wrapf(ErrMalformed, "delta run past the page end or empty")
)

// entropySamples is the number of bytes whose histogram estimates a page's
// entropy.
const entropySamples = 256

// cLogC[c] = c*log2(c): the entropy of a histogram of N samples is
// log2(N) - sum(c*log2 c)/N, which can be accumulated sample by sample.
var cLogC = func() (t [entropySamples + 1]float64) {
	for c := 2; c <= entropySamples; c++ {
		t[c] = float64(c) * math.Log2(float64(c))
	}
	return t
}()

// sampledEntropy estimates the Shannon entropy of p in bits per byte from
// entropySamples evenly spaced bytes. Uniform random data scores about 7.2
// (the small sample biases it down from 8), text about 4-5, x86 code 5-6.5.
// hist must be all zeros on entry and is left all zeros.
func sampledEntropy(p []byte, hist *[256]uint16) float64 {
	stride := len(p) / entropySamples
	if stride == 0 {
		return 0
	}
	// The offset inside each stride rotates so that fixed-size records
	// (16- or 64-byte structs) do not alias to the same field every time.
	var sum float64
	pos, rot := 0, 0
	for i := 0; i < entropySamples; i++ {
		c := &hist[p[pos+rot]]
		*c++
		sum += cLogC[*c] - cLogC[*c-1]
		pos += stride
		if rot += 5; rot >= stride {
			rot %= stride
		}
	}
	pos, rot = 0, 0
	for i := 0; i < entropySamples; i++ {
		hist[p[pos+rot]] = 0
		pos += stride
		if rot += 5; rot >= stride {
			rot %= stride
		}
	}
	return math.Log2(entropySamples) - sum/entropySamples
}
