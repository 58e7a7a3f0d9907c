// Command wanem is a userspace WAN emulator: it links two network
// namespaces through a TUN device in each and forwards IP packets between
// them with a per-direction one-way delay, random loss and a rate limit.
// The kernel here has no netem (no module loading), so this replaces
//
//	tc qdisc add dev X root netem delay D loss L rate R
//
// on both ends. Each direction is a FIFO: a packet of size s that arrives
// at time now departs the bottleneck at
//
//	departure = max(now, previous departure) + s/rate
//
// and is delivered at departure + delay. Packets are dropped at random with
// probability loss, and tail-dropped when more than -queue bytes wait for
// the bottleneck (a router buffer). It only ever forwards between the two
// devices it opened, which wanem.sh creates in namespaces of its own.
//
// Usage (after `wanem.sh up`):
//
//	wanem -delay 25ms -loss 0.01 -rate 1e9 -duration 60s
//
// Measured ceiling on the 2-core development machine: see README.md.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"math/rand/v2"
	"os"
	"os/signal"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

type direction struct {
	name  string
	delay time.Duration
	loss  float64
	rate  float64 // bits per second; 0 = unlimited
	queue int     // bytes allowed to wait for the bottleneck

	in, out *os.File
	rng     *rand.Rand

	mu         sync.Mutex
	pending    []packet // FIFO from head: release times never decrease
	head       int
	lastDepart time.Time
	signal     chan struct{}
	bufs       sync.Pool

	forwarded, lost, tailDropped, bytes atomic.Uint64
}

type packet struct {
	data    []byte
	pooled  *[]byte
	depart  time.Time
	release time.Time
}

// packetBufSize covers an MTU-sized packet; larger ones are allocated.
const packetBufSize = 2048

func main() {
	nsA := flag.String("ns-a", "amstA", "namespace of the first TUN device")
	devA := flag.String("dev-a", "tunA", "first TUN device (in ns-a)")
	nsB := flag.String("ns-b", "amstB", "namespace of the second TUN device")
	devB := flag.String("dev-b", "tunB", "second TUN device (in ns-b)")
	delay := flag.Duration("delay", 0, "one-way delay, each direction (RTT = 2*delay)")
	loss := flag.Float64("loss", 0, "random loss probability per packet, each direction")
	rate := flag.Float64("rate", 0, "rate limit in bit/s, each direction (0 = none)")
	queue := flag.Int("queue", 0, "bottleneck buffer in bytes (0 = one BDP at -rate and 2*delay, at least 256 KiB)")
	seed := flag.Uint64("seed", 1, "random seed for loss")
	duration := flag.Duration("duration", 10*time.Minute, "stop after this long (bounded by design)")
	stats := flag.Duration("stats", 5*time.Second, "statistics period")
	flag.Parse()
	if *loss < 0 || *loss >= 1 || *rate < 0 || *delay < 0 || *duration <= 0 {
		log.Fatalf("wanem: invalid -loss %g, -rate %g, -delay %v or -duration %v", *loss, *rate, *delay, *duration)
	}
	if *queue == 0 {
		*queue = 256 << 10
		if *rate > 0 {
			*queue = max(*queue, int(*rate/8*(2*delay.Seconds())))
		}
	}
	fa, err := openTun(*nsA, *devA)
	if err != nil {
		log.Fatalf("wanem: %v", err)
	}
	fb, err := openTun(*nsB, *devB)
	if err != nil {
		log.Fatalf("wanem: %v", err)
	}
	ctx, cancel := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer cancel()
	ctx, cancelT := context.WithTimeout(ctx, *duration)
	defer cancelT()

	dirs := []*direction{
		{name: *devA + "->" + *devB, in: fa, out: fb},
		{name: *devB + "->" + *devA, in: fb, out: fa},
	}
	var wg sync.WaitGroup
	for i, d := range dirs {
		d.delay, d.loss, d.rate, d.queue = *delay, *loss, *rate, *queue
		d.rng = rand.New(rand.NewPCG(*seed, uint64(i)))
		d.signal = make(chan struct{}, 1)
		d.bufs.New = func() any { b := make([]byte, packetBufSize); return &b }
		wg.Add(2)
		go func() { defer wg.Done(); d.receive(ctx) }()
		go func() { defer wg.Done(); d.deliver(ctx) }()
	}
	log.Printf("wanem: %s <-> %s: delay %v, loss %g, rate %g bit/s, queue %d B, for %v",
		*devA, *devB, *delay, *loss, *rate, *queue, *duration)
	t := time.NewTicker(*stats)
	defer t.Stop()
	for done := false; !done; {
		select {
		case <-ctx.Done():
			done = true
		case <-t.C:
		}
		for _, d := range dirs {
			log.Printf("wanem: %s forwarded=%d bytes=%d lost=%d qdrop=%d", d.name,
				d.forwarded.Load(), d.bytes.Load(), d.lost.Load(), d.tailDropped.Load())
		}
	}
	fa.Close() // unblocks the readers
	fb.Close()
	wg.Wait()
}

// openTun opens an existing TUN device inside namespace ns. The setns runs
// on a locked OS thread that is thrown away afterwards (the goroutine ends
// without unlocking), so no other goroutine ever runs in that namespace.
// The opened descriptor stays bound to the device whatever thread uses it.
func openTun(ns, dev string) (*os.File, error) {
	type result struct {
		f   *os.File
		err error
	}
	ch := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		nsfd, err := unix.Open("/var/run/netns/"+ns, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			ch <- result{err: fmt.Errorf("open namespace %s: %w", ns, err)}
			return
		}
		defer unix.Close(nsfd)
		if err := unix.Setns(nsfd, unix.CLONE_NEWNET); err != nil {
			ch <- result{err: fmt.Errorf("setns %s: %w", ns, err)}
			return
		}
		fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
		if err != nil {
			ch <- result{err: fmt.Errorf("open /dev/net/tun: %w", err)}
			return
		}
		ifr, err := unix.NewIfreq(dev)
		if err != nil {
			unix.Close(fd)
			ch <- result{err: err}
			return
		}
		ifr.SetUint16(unix.IFF_TUN | unix.IFF_NO_PI)
		if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
			unix.Close(fd)
			ch <- result{err: fmt.Errorf("attach to %s in %s: %w", dev, ns, err)}
			return
		}
		ch <- result{f: os.NewFile(uintptr(fd), dev)}
	}()
	r := <-ch
	return r.f, r.err
}

// receive reads packets, applies loss and the bottleneck, and queues them.
func (d *direction) receive(ctx context.Context) {
	buf := make([]byte, 65536)
	for {
		n, err := d.in.Read(buf)
		if err != nil {
			if ctx.Err() == nil && !errors.Is(err, os.ErrClosed) {
				log.Printf("wanem: %s read: %v", d.name, err)
			}
			return
		}
		if d.loss > 0 && d.rng.Float64() < d.loss {
			d.lost.Add(1)
			continue
		}
		now := time.Now()
		d.mu.Lock()
		// Bytes waiting for the bottleneck: what it has not yet drained.
		queued := 0
		if d.rate > 0 && d.lastDepart.After(now) {
			queued = int(d.lastDepart.Sub(now).Seconds() * d.rate / 8)
		}
		if d.rate > 0 && queued+n > d.queue {
			d.mu.Unlock()
			d.tailDropped.Add(1)
			continue
		}
		depart := now
		if d.lastDepart.After(depart) {
			depart = d.lastDepart
		}
		if d.rate > 0 {
			depart = depart.Add(time.Duration(float64(n*8) / d.rate * float64(time.Second)))
		}
		d.lastDepart = depart
		p := packet{depart: depart, release: depart.Add(d.delay)}
		if n <= packetBufSize {
			b := d.bufs.Get().(*[]byte)
			p.data, p.pooled = (*b)[:n], b
		} else {
			p.data = make([]byte, n)
		}
		copy(p.data, buf[:n])
		d.pending = append(d.pending, p)
		d.mu.Unlock()
		select {
		case d.signal <- struct{}{}:
		default:
		}
	}
}

// deliver writes each packet at its release time; release times are
// non-decreasing, so the queue is FIFO.
func (d *direction) deliver(ctx context.Context) {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	var ready []packet
	for {
		d.mu.Lock()
		wait := time.Duration(-1)
		now := time.Now()
		ready = ready[:0]
		for d.head < len(d.pending) {
			p := d.pending[d.head]
			if p.release.After(now) {
				wait = p.release.Sub(now)
				break
			}
			ready = append(ready, p)
			d.pending[d.head] = packet{}
			d.head++
		}
		if d.head == len(d.pending) {
			d.pending, d.head = d.pending[:0], 0
		} else if d.head > 4096 && d.head > len(d.pending)/2 {
			n := copy(d.pending, d.pending[d.head:])
			d.pending, d.head = d.pending[:n], 0
		}
		d.mu.Unlock()
		for _, p := range ready {
			_, err := d.out.Write(p.data)
			if p.pooled != nil {
				d.bufs.Put(p.pooled)
			}
			if err != nil {
				if ctx.Err() != nil || errors.Is(err, os.ErrClosed) {
					return
				}
				continue // e.g. the peer device is down: the packet is lost
			}
			d.forwarded.Add(1)
			d.bytes.Add(uint64(len(p.data)))
		}
		if len(ready) > 0 {
			continue
		}
		if wait < 0 {
			wait = time.Hour
		}
		timer.Reset(wait)
		select {
		case <-ctx.Done():
			return
		case <-d.signal:
		case <-timer.C:
		}
	}
}
