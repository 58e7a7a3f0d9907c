package dwcp

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"
)

func TestFrameRoundTrip(t *testing.T) {
	msgs := []struct {
		t msgType
		p []byte
	}{
		{msgHello, helloMsg{MigrationID: "m", VMID: "vm", SourceNode: "a", Version: V3, Codec: codecHDEAdaptive, PageSize: 4096, PageCount: 10, OwnerEpoch: 7, Lanes: 2}.append(nil)},
		{msgHelloAck, helloAckMsg{OK: true, DestNode: "b"}.append(nil)},
		{msgPages, append(appendPagesHeader(nil, 1, 0, []pageEntry{{Index: 3, Hash: 99}}), 1, 2, 3)},
		{msgRoundEnd, roundEndMsg{Round: 1, Pages: 1}.append(nil)},
		{msgRoundAck, roundAckMsg{Round: 1, Pages: 1, Missing: 9}.append(nil)},
		{msgSwitchover, switchoverMsg{Round: 2, MemoryHash: 5}.append(nil)},
		{msgVerified, verifiedMsg{OK: true, MemoryHash: 5}.append(nil)},
		{msgCommit, commitMsg{Epoch: 8}.append(nil)},
		{msgDone, doneMsg{OK: true}.append(nil)},
		{msgAbort, abortMsg{Reason: "because"}.append(nil)},
	}
	for i, m := range msgs {
		b := appendFrame(nil, m.t, uint64(i+1), m.p)
		f, err := parseFrame(b)
		if err != nil {
			t.Fatalf("%s: %v", m.t, err)
		}
		if f.typ != m.t || f.seq != uint64(i+1) || !bytes.Equal(f.payload, m.p) {
			t.Fatalf("%s: got %s seq %d", m.t, f.typ, f.seq)
		}
		if err := decodePayload(f, 10); err != nil {
			t.Fatalf("%s payload: %v", m.t, err)
		}
	}
}

func TestFrameRejects(t *testing.T) {
	good := appendFrame(nil, msgCommit, 1, commitMsg{Epoch: 1}.append(nil))
	flip := func(i int) []byte { b := bytes.Clone(good); b[i] ^= 0x40; return b }
	for _, tc := range []struct {
		name string
		b    []byte
	}{
		{"empty", nil},
		{"short", good[:10]},
		{"magic", flip(0)},
		{"version", flip(2)},
		{"type", func() []byte { b := bytes.Clone(good); b[3] = 200; return b }()},
		{"length", flip(12)},
		{"payload", flip(17)},
		{"trailer", flip(len(good) - 1)},
		{"extra byte", append(bytes.Clone(good), 0)},
		{"huge length", func() []byte { b := bytes.Clone(good); b[15] = 0xff; return b }()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := parseFrame(tc.b); !errors.Is(err, ErrProtocol) {
				t.Fatalf("want ErrProtocol, got %v", err)
			}
		})
	}
}

func TestDecodePagesRejects(t *testing.T) {
	for _, tc := range []struct {
		name string
		p    []byte
	}{
		{"empty", nil},
		{"no entries", appendPagesHeader(nil, 1, 0, nil)},
		{"wrong lane", appendPagesHeader(nil, 1, 1, []pageEntry{{Index: 3}})},
		{"lane out of range", appendPagesHeader(nil, 1, 2, []pageEntry{{Index: 3}})},
		{"index out of range", appendPagesHeader(nil, 1, 0, []pageEntry{{Index: 10}})},
		{"count beyond payload", []byte{1, 0, 0, 0, 0xff, 0xff, 0xff, 0xff}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := decodePages(tc.p, 10, 2, nil); !errors.Is(err, ErrProtocol) {
				t.Fatalf("want ErrProtocol, got %v", err)
			}
		})
	}
}

// decodePayload decodes a frame's payload as its type says.
func decodePayload(f frame, pageCount uint32) error {
	var err error
	switch f.typ {
	case msgHello:
		_, err = decodeHello(f.payload)
	case msgHelloAck:
		_, err = decodeHelloAck(f.payload)
	case msgPages:
		_, err = decodePages(f.payload, pageCount, 2, nil)
	case msgRoundEnd:
		_, err = decodeRoundEnd(f.payload)
	case msgRoundAck:
		_, err = decodeRoundAck(f.payload)
	case msgSwitchover:
		_, err = decodeSwitchover(f.payload)
	case msgVerified:
		_, err = decodeVerified(f.payload)
	case msgCommit:
		_, err = decodeCommit(f.payload)
	case msgDone:
		_, err = decodeDone(f.payload)
	case msgAbort:
		_, err = decodeAbort(f.payload)
	}
	return err
}

// FuzzFrame feeds arbitrary bytes to the frame and payload decoders: they
// must return an ErrProtocol error or a value that re-encodes to the same
// bytes, never panic.
func FuzzFrame(f *testing.F) {
	f.Add(appendFrame(nil, msgHello, 1, helloMsg{MigrationID: "m", VMID: "vm", SourceNode: "a", Version: V1, Codec: codecHDEBaseline, PageSize: 4096, PageCount: 1 << 20, Lanes: 1}.append(nil)))
	f.Add(appendFrame(nil, msgPages, 2, append(appendPagesHeader(nil, 3, 0, []pageEntry{{1, 2}, {3, 4}}), "frame"...)))
	f.Add(appendFrame(nil, msgVerified, 3, verifiedMsg{Reason: "whole-memory hash differs"}.append(nil)))
	f.Add(appendFrame(nil, msgAbort, 4, abortMsg{Reason: "x"}.append(nil)))
	f.Add([]byte("DW\x01\x03"))
	f.Fuzz(func(t *testing.T, b []byte) {
		fr, err := parseFrame(b)
		if err != nil {
			if !errors.Is(err, ErrProtocol) {
				t.Fatalf("parse error %v is not ErrProtocol", err)
			}
			return
		}
		if !bytes.Equal(appendFrame(nil, fr.typ, fr.seq, fr.payload), b) {
			t.Fatal("frame does not re-encode to its input")
		}
		if err := decodePayload(fr, 1<<20); err != nil && !errors.Is(err, ErrProtocol) {
			t.Fatalf("payload error %v is not ErrProtocol", err)
		}
	})
}

// FuzzPayloads decodes arbitrary payloads directly (past the checksum, which
// a fuzzer rarely gets right).
func FuzzPayloads(f *testing.F) {
	f.Add(uint8(msgHello), helloMsg{MigrationID: "m", VMID: "vm", Version: V3, PageSize: 4096, PageCount: 3, Lanes: 4}.append(nil))
	f.Add(uint8(msgPages), appendPagesHeader(nil, 1, 0, []pageEntry{{0, 1}}))
	f.Add(uint8(msgRoundAck), roundAckMsg{Round: 1}.append(nil))
	f.Fuzz(func(t *testing.T, typ uint8, p []byte) {
		fr := frame{typ: msgType(typ%uint8(msgAbort) + 1), seq: 1, payload: p}
		if err := decodePayload(fr, 1<<16); err != nil && !errors.Is(err, ErrProtocol) {
			t.Fatalf("payload error %v is not ErrProtocol", err)
		}
	})
}

// FuzzRawCodec checks the engine's raw page decoder on arbitrary frames.
func FuzzRawCodec(f *testing.F) {
	c := rawCodec{pageSize: 512}
	good, _ := c.EncodeBatch(nil, []Page{{Index: 1, Data: make([]byte, 512)}})
	f.Add(good)
	f.Add([]byte{1, 2, 3})
	f.Fuzz(func(t *testing.T, b []byte) {
		n := 0
		err := c.DecodeBatch(b, func(i int, d []byte) error {
			if len(d) != 512 {
				t.Fatalf("page of %d bytes", len(d))
			}
			n++
			return nil
		})
		if err == nil && n*516 != len(b) {
			t.Fatalf("decoded %d pages from %d bytes", n, len(b))
		}
	})
}

// FuzzReceive drives a destination engine with a valid hello followed by
// arbitrary messages (a type byte and a payload each): it must end with an
// error or a verified migration, never panic or hang.
func FuzzReceive(f *testing.F) {
	good := appendPagesHeader(nil, 1, 0, []pageEntry{{Index: 0, Hash: 0}})
	f.Add(append([]byte{byte(msgPages), byte(len(good))}, good...))
	f.Add([]byte{byte(msgRoundEnd), 12, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0})
	f.Add([]byte{byte(msgSwitchover), 12, 2, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8})
	f.Fuzz(func(t *testing.T, in []byte) {
		e, err := New(Config{NodeID: "dst", HandshakeTimeout: time.Second, ReplyTimeout: 200 * time.Millisecond,
			Incoming: func(ctx context.Context, spec IncomingSpec) (IncomingMemory, error) {
				return NewIncomingSyntheticVM(spec, SyntheticConfig{})
			}})
		if err != nil {
			t.Fatal(err)
		}
		defer e.Close()
		a, b := NewPipe(64)
		defer a.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		done := make(chan struct{})
		go func() {
			defer close(done)
			e.Receive(ctx, b)
		}()
		seq := uint64(1)
		hello := helloMsg{MigrationID: "m", VMID: "vm", SourceNode: "src", Version: V3, Codec: codecRaw, PageSize: 4096, PageCount: 128, Lanes: 2}
		a.SendMessage(ctx, appendFrame(nil, msgHello, seq, hello.append(nil)))
		go func() { // drain replies
			for {
				if _, err := a.ReceiveMessage(ctx); err != nil {
					return
				}
			}
		}()
		for len(in) >= 2 {
			typ, n := in[0], int(in[1])
			in = in[2:]
			n = min(n, len(in))
			seq++
			if a.SendMessage(ctx, appendFrame(nil, msgType(typ%uint8(msgAbort)+1), seq, in[:n])) != nil {
				break
			}
			in = in[n:]
		}
		a.Close()
		select {
		case <-done:
		case <-time.After(4 * time.Second):
			t.Fatal("destination hung")
		}
	})
}
