// Command amstperf measures AMST goodput between two hosts (or two network
// namespaces made by ../wanem.sh), like iperf3 does for plain TCP.
//
//	amstperf server -listen 10.201.0.2:7100 -duration 60s
//	amstperf client -connect 10.201.0.2:7100 -streams 0 -cc cubic -time 10s
//
// -streams 0 is adaptive AMST (mode-based start, hill climb); N > 0 fixes
// the count. The client prints one result line:
//
//	amstperf streams=adaptive cc=cubic seconds=10.0 mbit_per_s=123.4 final_streams=24 rtt_ms=51.2 mode=internet reconnects=0
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/dwcp/dwcp/amst"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: amstperf server|client [flags]")
		os.Exit(2)
	}
	fs := flag.NewFlagSet(os.Args[1], flag.ExitOnError)
	listen := fs.String("listen", "127.0.0.1:7100", "server: address to listen on")
	connect := fs.String("connect", "127.0.0.1:7100", "client: server address")
	streams := fs.Int("streams", 0, "client: stream count (0 = adaptive)")
	maxStreams := fs.Int("max-streams", 128, "client: upper bound of the adaptive count")
	cc := fs.String("cc", "", "TCP congestion control: bbr, cubic, reno (empty = system default)")
	dur := fs.Duration("time", 10*time.Second, "client: how long to send")
	life := fs.Duration("duration", 10*time.Minute, "server: stop after this long")
	window := fs.Int("window", 64<<20, "receive window in bytes (must exceed the bandwidth-delay product)")
	fs.Parse(os.Args[2:])

	cfg := amst.DefaultConfig()
	cfg.Congestion = *cc
	cfg.ReceiveWindow = *window
	cfg.Streams = *streams
	cfg.MaxStreams = *maxStreams
	ctx, cancel := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer cancel()
	var err error
	switch os.Args[1] {
	case "server":
		ctx, c := context.WithTimeout(ctx, *life)
		defer c()
		err = serve(ctx, *listen, cfg)
	case "client":
		err = send(ctx, *connect, cfg, *dur)
	default:
		err = fmt.Errorf("unknown mode %q", os.Args[1])
	}
	if err != nil && !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled) {
		log.Fatalf("amstperf: %v", err)
	}
}

func serve(ctx context.Context, addr string, cfg amst.Config) error {
	l, err := amst.Listen(ctx, addr, cfg, nil)
	if err != nil {
		return err
	}
	defer l.Close()
	log.Printf("amstperf: listening on %s", l.Addr())
	for {
		s, err := l.Accept(ctx)
		if err != nil {
			return err
		}
		go func() {
			start := time.Now()
			n, err := io.Copy(io.Discard, s)
			s.Close()
			log.Printf("amstperf: session %s: %d bytes in %v (%v)", s.ID(), n, time.Since(start).Round(time.Millisecond), err)
		}()
	}
}

func send(ctx context.Context, addr string, cfg amst.Config, dur time.Duration) error {
	s, err := amst.Dial(ctx, addr, cfg, nil)
	if err != nil {
		return err
	}
	buf := make([]byte, 4<<20)
	for i := range buf {
		buf[i] = byte(i * 7)
	}
	start := time.Now()
	stop := time.After(dur)
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	done := make(chan error, 1)
	go func() {
		for {
			if _, err := s.Write(buf); err != nil {
				done <- err
				return
			}
		}
	}()
	var final amst.Stats
loop:
	for {
		select {
		case <-tick.C:
			st := s.Stats()
			log.Printf("amstperf: t=%.0fs acked=%d MB goodput=%.1f Mbit/s streams=%d target=%d rtt=%v mode=%s",
				time.Since(start).Seconds(), st.BytesAcked>>20, st.Goodput*8/1e6, st.Streams, st.Target, st.RTT, st.Mode)
		case <-stop:
			final = s.Stats()
			break loop
		case err := <-done:
			return err
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	el := time.Since(start)
	go s.Close() // ends the writer; the server reports its own total
	label := "adaptive"
	if cfg.Streams > 0 {
		label = fmt.Sprint(cfg.Streams)
	}
	cc := cfg.Congestion
	if cc == "" {
		cc = "default"
	}
	fmt.Printf("amstperf streams=%s cc=%s seconds=%.1f mbit_per_s=%.1f final_streams=%d rtt_ms=%.1f mode=%s reconnects=%d hol_dups=%d\n",
		label, cc, el.Seconds(), float64(final.BytesAcked)*8/el.Seconds()/1e6, final.Streams,
		float64(final.RTT)/float64(time.Millisecond), final.Mode, final.Reconnects, final.HOLDuplicates)
	select {
	case <-done:
	case <-time.After(3 * time.Second):
	}
	return nil
}
