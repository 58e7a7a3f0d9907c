package amst

import (
	"context"
	"io"
	"net"
	"syscall"
	"testing"
	"time"
)

// benchBytes is the payload of one benchmark operation.
const benchBytes = 64 << 20

// BenchmarkLoopback compares AMST over 1, 4, 8 and 16 loopback TCP streams
// with a plain TCP connection copying the same bytes, in the same run.
// Compare the MB/s columns: amst-N / plain-tcp is the ratio to quote.
func BenchmarkLoopback(b *testing.B) {
	src := randomBytes(benchBytes, 42)
	buf := make([]byte, 1<<20)
	b.Run("plain-tcp", func(b *testing.B) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		defer ln.Close()
		accepted := make(chan net.Conn, 1)
		go func() {
			c, err := ln.Accept()
			if err == nil {
				accepted <- c
			}
		}()
		client, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			b.Fatal(err)
		}
		defer client.Close()
		server := <-accepted
		defer server.Close()
		b.SetBytes(benchBytes)
		b.ReportAllocs()
		b.ResetTimer()
		cpu0 := cpuTime()
		for i := 0; i < b.N; i++ {
			done := make(chan error, 1)
			go func() {
				_, err := client.Write(src)
				done <- err
			}()
			if err := drain(server, buf); err != nil {
				b.Fatal(err)
			}
			if err := <-done; err != nil {
				b.Fatal(err)
			}
		}
		reportCPU(b, cpu0)
	})
	variants := []struct {
		name    string
		streams int
		unsent  int
	}{
		{"amst-1", 1, 0}, {"amst-4", 4, 0}, {"amst-8", 8, 0}, {"amst-16", 16, 0},
		// The same with TCP_NOTSENT_LOWAT forced on (automatic mode leaves
		// it off below 10 ms RTT), to show what it costs on a short path.
		{"amst-1-lowat", 1, benchFrame}, {"amst-8-lowat", 8, benchFrame},
	}
	for _, v := range variants {
		b.Run(v.name, func(b *testing.B) {
			cfg := DefaultConfig()
			cfg.Streams = v.streams
			cfg.FrameSize = benchFrame
			cfg.UnsentLimit = v.unsent
			client, server, _ := pair(b, cfg, nil)
			b.SetBytes(benchBytes)
			b.ReportAllocs()
			b.ResetTimer()
			cpu0 := cpuTime()
			defer reportCPU(b, cpu0)
			for i := 0; i < b.N; i++ {
				done := make(chan error, 1)
				go func() {
					_, err := client.Write(src)
					done <- err
				}()
				if err := drain(server, buf); err != nil {
					b.Fatal(err)
				}
				if err := <-done; err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkMessages measures 1 MiB messages over 4 loopback streams.
func BenchmarkMessages(b *testing.B) {
	const size = 1 << 20
	cfg := DefaultConfig()
	cfg.Streams = 4
	cfg.FrameSize = 1 << 20
	client, server, _ := pair(b, cfg, nil)
	msg := randomBytes(size, 1)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	b.SetBytes(size)
	b.ReportAllocs()
	b.ResetTimer()
	errc := make(chan error, 1)
	go func() {
		for i := 0; i < b.N; i++ {
			if err := client.SendMessage(ctx, msg); err != nil {
				errc <- err
				return
			}
		}
		errc <- nil
	}()
	for i := 0; i < b.N; i++ {
		if _, err := server.ReceiveMessage(ctx); err != nil {
			b.Fatal(err)
		}
	}
	if err := <-errc; err != nil {
		b.Fatal(err)
	}
}

// benchFrame is the frame size of the loopback benchmark.
const benchFrame = 256 << 10

// drain reads benchBytes from r through buf, the way an application with a
// 1 MiB buffer would (the same loop for plain TCP and AMST).
func drain(r io.Reader, buf []byte) error {
	left := benchBytes
	for left > 0 {
		n, err := r.Read(buf[:min(len(buf), left)])
		left -= n
		if err != nil {
			return err
		}
	}
	return nil
}

// cpuTime is the process's user+system CPU time: both ends run in this
// process, so CPU per byte compares the protocols independently of how
// busy the shared machine is.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func reportCPU(b *testing.B, start time.Duration) {
	b.ReportMetric(float64(cpuTime()-start)/float64(b.N)/(benchBytes/(1<<20)), "cpu-ns/MiB")
}
