package ass

import (
	"crypto/tls"
	"errors"
	"fmt"
	"time"
)

// Config configures a Replica. Start from DefaultConfig.
type Config struct {
	// NodeID names this replica; it must be unique in the cluster and stable
	// across restarts when DataDir is set.
	NodeID string
	// ListenAddr is the TCP address to listen on when Transport is nil.
	ListenAddr string
	// AdvertiseAddr is the address peers know this replica by (the string
	// they list in their Peers). Default: the transport's Addr, which for
	// TCP is the bound host:port - set it when listening on a wildcard
	// address such as ":7000".
	AdvertiseAddr string
	// Peers are the addresses of the other replicas: each peer's
	// AdvertiseAddr. This replica's own address may be listed; it is skipped.
	Peers []string
	// DataDir, when set, makes the replica durable: every change is in an
	// fsync'd log before it is acknowledged (to a local writer by Update
	// returning, to a peer by an ack), and the state is recovered on restart.
	// Empty means memory only: a restarted replica starts empty, under a new
	// actor id, and catches up from its peers.
	DataDir string
	// TLS, when set and Transport is nil, makes the TCP transport use TLS.
	TLS *tls.Config
	// Transport, when set, is used instead of a TCP transport on ListenAddr
	// (e.g. a MemEndpoint). The replica closes it on Close.
	Transport Transport

	// SyncInterval is the period of the replica's timer: retransmission
	// checks, digest scheduling, snapshots. Local writes are shipped at once,
	// not on this timer. Default 20 ms.
	SyncInterval time.Duration
	// RetransmitTimeout is how long a peer may leave sent deltas
	// unacknowledged before they are sent again. Default 500 ms.
	RetransmitTimeout time.Duration
	// DigestInterval is how often the replica runs a digest exchange with
	// one peer (round robin), which repairs whatever deltas could not.
	// Default 2 s.
	DigestInterval time.Duration
	// MaxBatchBytes caps the encoded deltas joined into one frame. Default 4 MiB.
	MaxBatchBytes int
	// MaxInflightBytes caps the unacknowledged delta bytes per peer. Default 32 MiB.
	MaxInflightBytes int
	// MaxBufferBytes caps the deltas kept for peers that have not
	// acknowledged them; beyond it the oldest are dropped and the peers that
	// missed them catch up by digest exchange. Default 64 MiB.
	MaxBufferBytes int
	// MaxFrameBytes is the largest frame accepted from a peer. Default 64 MiB.
	MaxFrameBytes int
	// SnapshotBytes is the log size that triggers a snapshot. Default 64 MiB.
	SnapshotBytes int64
	// OnRemoteChange, when set, is called with the keys changed by state
	// received from a peer, after the change is visible to readers. It runs
	// on a transport goroutine: keep it short and do not call Update from it.
	OnRemoteChange func(keys []string)
	// Now is the wall clock (for tests). Default time.Now.
	Now func() time.Time
}

// DefaultConfig returns a configuration with every default filled in.
func DefaultConfig(nodeID, listenAddr string) Config {
	return Config{
		NodeID:            nodeID,
		ListenAddr:        listenAddr,
		SyncInterval:      20 * time.Millisecond,
		RetransmitTimeout: 500 * time.Millisecond,
		DigestInterval:    2 * time.Second,
		MaxBatchBytes:     4 << 20,
		MaxInflightBytes:  32 << 20,
		MaxBufferBytes:    64 << 20,
		MaxFrameBytes:     64 << 20,
		SnapshotBytes:     64 << 20,
		Now:               time.Now,
	}
}

// withDefaults fills zero fields with the defaults.
func (c Config) withDefaults() Config {
	d := DefaultConfig(c.NodeID, c.ListenAddr)
	if c.SyncInterval == 0 {
		c.SyncInterval = d.SyncInterval
	}
	if c.RetransmitTimeout == 0 {
		c.RetransmitTimeout = d.RetransmitTimeout
	}
	if c.DigestInterval == 0 {
		c.DigestInterval = d.DigestInterval
	}
	if c.MaxBatchBytes == 0 {
		c.MaxBatchBytes = d.MaxBatchBytes
	}
	if c.MaxInflightBytes == 0 {
		c.MaxInflightBytes = d.MaxInflightBytes
	}
	if c.MaxBufferBytes == 0 {
		c.MaxBufferBytes = d.MaxBufferBytes
	}
	if c.MaxFrameBytes == 0 {
		c.MaxFrameBytes = d.MaxFrameBytes
	}
	if c.SnapshotBytes == 0 {
		c.SnapshotBytes = d.SnapshotBytes
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

// Validate reports the first invalid field; zero durations and sizes mean
// their defaults and are valid.
func (c Config) Validate() error {
	c = c.withDefaults()
	switch {
	case c.NodeID == "":
		return errors.New("ass: Config.NodeID is empty")
	case c.Transport == nil && c.ListenAddr == "":
		return errors.New("ass: Config.ListenAddr is empty and no Transport is set")
	case c.SyncInterval < 0:
		return fmt.Errorf("ass: Config.SyncInterval %v is negative", c.SyncInterval)
	case c.RetransmitTimeout < c.SyncInterval:
		return fmt.Errorf("ass: Config.RetransmitTimeout %v is shorter than SyncInterval %v", c.RetransmitTimeout, c.SyncInterval)
	case c.DigestInterval < 0:
		return fmt.Errorf("ass: Config.DigestInterval %v is negative", c.DigestInterval)
	case c.MaxFrameBytes < 1<<16:
		return fmt.Errorf("ass: Config.MaxFrameBytes %d is below 64 KiB", c.MaxFrameBytes)
	case c.MaxBatchBytes <= 0 || c.MaxBatchBytes > c.MaxFrameBytes/2:
		return fmt.Errorf("ass: Config.MaxBatchBytes %d must be in (0, MaxFrameBytes/2 = %d]", c.MaxBatchBytes, c.MaxFrameBytes/2)
	case c.MaxInflightBytes < c.MaxBatchBytes:
		return fmt.Errorf("ass: Config.MaxInflightBytes %d is below MaxBatchBytes %d", c.MaxInflightBytes, c.MaxBatchBytes)
	case c.MaxBufferBytes < c.MaxBatchBytes:
		return fmt.Errorf("ass: Config.MaxBufferBytes %d is below MaxBatchBytes %d", c.MaxBufferBytes, c.MaxBatchBytes)
	case c.SnapshotBytes < 0:
		return fmt.Errorf("ass: Config.SnapshotBytes %d is negative", c.SnapshotBytes)
	}
	seen := map[string]bool{}
	for _, p := range c.Peers {
		if p == "" {
			return errors.New("ass: Config.Peers holds an empty address")
		}
		if seen[p] {
			return fmt.Errorf("ass: Config.Peers lists %q twice", p)
		}
		seen[p] = true
	}
	return nil
}
