// Package amst is DWCP's adaptive multi-stream transport: one reliable,
// ordered session striped over N TCP connections, the way GridFTP, bbcp and
// QEMU multifd reach line rate on long, lossy paths where a single TCP
// connection is capped by its window and the Mathis bound
// (rate ~ MSS/(RTT*sqrt(loss))).
//
// # Usage
//
// The accepting side:
//
//	l, err := amst.Listen(ctx, "0.0.0.0:7100", amst.DefaultConfig(), m) // m may be nil
//	defer l.Close()
//	s, err := l.Accept(ctx)
//	msg, err := s.ReceiveMessage(ctx) // or io.Copy(dst, s) for the byte stream
//
// The dialling side:
//
//	cfg := amst.DefaultConfig() // Streams 0: adaptive; Streams: 1 is a single-stream baseline
//	s, err := amst.Dial(ctx, "dst:7100", cfg, m)
//	err = s.SendMessage(ctx, batch) // or s.Write / io.Copy(s, src)
//	s.SetTargetStreams(n)           // external hint, e.g. from a bandwidth forecast
//	err = s.Close()                 // waits until the peer acknowledged everything
//
// A Session carries both a byte stream (io.Reader, io.Writer, io.Closer,
// io.ReaderFrom, io.WriterTo) and framed messages. They share one ordered
// sequence: the reader must consume items in the order the peer sent them;
// Read returns ErrMessagePending at a message and ReceiveMessage returns
// ErrBytesPending at byte-stream data. After the peer's Close, Read and
// ReceiveMessage return io.EOF.
//
// # Protocol
//
// Every connection starts with a handshake (magic "AMST", protocol version,
// 128-bit session id, stream index, the frame size and receive window the
// sender accepts, CRC32C). The first connection creates the session, later
// ones join it; a version mismatch, an unknown session or garbage is refused
// (the dialler gets a RefusedError naming the reason; a stranger that does
// not even send the magic gets a closed connection and no answer).
//
// Data then flows as frames: type, flags, length, 64-bit sequence number
// and a CRC32C over header and payload (frame.go documents the layout).
// Each stream has a writer goroutine; all writers take frames from one
// queue, so a stream takes the next frame only when its socket has room
// (readiness-based striping; on paths of 10 ms RTT or more
// TCP_NOTSENT_LOWAT makes "has room" mean "has drained", see
// Config.UnsentLimit) and one slow stream does not hold the others. The
// receiver reassembles in sequence order into a ring of ReceiveWindow bytes
// and acknowledges what it received and what the application consumed; the
// sender never has more than the peer's window outstanding beyond what was
// consumed, so the receiver's memory is bounded whatever the sender does,
// and a slow reader slows the writer down (backpressure).
//
// Write and SendMessage of at least four frames send straight from the
// caller's buffer (no copy into frames). Like a TCP write, they return once
// every frame has been handed to a connection; the frames the peer has not
// yet acknowledged then get a private copy for retransmission (on paths
// under 1 ms RTT after waiting up to 2 ms for the acknowledgements), so the
// caller may reuse its buffer as io.Writer requires. Checksums are computed
// just before a frame is written (by the waiting sender for the next frames
// in the queue, or by the writer), while the payload is in the cache.
//
// A Read with a buffer of at least 32 KiB that finds nothing to read offers
// its buffer to the connections: the one that receives the next data frame
// reads it straight into that buffer and checks its checksum there, so it
// is not copied again. WriteTo (io.Copy) writes frame buffers to the
// destination without a copy.
//
// When a connection breaks, every unacknowledged frame last sent on it is
// queued again for the live streams and the dialling side redials the
// stream (with backoff, for up to ReconnectTimeout); the receiver drops
// duplicates by sequence number, so no byte is lost or doubled. A frame
// that waits much longer than its stream should need (a TCP retransmission
// timeout after a loss) is also duplicated on another stream, because every
// later frame waits for it at the receiver.
//
// # Adaptation
//
// With Config.Streams == 0 the session starts from a guess by network mode
// (the RTT of the first handshake: datacenter 4, hybrid 8, internet 16
// streams) and then hill-climbs on measured goodput averaged over
// TuneInterval: it adds half the current count while that gains at least
// TuneGain, steps back when it does not, and probes downwards in between.
// Each measurement takes two TuneInterval windows: a step up is kept only
// if both windows gain, a step down is undone only if both lose, so noisy
// WAN windows make the climb stay put rather than drift to more streams.
// An external hint (Config.Hinter, polled every MeasureInterval, or
// SetTargetStreams) moves the count at once and restarts the climb there.
// Only the dialling side owns connections; SetTargetStreams on an accepted
// session is forwarded to the dialler.
//
// Mode detection classifies each measurement (min RTT of recent pings and
// handshakes, goodput): datacenter when RTT < 10 ms and >= 1 Gbit/s,
// internet when RTT > 50 ms or < 1 Gbit/s, hybrid otherwise; a new mode must
// be seen HysteresisSamples times in a row before the session switches.
// Idle intervals are not classified (goodput says nothing then).
//
// Per socket: TCP congestion control (Config.Congestion: bbr, cubic, reno,
// via TCP_CONGESTION), SO_SNDBUF/SO_RCVBUF (Config.SocketBuffer; zero keeps
// kernel auto-tuning), TCP_NOTSENT_LOWAT (automatic by RTT), and an optional aggregate pacing
// rate for the whole session (Config.PacingRate).
//
// # Security
//
// With Config.TLS every connection runs TLS 1.3 (older versions are
// refused) with mutual authentication: Listen insists on
// tls.RequireAndVerifyClientCert, Dial on a client certificate. A peer
// without a trusted certificate never reaches the AMST handshake.
//
// # Transports and RDMA
//
// Connections come from a Transport: TCPTransport in production and
// MemTransport (net.Pipe, no kernel) for tests. An RDMA backend would
// implement Transport and return "rdma" from Name; SelectTransport uses it
// only when DetectRDMA finds a device under /sys/class/infiniband and falls
// back to TCP otherwise, saying why. This package ships no RDMA backend:
// the machines it was developed on have no RDMA hardware, so no RDMA path
// was ever run, and dwcp_v3_amst_rdma_utilization_percent stays 0.
//
// # Concurrency
//
// All methods of Session and Listener are safe for concurrent use.
// Concurrent writers are serialised (a message is never interleaved with
// another), and so are concurrent readers. Close is safe to call twice and
// waits for every goroutine of the session. Keep the Listener open while
// its sessions are in use: broken streams rejoin through it.
//
// # Metrics
//
// A session records into the *metrics.Metrics it is given (several
// sessions may share one):
//
//   - dwcp_v3_throughput_bytes_per_second{transport="tcp"} and
//     dwcp_v3_amst_throughput_gbps: goodput (payload bytes acknowledged by
//     the peer plus payload bytes received) over the last MeasureInterval,
//     summed over live sessions;
//   - dwcp_v3_amst_active_streams: live connections of all sessions;
//   - dwcp_v3_amst_stream_utilization_percent: percent of the streams' time
//     spent inside write calls over the last interval (of the session that
//     measured last);
//   - dwcp_v3_amst_bytes_total{direction}: payload bytes sent (first
//     transmission only) and received (duplicates excluded);
//   - dwcp_v3_amst_stream_reconnects_total: broken streams redialled;
//   - dwcp_v3_amst_mode{mode} and dwcp_v3_amst_mode_switches_total;
//   - dwcp_v3_errors_total{component="amst",error_type="network_timeout"}:
//     dial, handshake and stall timeouts;
//   - dwcp_v3_migration_latency_seconds{component="amst"}: one unit of work
//     is one message: the time from the SendMessage call until the peer has
//     acknowledged receiving its last fragment.
package amst
