package pbft

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"testing"
	"time"
)

// byzTransport rewrites what a faulty replica sends.
type byzTransport struct {
	Transport
	rewrite func(to uint32, m *Message) []*Message
}

func (b *byzTransport) Send(to uint32, frame []byte) {
	m, err := Decode(frame, DefaultMaxMessageBytes)
	if err != nil {
		return
	}
	for _, out := range b.rewrite(to, m) {
		b.Transport.Send(to, out.Encode())
	}
}

// silent sends nothing at all.
func silent(uint32, *Message) []*Message { return nil }

// forger corrupts signatures and impersonates replica 0 (signing as itself).
func forger(key ed25519.PrivateKey) func(uint32, *Message) []*Message {
	n := 0
	return func(to uint32, m *Message) []*Message {
		n++
		if m.Type == MsgReply {
			return []*Message{m}
		}
		if n%2 == 0 {
			m.Sig = append([]byte(nil), m.Sig...)
			m.Sig[0] ^= 0xff
			return []*Message{m}
		}
		imp := *m
		imp.From = 0
		imp.Sign(key)
		return []*Message{&imp}
	}
}

// equivocator, as primary, sends the replicas above 1 a pre-prepare for a
// request of its own in place of the client's, and replica 1 both.
func equivocator(key ed25519.PrivateKey, self uint32) func(uint32, *Message) []*Message {
	return func(to uint32, m *Message) []*Message {
		if m.Type != MsgPrePrepare || len(m.Batch) == 0 {
			return []*Message{m}
		}
		evilReq := &Message{Type: MsgRequest, From: self, Client: self, Timestamp: 1<<62 + m.Seq + m.View<<20,
			Op: []byte(fmt.Sprintf("evil-%d-%d", m.View, m.Seq))}
		evilReq.Sign(key)
		batch := []*Message{evilReq}
		evil := &Message{Type: MsgPrePrepare, From: self, View: m.View, Seq: m.Seq, Digest: BatchDigest(batch)}
		evil.Sign(key)
		evil.Batch = batch
		switch {
		case to == 1:
			return []*Message{m, evil}
		case to > 1:
			return []*Message{evil}
		}
		return []*Message{m}
	}
}

func TestByzantineReplica(t *testing.T) {
	tests := []struct {
		n      int
		mode   string
		faulty uint32
		detect string // a detection the correct replicas must make ("" = none)
	}{
		{4, "silent", 3, ""},
		{4, "forging", 2, DetectBadSignature},
		{4, "equivocating", 0, DetectEquivocation},
		{7, "silent", 6, ""},
		{7, "forging", 3, DetectBadSignature},
		{7, "equivocating", 0, DetectEquivocation},
	}
	for _, tc := range tests {
		for _, network := range []string{"mem", "tcp"} {
			t.Run(fmt.Sprintf("n=%d/%s/%s", tc.n, tc.mode, network), func(t *testing.T) {
				ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
				defer cancel()
				_, privs := testKeys(tc.n)
				c := newTestClusterOn(t, tc.n, 7, network == "tcp", func(id uint32, tr Transport) Transport {
					if id != tc.faulty {
						return tr
					}
					switch tc.mode {
					case "silent":
						return &byzTransport{tr, silent}
					case "forging":
						return &byzTransport{tr, forger(privs[id])}
					default:
						return &byzTransport{tr, equivocator(privs[id], id)}
					}
				})
				client := 1
				c.propose(ctx, client, 12, "op")
				var correct []int
				for i := 0; i < tc.n; i++ {
					if uint32(i) != tc.faulty {
						correct = append(correct, i)
					}
				}
				c.checkAgreement(ctx, correct, 12)
				if tc.detect == "" {
					return
				}
				if c.detections(tc.detect) == 0 {
					t.Fatalf("no %s detection", tc.detect)
				}
				// Every detection made by a correct replica names the faulty one.
				for _, i := range correct {
					for offender, kinds := range c.nodes[i].Offenders() {
						if offender != tc.faulty {
							t.Errorf("replica %d blamed correct replica %d: %v", i, offender, kinds)
						}
					}
				}
				if tc.mode == "equivocating" {
					if st := c.nodes[client].Status(); st.View == 0 {
						t.Errorf("equivocating primary still primary: %+v", st)
					}
				}
			})
		}
	}
}

func TestCrashedPrimaryViewChange(t *testing.T) {
	for _, n := range []int{4, 7} {
		t.Run(fmt.Sprintf("n=%d/tcp", n), func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
			defer cancel()
			c := newTestClusterOn(t, n, 3, true, nil)
			c.propose(ctx, 1, 5, "before")
			if err := c.nodes[0].Close(); err != nil {
				t.Fatal(err)
			}
			c.propose(ctx, 1, 10, "after")
			var correct []int
			for i := 1; i < n; i++ {
				correct = append(correct, i)
			}
			c.checkAgreement(ctx, correct, 15)
			st := c.nodes[1].Status()
			if st.View == 0 || st.Primary == 0 {
				t.Fatalf("no view change: %+v", st)
			}
			c.mu.Lock()
			views := c.views
			c.mu.Unlock()
			if views == 0 {
				t.Fatal("no new view counted")
			}
		})
	}
}

func TestLaggingReplicaCatchesUpByStateTransfer(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	c := newTestCluster(t, 4, 5, nil)
	c.net.Partition([]uint32{0, 1, 2}, []uint32{3})
	c.propose(ctx, 1, 50, "while-cut") // several checkpoints: replica 3's gap is collected
	if st := c.nodes[0].Status(); st.Stable < 40 {
		t.Fatalf("stable checkpoint %d, want >= 40", st.Stable)
	}
	c.net.Heal()
	c.propose(ctx, 1, 5, "after")
	c.checkAgreement(ctx, []int{0, 1, 2, 3}, 55)
	for c.nodes[3].Status().LastExecuted < 48 {
		select {
		case <-ctx.Done():
			t.Fatalf("replica 3 did not catch up: %+v", c.nodes[3].Status())
		case <-time.After(10 * time.Millisecond):
		}
	}
}

func TestLossReorderProgress(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	c := newTestCluster(t, 4, 11, nil)
	c.net.SetLoss(0.05)
	c.net.SetDelay(0, 3*time.Millisecond)
	c.propose(ctx, 2, 20, "lossy")
	c.net.SetLoss(0)
	c.checkAgreement(ctx, []int{0, 1, 2, 3}, 20)
}
