package ass

import (
	"bytes"
	"errors"
	"testing"
)

func sampleState() *ORMap {
	m := NewORMap()
	clock := NewClock("a", nil)
	m.Update("a", "reg", TypeLWWRegister, func(v CRDT) CRDT { return v.(*LWWRegister).Set(clock.Now(), []byte("x")) })
	m.Update("a", "cnt", TypePNCounter, func(v CRDT) CRDT { return v.(*PNCounter).Add("a", -3) })
	m.Update("b", "set", TypeORSet, func(v CRDT) CRDT { return v.(*ORSet).Add("b", "e1") })
	m.Update("b", "mv", TypeMVRegister, func(v CRDT) CRDT { return v.(*MVRegister).Set("b", []byte("y")) })
	m.Update("a", "map", TypeORMap, func(v CRDT) CRDT {
		d, _ := v.(*ORMap).Update("a", "g", TypeGCounter, func(g CRDT) CRDT { return g.(*GCounter).Inc("a", 7) })
		return d
	})
	m.Remove("set")
	return m
}

func sampleFrames() [][]byte {
	st := sampleState()
	base := message{node: "n1", addr: "127.0.0.1:1", incarnation: 42}
	msgs := []message{
		{kind: kindDelta, from: 3, to: 9, baseline: true, encoded: [][]byte{Marshal(st), Marshal(NewORMap())}},
		{kind: kindAck, ackInc: 7, to: 9},
		{kind: kindDigest, session: 5, level: 4, sums: make([]uint64, 16)},
		{kind: kindDigestKeys, session: 5, buckets: []uint32{1, 9}, hashes: []keyHash{{"a", 1}, {"b", 2}}},
		{kind: kindKeyStates, session: 5, want: []string{"x", "y"}, delta: st},
		{kind: kindKeyStates, session: 5, reply: true, delta: NewORMap()},
	}
	var out [][]byte
	for _, m := range msgs {
		m.node, m.addr, m.incarnation = base.node, base.addr, base.incarnation
		out = append(out, encodeFrame(&m))
	}
	return out
}

func TestFrameRoundTrip(t *testing.T) {
	for _, f := range sampleFrames() {
		m, err := decodeFrame(f, 1<<20)
		if err != nil {
			t.Fatalf("decode: %v", err)
		}
		if again := encodeFrame(m); !bytes.Equal(again, f) {
			t.Fatalf("%v frame does not round-trip", m.kind)
		}
	}
}

func TestFrameRejects(t *testing.T) {
	good := sampleFrames()[0]
	flip := func(i int) []byte { b := bytes.Clone(good); b[i] ^= 0x40; return b }
	tests := []struct {
		name  string
		frame []byte
		limit int
	}{
		{"empty", nil, 1 << 20},
		{"bad magic", flip(0), 1 << 20},
		{"bad version", flip(2), 1 << 20},
		{"bad kind", flip(3), 1 << 20},
		{"payload bit flip", flip(len(good) - 3), 1 << 20},
		{"truncated", good[:len(good)-1], 1 << 20},
		{"over limit", good, 16},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := decodeFrame(tt.frame, tt.limit); !errors.Is(err, ErrCorrupt) {
				t.Fatalf("got %v, want ErrCorrupt", err)
			}
		})
	}
}

// FuzzDecodeFrame checks that no input makes the frame decoder panic, hang
// or allocate beyond the input, and that whatever decodes re-encodes to a
// frame that decodes to the same message.
func FuzzDecodeFrame(f *testing.F) {
	for _, fr := range sampleFrames() {
		f.Add(fr)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := decodeFrame(b, 1<<20)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("error %v is not ErrCorrupt", err)
			}
			return
		}
		again := encodeFrame(m)
		m2, err := decodeFrame(again, 1<<22)
		if err != nil {
			t.Fatalf("re-encoded frame does not decode: %v", err)
		}
		if !bytes.Equal(encodeFrame(m2), again) {
			t.Fatal("re-encoding is not stable")
		}
	})
}

// FuzzUnmarshal does the same for CRDT states (the log and snapshot payload),
// and also merges what decodes, which must not panic.
func FuzzUnmarshal(f *testing.F) {
	st := sampleState()
	f.Add(Marshal(st))
	for _, k := range []string{"reg", "cnt", "mv", "map"} {
		v, _ := st.Get(k)
		f.Add(Marshal(v))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		v, err := Unmarshal(b)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("error %v is not ErrCorrupt", err)
			}
			return
		}
		enc := Marshal(v)
		v2, err := Unmarshal(enc)
		if err != nil || !bytes.Equal(Marshal(v2), enc) {
			t.Fatalf("decoded state does not round-trip: %v", err)
		}
		c := v.Clone()
		c.Merge(v2)
		if v.Type() == TypeORMap {
			s := sampleState()
			s.Merge(v)
		}
	})
}

// FuzzDecodeSnapshot covers the snapshot file header.
func FuzzDecodeSnapshot(f *testing.F) {
	dir := f.TempDir()
	s, _, err := openStore(dir)
	if err != nil {
		f.Fatal(err)
	}
	if err := s.writeSnapshot(3, Marshal(sampleState())); err != nil {
		f.Fatal(err)
	}
	s.close()
	b, err := readFileBytes(dir + "/" + snapshotName)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b)
	f.Fuzz(func(t *testing.T, b []byte) {
		if _, _, err := decodeSnapshot(b); err != nil && !errors.Is(err, ErrCorrupt) {
			t.Fatalf("error %v is not ErrCorrupt", err)
		}
	})
}
