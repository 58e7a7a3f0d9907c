package pbft

import (
	"bytes"
	"crypto/ed25519"
)

// Client is the client side of the protocol: it signs requests and accepts
// a result once f+1 replicas sent matching replies (at least one of them
// is correct). It does no I/O and is not safe for concurrent use.
type Client struct {
	id   uint32
	key  ed25519.PrivateKey
	keys []ed25519.PublicKey
	n, f int
	ts   uint64
	// replies[ts][replica] = result
	replies map[uint64]map[uint32][]byte
	view    uint64
}

// NewClient creates client id (its public key is keys[id]); n replicas.
// Timestamps start above firstTimestamp, which must exceed every timestamp
// this id used before (a wall-clock value in nanoseconds does).
func NewClient(id uint32, key ed25519.PrivateKey, keys []ed25519.PublicKey, n int, firstTimestamp uint64) *Client {
	return &Client{id: id, key: key, keys: keys, n: n, f: F(n), ts: firstTimestamp, replies: map[uint64]map[uint32][]byte{}}
}

// NewRequest signs a request for op and starts collecting its replies.
func (c *Client) NewRequest(op []byte) *Message {
	c.ts++
	m := &Message{Type: MsgRequest, From: c.id, Client: c.id, Timestamp: c.ts, Op: op}
	m.Sign(c.key)
	c.replies[c.ts] = map[uint32][]byte{}
	return m
}

// Forget stops collecting replies for ts (the caller gave up).
func (c *Client) Forget(ts uint64) { delete(c.replies, ts) }

// View returns the highest view seen in accepted replies.
func (c *Client) View() uint64 { return c.view }

// OnReply records a reply that arrived over the link from linkFrom. It
// returns the result once f+1 replicas agree on it.
func (c *Client) OnReply(linkFrom uint32, m *Message) (ts uint64, result []byte, done bool) {
	if m.Type != MsgReply || m.From != linkFrom || m.Client != c.id || int(m.From) >= c.n || !m.Verify(c.keys[m.From]) {
		return 0, nil, false
	}
	byRep, ok := c.replies[m.Timestamp]
	if !ok {
		return 0, nil, false
	}
	byRep[m.From] = m.Result
	matching := 0
	for _, r := range byRep {
		if bytes.Equal(r, m.Result) {
			matching++
		}
	}
	if matching < c.f+1 {
		return 0, nil, false
	}
	delete(c.replies, m.Timestamp)
	c.view = max(c.view, m.View)
	return m.Timestamp, m.Result, true
}
