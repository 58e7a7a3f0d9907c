// Package pbft is Practical Byzantine Fault Tolerance (Castro and Liskov,
// OSDI 1999) for acp: 3f+1 replicas order client requests despite f
// arbitrarily faulty ones.
//
// The core, Replica, is a pure state machine: Step(linkFrom, msg) and
// Tick() return an Output (messages to send, executions, Byzantine
// detections); it does no I/O and reads no clock. Node drives a Replica
// and a Client over a Transport (MemNetwork with seeded loss, delay,
// reordering and partitions for tests; TCPTransport for real sockets).
//
// Protocol: request -> pre-prepare (primary) -> prepare -> commit; a
// sequence number executes once prepared and 2f+1 commits agree, in
// order. The primary orders a batch of up to MaxBatch requests per
// sequence number and keeps Pipeline sequence numbers in flight, so a lone
// request goes out at once and concurrent ones share a round. Every message is ed25519-signed and verified (nested proofs too).
// A prepare carries the primary's signature of the pre-prepare it answers,
// so two prepares with valid primary signatures over different digests
// prove equivocation. Checkpoints every K sequence numbers become stable
// with 2f+1 matching signed digests; everything at or below is discarded
// and a replica behind a stable checkpoint fetches the state, checked
// against the digest. Backups that wait too long for a pending request
// start a view change (timeout doubling per failed attempt); the new
// primary proves its new-view with 2f+1 view-changes, and every replica
// recomputes the pre-prepares it must contain. Requests are deduplicated
// by (client, timestamp) with a per-client window that is part of the
// checkpointed state.
//
// Detections (DetectEquivocation, DetectBadSignature,
// DetectConflictingDigest) name the offender: the link a message arrived
// on when its claimed sender differs or its signature fails, the primary
// for equivocation or a pre-prepare whose digest does not match its
// request.
//
// Replica and Client are not safe for concurrent use; Node is.
package pbft
