// Package ass (Asynchronous State Synchronisation) replicates DWCP's cluster
// state - hosts, their capacity, load and health, and where each VM runs -
// across sites with delta-state CRDTs (Almeida, Shoker and Baquero, "Delta
// State Replicated Data Types", 2016). Every site reads and writes its own
// replica even while the WAN is partitioned; when it heals, the replicas
// converge to the same state without coordination.
//
// # Pieces
//
//   - CRDTs: GCounter, PNCounter, LWWRegister (hybrid logical clock
//     timestamps, actor id tie-break), MVRegister, ORSet (add-wins, dots with
//     a causal context) and ORMap (string keys to nested CRDTs, add-wins
//     against removes). Every mutator changes its receiver and returns a
//     delta; Merge is commutative, associative and idempotent. Marshal gives
//     a canonical encoding: equal states encode to equal bytes.
//   - Replica: one OR-Map of CRDTs kept in sync with its peers. Local
//     updates become deltas, shipped to every peer as joined delta intervals
//     and acknowledged; unacknowledged intervals are resent. A digest
//     exchange (bucket sums of per-key hashes, then the key hashes of the
//     buckets that differ, then the differing keys' states) repairs whatever
//     the delta path could not - a long partition, a restart, a peer
//     reachable only through others - with bytes that scale with the
//     difference, not the state.
//   - Transport: an interface, with MemNetwork (in memory, seeded drop,
//     duplicate, reorder and partitions, for tests) and TCPTransport
//     (loopback or real networks, optional TLS). Frames are versioned,
//     length-limited and CRC-32C checked; see wire.go.
//   - Durability (Config.DataDir): an fsync'd delta log plus snapshots
//     written with an atomic rename. A local Update returns, and a peer's
//     delta is acknowledged, only once it is in the log.
//   - ClusterState: typed hosts and VMs over a Replica, one OR-Map key per
//     object with a last-writer-wins register per field, and host usage as
//     PN-counters so that concurrent AddHostUsage calls at two sites add up.
//
// # Usage
//
//	cfg := ass.DefaultConfig("site-a", "10.0.0.1:7000")
//	cfg.Peers = []string{"10.0.0.2:7000", "10.0.0.3:7000"}
//	cfg.DataDir = "/var/lib/dwcp/ass"
//	r, err := ass.NewReplica(cfg, metrics.New(reg)) // reg: your prometheus.Registerer
//	if err != nil { ... }
//	if err := r.Start(ctx); err != nil { ... }
//	defer r.Close()
//	cs := ass.NewClusterState(r)
//	err = cs.SetHost(ctx, ass.Host{ID: "h1", Zone: "eu-1", Capacity: ass.Resources{CPUMillicores: 64000}})
//	hosts := cs.Hosts()
//
// Lower level, any CRDT under any key:
//
//	err = r.Update(ctx, "quota/alice", ass.TypePNCounter, func(w ass.Writer, v ass.CRDT) ass.CRDT {
//		return v.(*ass.PNCounter).Add(w.Node, -2)
//	})
//
// # Concurrency
//
// Replica and ClusterState are safe for concurrent use. The CRDT values
// themselves are not: a value obtained from Replica.Get is a private copy,
// and View's callback sees the replica's own state under its lock and must
// neither keep nor modify it. Close stops the replica and waits for its
// goroutines; it may be called more than once.
//
// # Semantics to know
//
// Removing an OR-Map key hides it, but its nested value is kept (that keeps
// merges a join); a key updated again resumes from that value, which is why
// ClusterState.SetHost and SetVM write every field. LWW registers order by
// hybrid logical clock; a local write is always ordered after the value it
// replaces, even when the local wall clock is behind. A memory-only replica
// (no DataDir) takes a fresh actor id on every start, so it never reuses
// dots it forgot.
//
// # Metrics
//
// dwcp_v3_ass_sync_bytes_total{direction}: every frame sent and received;
// dwcp_v3_ass_sync_latency_seconds and
// dwcp_v3_migration_latency_seconds{component="ass"}: from sending a delta
// interval to its acknowledgement, and from sending a digest to its answer;
// dwcp_v3_ass_state_size_bytes: the canonical encoding size of the state;
// dwcp_v3_ass_crdt_operations_total{crdt_type}: local updates, by the type
// of the key's top-level value; dwcp_v3_errors_total{component="ass",
// error_type="state_sync_error"}: undecodable frames, failed sends, log and
// fsync failures; dwcp_v3_component_health{component="ass"}: 1 running, 0.5
// when a peer has left deltas unacknowledged for ten retransmit timeouts,
// 0 when the log failed or the replica is closed.
package ass
