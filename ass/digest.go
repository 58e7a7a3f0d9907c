package ass

import (
	"math/bits"

	"github.com/cespare/xxhash/v2"
)

// Digest anti-entropy. Every key's entry (a self-contained state, see
// mapEntry) has a 64-bit hash of its key and canonical encoding; keys fall
// into 2^16 leaves by the hash of their name, and each leaf keeps the sum of
// its keys' hashes, updated in O(1) when a key changes. A digest at level L
// sums the leaves into 2^L buckets. Two replicas exchange bucket sums, then
// the key hashes of the buckets that differ, then only the states of the keys
// that differ: the bytes scale with what differs, not with the state.
const (
	leafBits       = 16
	maxDigestLevel = leafBits
	minDigestLevel = 4
)

type keyInfo struct {
	hash uint64
	size int
}

type digestIndex struct {
	dirty    map[string]struct{} // keys changed since their hash was computed
	keys     map[string]keyInfo
	leaves   []uint64   // 1<<leafBits sums of key hashes
	leafKeys [][]string // keys per leaf; keys are never deleted from the map
	size     int64      // sum of entry encoding sizes
	scratch  encoder
}

func newDigestIndex() *digestIndex {
	return &digestIndex{
		dirty:    map[string]struct{}{},
		keys:     map[string]keyInfo{},
		leaves:   make([]uint64, 1<<leafBits),
		leafKeys: make([][]string, 1<<leafBits),
	}
}

func leafOf(key string) int { return int(xxhash.Sum64String(key) >> (64 - leafBits)) }

// touch marks key as changed. Hashing is deferred to refresh, so a key
// written many times between two digests is hashed once.
func (ix *digestIndex) touch(key string) { ix.dirty[key] = struct{}{} }

// refresh rehashes every changed key; call it before reading the index.
func (ix *digestIndex) refresh(state *ORMap) {
	for k := range ix.dirty {
		if e := state.entries[k]; e != nil {
			ix.update(k, e)
		}
		delete(ix.dirty, k)
	}
}

// update recomputes the hash of key after its entry changed.
func (ix *digestIndex) update(key string, e *mapEntry) {
	ix.scratch.buf = ix.scratch.buf[:0]
	ix.scratch.string(key)
	e.encode(&ix.scratch)
	info := keyInfo{hash: xxhash.Sum64(ix.scratch.buf), size: len(ix.scratch.buf)}
	leaf := leafOf(key)
	old, ok := ix.keys[key]
	if ok {
		ix.leaves[leaf] -= old.hash
		ix.size -= int64(old.size)
	} else {
		ix.leafKeys[leaf] = append(ix.leafKeys[leaf], key)
	}
	ix.leaves[leaf] += info.hash
	ix.size += int64(info.size)
	ix.keys[key] = info
}

// levelFor picks the bucket count for n keys: about eight keys per bucket.
func levelFor(n int) uint8 {
	l := bits.Len(uint(n / 8))
	if l < minDigestLevel {
		l = minDigestLevel
	}
	if l > maxDigestLevel {
		l = maxDigestLevel
	}
	return uint8(l)
}

func (ix *digestIndex) sums(level uint8) []uint64 {
	out := make([]uint64, 1<<level)
	shift := leafBits - int(level)
	for leaf, s := range ix.leaves {
		out[leaf>>shift] += s
	}
	return out
}

func (ix *digestIndex) bucketKeys(level uint8, bucket uint32) []string {
	shift := leafBits - int(level)
	var out []string
	for leaf := int(bucket) << shift; leaf < int(bucket+1)<<shift; leaf++ {
		out = append(out, ix.leafKeys[leaf]...)
	}
	return out
}
