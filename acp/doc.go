// Package acp is DWCP's adaptive consensus: it decides, once and for all
// replicas, which host owns a VM during and after a live migration.
//
// # Why consensus
//
// During a migration two hosts hold a copy of the guest. The property that
// must never break is that exactly one of them runs it. acp keeps a
// replicated VM ownership registry (Registry): per VM an owner host, a
// migration state (idle, planned, precopy, switchover, committed, aborted)
// and a fencing epoch that rises by one on every handover. Handover is a
// single committed command, and a host may resume a guest only after
// ConfirmResume — an ordered command — accepted its (host, epoch). An old
// owner cut off by a partition keeps its old epoch, and every replica that
// has ordered the handover refuses it; it can never resume.
//
// # Two algorithms, one interface
//
// Consensus (Propose, Leader, Members, Algorithm, View, Close) has two
// implementations:
//
//   - Raft (RaftNode, RaftCluster): hashicorp/raft v1.7.2 with a BoltDB
//     log and stable store (raft-boltdb/v2, fsync per append), a file
//     snapshot store and the TCP transport. Crash faults only; a commit
//     costs about one RTT plus one fsync. Join, Remove, Snapshot; a restart
//     with the same data directory recovers from snapshot plus log.
//   - PBFT (PBFTNode, PBFTCluster; core in acp/internal/pbft): Castro and
//     Liskov's protocol written for this package. 3f+1 replicas tolerate f
//     Byzantine ones. Every message is ed25519-signed and verified;
//     requests are deduplicated by client id and timestamp; checkpoints
//     every K sequence numbers are garbage-collected once 2f+1 replicas sign
//     the same state digest, and a lagging replica fetches that state;
//     a silent or faulty primary is replaced by a view change; a client
//     accepts a result after f+1 matching replies; the primary batches
//     concurrent requests into one sequence number. Equivocation, bad
//     signatures and conflicting digests are counted and the offending
//     replica recorded (PBFTNode.Offenders).
//
// Select picks Raft when every member is in one trust domain and every RTT
// is below SelectorConfig.MaxRaftRTT (10 ms by default), PBFT otherwise;
// SelectorConfig.Force overrides it. New selects and starts an in-process
// cluster of one replica per member on loopback, which is what examples,
// single-host setups and the engine's tests use. A multi-host deployment
// runs one RaftNode (Bootstrap on one, Join the others) or one PBFTNode
// (SetPeer for each peer) per host.
//
// # Usage
//
//	c, err := acp.New(ctx, acp.DefaultConfig(members, dataDir), m)
//	reg := acp.NewOwnershipClient(c)
//	err = reg.PlanMigration(ctx, "vm-42", "host-a", "host-b")
//	epoch, err := reg.Handover(ctx, "vm-42", "host-a", "host-b")
//	err = reg.ConfirmResume(ctx, "vm-42", "host-b", epoch) // before running the guest
//
// Owner and CanResume read the local replica and may lag by the
// replication delay; ConfirmResume is the fencing decision.
//
// # Concurrency
//
// Every exported method of RaftNode, RaftCluster, PBFTNode, PBFTCluster and
// OwnershipClient is safe for concurrent use; blocking calls take a
// context first. Close is idempotent and waits for the goroutines it
// started. Registry itself is a plain deterministic state machine (no
// clock, no randomness, no I/O) and is not safe for concurrent use; the
// consensus layers serialise it, and View runs a reader under that lock.
// The PBFT core (acp/internal/pbft.Replica) is a pure state machine too:
// Step(msg) and Tick() return the messages to send, which is how the
// seeded randomized safety test drives it without goroutines.
//
// # Wire formats
//
// Commands and results: 'A','C'|'R', version, kind, u32 body length, body,
// CRC-32C. PBFT messages: 'P','B', version, type, u32 body length, body,
// ed25519 signature, CRC-32C; nested messages (requests, proofs) are
// complete frames; decoders bound every count by the bytes left and have
// fuzz targets.
//
// # Metrics
//
// With the *metrics.Metrics given to the constructors (nil creates an
// unregistered one): dwcp_v3_acp_consensus_latency_seconds{algorithm,
// cluster_size} and dwcp_v3_migration_latency_seconds{component="acp"} per
// commit; dwcp_v3_acp_quorum_size{algorithm} (n/2+1 for Raft, 2f+1 for
// PBFT); dwcp_v3_acp_leader_elections_total{algorithm} (Raft: elections won,
// from raft's observer; PBFT: view changes, counted by the new primary);
// dwcp_v3_acp_consensus_failures_total{algorithm} and
// dwcp_v3_errors_total{component="acp",error_type="consensus_failure"} per
// failed proposal; dwcp_v3_acp_byzantine_detections_total{detection_type}.
// A refused command (a stale epoch, say) is a committed result, not a
// consensus failure.
//
// # Limits
//
// PBFT replicas keep their state in memory: a restarted PBFT replica
// rejoins empty and recovers by state transfer from a stable checkpoint
// (which needs 2f+1 live replicas). A state transfer is one message, so the
// registry snapshot must fit PBFTConfig.MaxMessageBytes (4 MiB by default,
// about 40,000 VMs). The PBFT TCP transport does not encrypt; signatures
// give integrity and authenticity, not confidentiality. RaftNode does not
// forward proposals to the leader across hosts (ErrNotLeader names it);
// RaftCluster forwards in process.
package acp
