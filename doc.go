// Package dwcp is the DWCP v3 live-migration engine: it moves a running
// guest's memory from one host to another by pre-copy, wiring the six
// components (amst transport, hde page codec, pba bandwidth forecast, acp
// ownership, ass cluster state, itp placement) behind small interfaces, and
// records every migration metric of the dwcp_v3 catalogue.
//
// # Using it
//
//	cfg := dwcp.WithComponents(dwcp.Config{NodeID: "host-a", Metrics: m}, m)
//	e, err := dwcp.New(cfg)                   // a source
//	res, err := e.Migrate(ctx, dwcp.MigrationRequest{
//		VMID: "vm-7", Memory: guest, Destination: "10.0.0.2:7400", Version: dwcp.V3,
//	})
//
// and on the destination
//
//	cfg.Incoming = func(ctx context.Context, s dwcp.IncomingSpec) (dwcp.IncomingMemory, error) { ... }
//	l, _ := cfg.Transport.Listen(":7400")
//	e.Serve(ctx, l, func(r *dwcp.Result, err error) { ... })
//
// examples/migrate runs both in one process (make demo); Example shows the
// shortest complete program, over an in-memory pipe.
//
// # Guests
//
// The engine reads guests through GuestMemory (page size, page count, read a
// page, collect-and-reset the dirty set, pause, resume) and writes them on
// the destination through IncomingMemory; their doc comments state the
// contract an implementation must keep (above all: a write is visible before
// its page is reported dirty). SyntheticVM is an in-process guest with seeded
// content (zero, duplicate, text, structured and random pages) and a
// workload that dirties pages at a set rate in a hot-set, uniform or
// sequential pattern, throttled by auto-converge; FileMemory is a memory
// image in a file.
//
// # The protocol
//
// Round 1 sends every page, each later round the pages dirtied meanwhile;
// every page travels with its xxhash64. After each round the destination
// acknowledges what it applied and the source predicts how long the final
// copy of the current dirty set would take: v1 divides by the last round's
// delivered rate, v3 by pba's conservative forecast of the link (and by the
// CPU time per page, since encoding overlaps sending). When the prediction
// fits the downtime target (300 ms by default, as QEMU) the source pauses the
// guest and sends the rest. Like QEMU's expected downtime the prediction
// covers the transfer; the measured downtime also includes the two
// switchover round trips (verify, commit). When the guest dirties more than half of what a
// round sends, two rounds running, the engine throttles it in QEMU's steps
// (20%, then +10% up to 99%); if it still does not converge the migration
// fails with ErrNotConverged. At switchover the destination has checked every
// page against its hash as it arrived and compares the whole-memory hash
// (xxhash64 of all page hashes); only then does ownership move (acp: the
// fencing epoch rises and the destination confirms it before resuming) and
// the destination resume. Any failure before that point leaves the source
// running, unthrottled and owner, and the destination discards its copy.
// Messages are framed (magic, version, type, sequence, length, CRC-32C; see
// wire.go) and processed in sequence even if a multi-stream transport
// reorders them.
//
// v3 and v1 differ in the components and in parallelism: v3 uses amst with
// adaptive streams (the forecast sets a floor), hde's adaptive codec (zero,
// duplicate, delta pages, compression chosen for the link bandwidth), pba,
// and parallel codec lanes (pages split by 64-page chunk over up to 4
// encoder/decoder pairs, like QEMU's multifd); v1 uses one amst stream,
// hde's baseline (every page zstd-compressed, no dedup or delta), no
// prediction and one lane. Rollout picks v3 for a deterministic
// percentage of VMs (FNV-1a of the VM id); its kill switch forces v1.
//
// # Concurrency
//
// An Engine is safe for concurrent use and may run several migrations at
// once; Close stops its Serve loops and waits for them. A migration runs its
// state machine on the calling goroutine plus a sender and a receiver
// goroutine that end with it. Progress callbacks run on the migrating
// goroutine and must return quickly.
//
// # What is measured
//
// The engine records, into Config.Metrics: dwcp_v3_migrations_total{version,
// result}, dwcp_v3_migration_duration_seconds{scenario} (successes),
// dwcp_v3_migration_downtime_seconds{version}, dwcp_v3_migration_bytes_total
// {version,kind="logical"|"wire"}, dwcp_v3_active_migrations,
// dwcp_v3_errors_total{component="engine",error_type}, the rollout gauges and
// dwcp_v3_component_health{component="engine"}. The components given the
// same Metrics record their own latencies into
// dwcp_v3_migration_latency_seconds{component}. Wire bytes are the engine's
// frames (both directions), not TCP/TLS overhead.
package dwcp
