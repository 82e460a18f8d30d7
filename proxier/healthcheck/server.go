package healthcheck

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Server serves a handler on one address with kube-proxy's bind semantics: when the
// address cannot be bound (or serving fails) it logs and retries every RetryInterval,
// unless HardFail is set, in which case Start returns the error so the process exits.
// It is a controller-runtime Runnable that runs on every node.
type Server struct {
	// Name appears in logs and errors ("healthz", "metrics").
	Name string
	// Addr is host:port; port 0 picks a free port (see Addr after Listening).
	Addr    string
	Handler http.Handler
	// HardFail makes a bind or serve failure fatal (--bind-address-hard-fail).
	HardFail bool
	// RetryInterval is the wait between attempts; default 5s.
	RetryInterval time.Duration
	Logger        logr.Logger

	once      sync.Once
	bindOnce  sync.Once
	listening chan struct{}
	bound     string
}

// NeedLeaderElection tells controller-runtime to run the server on every replica.
func (s *Server) NeedLeaderElection() bool { return false }

func (s *Server) init() { s.once.Do(func() { s.listening = make(chan struct{}) }) }

// Listening is closed once the server has bound its address.
func (s *Server) Listening() <-chan struct{} {
	s.init()
	return s.listening
}

// BoundAddr returns the address actually bound; valid once Listening is closed.
func (s *Server) BoundAddr() string {
	<-s.Listening()
	return s.bound
}

// Start serves until ctx is cancelled, then shuts the server down gracefully. It
// returns an error only when HardFail is set and binding or serving failed.
func (s *Server) Start(ctx context.Context) error {
	s.init()
	retry := s.RetryInterval
	if retry <= 0 {
		retry = 5 * time.Second
	}
	for {
		err := s.serveOnce(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if err == nil {
			err = errors.New("server stopped unexpectedly")
		}
		err = fmt.Errorf("%s server on %s: %w", s.Name, s.Addr, err)
		if s.HardFail {
			return err
		}
		s.Logger.Error(err, "Serving failed; retrying", "retryIn", retry)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(retry):
		}
	}
}

func (s *Server) serveOnce(ctx context.Context) error {
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", s.Addr)
	if err != nil {
		return err
	}
	s.bindOnce.Do(func() {
		s.bound = ln.Addr().String()
		close(s.listening)
	})
	s.Logger.Info("Serving", "server", s.Name, "address", ln.Addr().String())
	srv := &http.Server{Handler: s.Handler, ReadHeaderTimeout: 10 * time.Second}
	served := make(chan struct{})
	shutdown := make(chan struct{})
	go func() {
		defer close(shutdown)
		select {
		case <-ctx.Done():
			sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_ = srv.Shutdown(sctx)
		case <-served:
			_ = srv.Close()
		}
	}()
	err = srv.Serve(ln)
	close(served)
	<-shutdown
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}

// MetricsMuxOptions configures NewMetricsMux.
type MetricsMuxOptions struct {
	// Gatherer provides /metrics; for kproxy, controller-runtime's metrics.Registry.
	Gatherer prometheus.Gatherer
	// ProxyMode is answered on /proxyMode ("iptables").
	ProxyMode string
	// Profiling adds Go's /debug/pprof handlers (--profiling).
	Profiling bool
}

// NewMetricsMux returns the handler kube-proxy serves on its metrics address:
// /metrics, a plain /healthz ("ok"), /proxyMode and, when enabled, /debug/pprof.
func NewMetricsMux(opts MetricsMuxOptions) *http.ServeMux {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(opts.Gatherer, promhttp.HandlerOpts{}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		_, _ = w.Write([]byte("ok"))
	})
	mux.HandleFunc("/proxyMode", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		_, _ = w.Write([]byte(opts.ProxyMode))
	})
	if opts.Profiling {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	return mux
}
