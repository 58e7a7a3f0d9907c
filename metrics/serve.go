package metrics

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/common/expfmt"
)

// Server serves one Gatherer on /metrics over HTTP. Create it with Serve and
// stop it with Close.
type Server struct {
	addr   string
	srv    *http.Server
	done   chan struct{}
	err    error // set before done is closed
	once   sync.Once
	closed error
	// stopWatch cancels the ctx watcher, so no goroutine outlives Close.
	stopWatch func() bool
}

// shutdownGrace bounds how long Close waits for in-flight scrapes.
const shutdownGrace = 5 * time.Second

// Serve listens on addr (host:port; port 0 picks a free one) and serves g in
// the Prometheus exposition format on /metrics until ctx ends or Close is
// called. It returns once the listener is bound, so Addr is immediately
// scrapeable. Use a loopback address ("127.0.0.1:0") in tests and examples.
func Serve(ctx context.Context, addr string, g prometheus.Gatherer) (*Server, error) {
	if g == nil {
		return nil, errors.New("metrics: Serve: nil Gatherer")
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("metrics: listen on %q: %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(g, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError}))
	s := &Server{
		addr: ln.Addr().String(),
		srv:  &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second},
		done: make(chan struct{}),
	}
	go func() {
		defer close(s.done)
		if err := s.srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			s.err = err
		}
	}()
	s.stopWatch = context.AfterFunc(ctx, func() { _ = s.shutdown() })
	return s, nil
}

// Addr is the bound host:port, with the real port when Serve was given ":0".
func (s *Server) Addr() string { return s.addr }

// URL is the scrape URL, http://Addr()/metrics.
func (s *Server) URL() string { return "http://" + s.addr + "/metrics" }

// Close stops accepting scrapes, waits up to 5 s for in-flight ones, and
// waits for the serving goroutine. It is safe to call more than once; every
// call returns the same result.
func (s *Server) Close() error {
	s.stopWatch()
	return s.shutdown()
}

func (s *Server) shutdown() error {
	s.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
		defer cancel()
		err := s.srv.Shutdown(ctx)
		if err != nil {
			err = errors.Join(err, s.srv.Close())
		}
		<-s.done
		s.closed = errors.Join(err, s.err)
	})
	return s.closed
}

// WriteTextFile writes everything g gathers to path in the Prometheus text
// exposition format (what node_exporter's textfile collector and promtool
// read). It writes a temporary file in the same directory and renames it, so
// a reader never sees half a file.
func WriteTextFile(path string, g prometheus.Gatherer) error {
	families, err := g.Gather()
	if err != nil {
		return fmt.Errorf("metrics: gather: %w", err)
	}
	var buf bytes.Buffer
	enc := expfmt.NewEncoder(&buf, expfmt.NewFormat(expfmt.TypeTextPlain))
	for _, mf := range families {
		if err := enc.Encode(mf); err != nil {
			return fmt.Errorf("metrics: encode %s: %w", mf.GetName(), err)
		}
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("metrics: write %s: %w", path, err)
	}
	defer os.Remove(tmp.Name()) // no-op after the rename
	if _, err := tmp.Write(buf.Bytes()); err != nil {
		tmp.Close()
		return fmt.Errorf("metrics: write %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("metrics: write %s: %w", path, err)
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return fmt.Errorf("metrics: write %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("metrics: write %s: %w", path, err)
	}
	return nil
}
