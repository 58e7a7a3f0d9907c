package pbft

import (
	"bytes"
	"errors"
	"testing"
)

func sampleMessages() []*Message {
	_, privs := testKeys(4)
	req := &Message{Type: MsgRequest, From: 1, Client: 1, Timestamp: 9, Op: []byte("op")}
	req.Sign(privs[1])
	pp := &Message{Type: MsgPrePrepare, From: 0, View: 0, Seq: 1, Digest: BatchDigest([]*Message{req})}
	pp.Sign(privs[0])
	pp.Batch = []*Message{req}
	var prepares []*Message
	for i := 1; i <= 2; i++ {
		p := &Message{Type: MsgPrepare, From: uint32(i), Seq: 1, Digest: pp.Digest, PrimarySig: pp.Sig}
		p.Sign(privs[i])
		prepares = append(prepares, p)
	}
	cp := &Message{Type: MsgCheckpoint, From: 2, Seq: 8, Digest: Digest{1}}
	cp.Sign(privs[2])
	vc := &Message{Type: MsgViewChange, From: 3, View: 1, Seq: 8, Checkpoints: []*Message{cp, cp, cp},
		Prepared: []Cert{{PrePrepare: pp, Prepares: prepares}}}
	vc.Sign(privs[3])
	nv := &Message{Type: MsgNewView, From: 1, View: 1, ViewChanges: []*Message{vc}, PrePrepares: []*Message{pp}}
	nv.Sign(privs[1])
	reply := &Message{Type: MsgReply, From: 2, Client: 1, Timestamp: 9, Result: []byte("res")}
	reply.Sign(privs[2])
	return []*Message{req, pp, prepares[0], cp, vc, nv, reply}
}

func TestMessageRoundTrip(t *testing.T) {
	pubs, _ := testKeys(4)
	for _, m := range sampleMessages() {
		b := m.Encode()
		got, err := Decode(b, DefaultMaxMessageBytes)
		if err != nil {
			t.Fatalf("%s: %v", m.Type, err)
		}
		if !bytes.Equal(got.Encode(), b) {
			t.Fatalf("%s does not round-trip", m.Type)
		}
		if !got.Verify(pubs[m.From]) {
			t.Fatalf("%s signature lost in transit", m.Type)
		}
		got.View++
		if got.Verify(pubs[m.From]) {
			t.Fatalf("%s signature survives a changed view", m.Type)
		}
	}
}

func TestDecodeRejects(t *testing.T) {
	good := sampleMessages()[4].Encode()
	flip := append([]byte(nil), good...)
	flip[20] ^= 1
	tests := []struct {
		name string
		in   []byte
		max  int
	}{
		{"empty", nil, DefaultMaxMessageBytes},
		{"short", good[:10], DefaultMaxMessageBytes},
		{"truncated", good[:len(good)-1], DefaultMaxMessageBytes},
		{"checksum", flip, DefaultMaxMessageBytes},
		{"version", append([]byte{'P', 'B', 2}, good[3:]...), DefaultMaxMessageBytes},
		{"too large", good, 100},
	}
	for _, tc := range tests {
		if _, err := Decode(tc.in, tc.max); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: err %v, want ErrMalformed", tc.name, err)
		}
	}
}

func FuzzDecode(f *testing.F) {
	for _, m := range sampleMessages() {
		f.Add(m.Encode())
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := Decode(b, 1<<16)
		if err != nil {
			return
		}
		if !bytes.Equal(m.Encode(), b) {
			t.Fatal("accepted frame does not re-encode identically")
		}
	})
}
