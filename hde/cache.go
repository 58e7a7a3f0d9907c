package hde

// pageCache is a bounded LRU of the last version of each page sent, keyed by
// page index. Encoder and decoder hold one each and apply exactly the same
// operations in the same order, so their contents, recency order and
// evictions stay identical without any message between them. The encoder
// also keeps a content-hash index over it to find duplicate pages.
//
// Slots and their page buffers are allocated on first use and recycled, so a
// warmed-up cache allocates nothing.
type pageCache struct {
	pageSize int
	capacity int
	slots    []cacheSlot
	data     [][]byte // data[slot]: pageSize bytes
	byIndex  map[uint64]int32
	byHash   map[uint64]int32 // encoder only; nil on the decoder
	head     int32            // most recent, -1 when empty
	tail     int32            // least recent
	free     []int32
}

type cacheSlot struct {
	index      uint64
	hash       uint64
	prev, next int32
}

// slabPages is how many page buffers are allocated at once as the cache
// fills, to avoid one allocation per page without reserving the whole
// capacity up front.
const slabPages = 64

func newPageCache(pageSize, capacity int, withHashIndex bool) *pageCache {
	c := &pageCache{pageSize: pageSize, capacity: capacity, byIndex: make(map[uint64]int32), head: -1, tail: -1}
	if withHashIndex {
		c.byHash = make(map[uint64]int32)
	}
	return c
}

// reset empties the cache, keeping its buffers.
func (c *pageCache) reset() {
	clear(c.byIndex)
	if c.byHash != nil {
		clear(c.byHash)
	}
	c.head, c.tail = -1, -1
	c.free = c.free[:0]
	for i := range c.slots {
		c.free = append(c.free, int32(i))
	}
}

// lookup returns the cached version of page index, without touching recency.
func (c *pageCache) lookup(index uint64) (slot int32, ok bool) {
	slot, ok = c.byIndex[index]
	return
}

func (c *pageCache) page(slot int32) []byte { return c.data[slot] }
func (c *pageCache) hash(slot int32) uint64 { return c.slots[slot].hash }

// findHash returns a slot whose content had hash h when stored.
func (c *pageCache) findHash(h uint64) (int32, bool) {
	s, ok := c.byHash[h]
	return s, ok
}

func (c *pageCache) unlink(s int32) {
	sl := &c.slots[s]
	if sl.prev >= 0 {
		c.slots[sl.prev].next = sl.next
	} else {
		c.head = sl.next
	}
	if sl.next >= 0 {
		c.slots[sl.next].prev = sl.prev
	} else {
		c.tail = sl.prev
	}
	sl.prev, sl.next = -1, -1
}

func (c *pageCache) pushFront(s int32) {
	sl := &c.slots[s]
	sl.prev, sl.next = -1, c.head
	if c.head >= 0 {
		c.slots[c.head].prev = s
	}
	c.head = s
	if c.tail < 0 {
		c.tail = s
	}
}

func (c *pageCache) dropHash(s int32) {
	if c.byHash == nil {
		return
	}
	if cur, ok := c.byHash[c.slots[s].hash]; ok && cur == s {
		delete(c.byHash, c.slots[s].hash)
	}
}

// remove forgets page index (it became a zero page).
func (c *pageCache) remove(index uint64) {
	s, ok := c.byIndex[index]
	if !ok {
		return
	}
	c.dropHash(s)
	c.unlink(s)
	delete(c.byIndex, index)
	c.free = append(c.free, s)
}

// store makes content (with hash h) the cached version of page index and the
// most recent entry, evicting the least recent entry when full. content may
// alias the page's own current buffer.
func (c *pageCache) store(index uint64, content []byte, h uint64) {
	if c.capacity == 0 {
		return
	}
	s, ok := c.byIndex[index]
	if ok {
		c.dropHash(s)
		c.unlink(s)
	} else {
		s = c.allocSlot()
		c.byIndex[index] = s
	}
	sl := &c.slots[s]
	sl.index, sl.hash = index, h
	if &c.data[s][0] != &content[0] {
		copy(c.data[s], content)
	}
	c.pushFront(s)
	if c.byHash != nil {
		c.byHash[h] = s
	}
}

func (c *pageCache) allocSlot() int32 {
	if n := len(c.free); n > 0 {
		s := c.free[n-1]
		c.free = c.free[:n-1]
		return s
	}
	if len(c.slots) < c.capacity {
		n := min(slabPages, c.capacity-len(c.slots))
		slab := make([]byte, n*c.pageSize)
		for i := 0; i < n; i++ {
			c.slots = append(c.slots, cacheSlot{prev: -1, next: -1})
			c.data = append(c.data, slab[i*c.pageSize:(i+1)*c.pageSize:(i+1)*c.pageSize])
			if i > 0 {
				c.free = append(c.free, int32(len(c.slots)-1))
			}
		}
		return int32(len(c.slots) - n)
	}
	// Full: evict the least recent entry.
	s := c.tail
	c.dropHash(s)
	c.unlink(s)
	delete(c.byIndex, c.slots[s].index)
	return s
}
