// Package webhook is the mutating admission webhook server: the chi router,
// AdmissionReview I/O, request limits, reloading TLS and injector config,
// readiness, graceful shutdown and the webhook's own metrics. The decision
// itself is the pure engine's (pkg/inject); this package decides only what
// happens before it (malformed requests, non-pod kinds, subresources,
// non-CREATE operations) and how the answer looks.
package webhook

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/net/netutil"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sidecar-injector/sidecar-injector/internal/version"
	"github.com/sidecar-injector/sidecar-injector/pkg/inject"
	"github.com/sidecar-injector/sidecar-injector/pkg/webhook/internal/filewatch"
)

// Deps are what the server is given rather than makes.
type Deps struct {
	// Log receives one line per decision and the server's events.
	Log *slog.Logger
	// Metrics are registered on the process's registry (NewMetrics).
	Metrics *Metrics
	// Gatherer is the same registry, served on /metrics.
	Gatherer prometheus.Gatherer
	// NativeSidecarSupported is what the cluster version says (1.29+), nil
	// when unknown (no cluster config): passed to the engine as is.
	NativeSidecarSupported *bool
	// Namespaces adds what the cluster side knows about a pod's namespace
	// (envoy-config missing or not ours, a Pod Security level that refuses
	// iptables-init) to the warnings of injected pods. Optional; it must
	// answer from caches: it sits on the hot path.
	Namespaces NamespaceWarner
	// Skips is told about pods left without a sidecar (Kubernetes Events).
	// Optional; `sidecar-injector webhook` sets none: it holds no write
	// access, and the controller records what it observes instead.
	Skips SkipNotifier
	// Labels gives a namespace's sidecar-injection label from a cache, for
	// the warning of /invalid-namespace-label. Optional.
	Labels NamespaceLabeler
}

// NamespaceLabeler answers, from a cache, a namespace's sidecar-injection
// label value and whether it has one.
type NamespaceLabeler interface {
	NamespaceLabel(namespace string) (value string, ok bool)
}

// NamespaceWarner answers, from caches, the warnings that hold for every
// pod injected into a namespace. The returned slice is shared: read only.
type NamespaceWarner interface {
	Warnings(namespace string) []string
}

// SkipNotifier hears of every skipped pod; it decides which deserve an
// Event and rate-limits them. Calls must not block.
type SkipNotifier interface {
	Skipped(Skip)
}

// Skip is a pod the webhook let through without a sidecar.
type Skip struct {
	Namespace string
	Pod       string // name, else generateName
	Owner     *metav1.OwnerReference
	Reason    inject.Reason
	Message   string
	DryRun    bool // no side effects: no Event
}

// Server is the admission webhook.
type Server struct {
	cfg      Config
	log      *slog.Logger
	metrics  *Metrics
	gatherer prometheus.Gatherer
	certs    *certSource
	config   *configSource
	native   *bool
	version  string
	nsWarn   NamespaceWarner
	skips    SkipNotifier
	labels   NamespaceLabeler

	sem        chan struct{}
	explainSem chan struct{}
	// bodyBytes are the body bytes reserved by requests now, at most
	// bodyBudget (Config.Budget).
	bodyBytes    atomic.Int64
	bodyBudget   int64
	reading      atomic.Int64 // requests reading their bodies
	shuttingDown atomic.Bool
	bufs         sync.Pool // request bodies (*[]byte)
	outBufs      sync.Pool // answers (*bytes.Buffer)

	// inject is the engine ((*inject.Injector).Inject); tests replace it to
	// provoke panics.
	inject func(*inject.Injector, *corev1.Pod, inject.Overrides) (inject.Result, error)
	now    func() time.Time
}

// New validates cfg, loads the injector config (an invalid one is an error:
// fix the file) and tries the TLS pair (a missing or invalid pair is logged;
// /readyz stays 503 until a valid one appears).
func New(cfg Config, d Deps) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if d.Log == nil || d.Metrics == nil || d.Gatherer == nil {
		return nil, errors.New("webhook.New: Log, Metrics and Gatherer are required")
	}
	s := &Server{
		cfg:        cfg,
		log:        d.Log,
		metrics:    d.Metrics,
		gatherer:   d.Gatherer,
		certs:      newCertSource(cfg.TLSCertFile, cfg.TLSKeyFile, d.Log, d.Metrics),
		config:     newConfigSource(cfg.ConfigFile, d.Log, d.Metrics),
		native:     d.NativeSidecarSupported,
		nsWarn:     d.Namespaces,
		skips:      d.Skips,
		labels:     d.Labels,
		version:    version.Get(),
		sem:        make(chan struct{}, cfg.MaxInFlight),
		explainSem: make(chan struct{}, maxExplainInFlight),
		bodyBudget: cfg.Budget().BodyBytes,
		inject:     (*inject.Injector).Inject,
		now:        time.Now,
	}
	s.bufs.New = func() any { b := make([]byte, 0, 16<<10); return &b }
	s.outBufs.New = func() any { return bytes.NewBuffer(make([]byte, 0, 16<<10)) }
	if d.NativeSidecarSupported == nil || *d.NativeSidecarSupported {
		s.metrics.nativeSidecar.Set(1)
	}
	if _, err := s.config.reload(); err != nil {
		return nil, err
	}
	_, _ = s.certs.reload() // logged and counted inside
	s.updateReady()
	return s, nil
}

// Ready says whether /readyz answers 200: certificate and config loaded and
// not shutting down.
func (s *Server) Ready() bool {
	return s.certs.loaded() && s.config.get() != nil && !s.shuttingDown.Load()
}

func (s *Server) updateReady() {
	if s.Ready() {
		s.metrics.ready.Set(1)
	} else {
		s.metrics.ready.Set(0)
	}
}

// TLSConfig is the TLS port's configuration: TLS 1.2+ (1.3 with
// --tls-min-version=1.3), ECDHE with AEAD ciphers only for 1.2, and the
// reloading certificate.
func (s *Server) TLSConfig() *tls.Config {
	minVersion := uint16(tls.VersionTLS12)
	if s.cfg.TLSMinVersion == TLSVersion13 {
		minVersion = tls.VersionTLS13
	}
	return &tls.Config{
		MinVersion: minVersion,
		CipherSuites: []uint16{ // TLS 1.2 only; 1.3 suites are all AEAD and not configurable
			tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
			tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
			tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
			tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
			tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
			tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
		},
		GetCertificate: s.certs.GetCertificate,
	}
}

// Handler is the TLS port's router: POST /mutate, /audit,
// /invalid-namespace-label and /explain.
func (s *Server) Handler() http.Handler {
	r := chi.NewRouter()
	r.Use(s.recoverer)
	r.NotFound(func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusNotFound, httpErrorBody(http.StatusNotFound, "no such path "+quote(r.URL.Path)+" on the webhook port: POST /mutate, /audit, /invalid-namespace-label or /explain"))
	})
	r.MethodNotAllowed(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Allow", http.MethodPost)
		writeJSON(w, http.StatusMethodNotAllowed, httpErrorBody(http.StatusMethodNotAllowed, r.Method+" "+quote(r.URL.Path)+": want POST"))
	})
	// Each request takes its in-flight slot once its body is read (see
	// serveReview and serveWorkload): a client that sends headers and no
	// body, or trickles it, holds no slot.
	r.Post("/mutate", func(w http.ResponseWriter, r *http.Request) { s.serveReview(w, r, modeMutate) })
	r.Post("/audit", func(w http.ResponseWriter, r *http.Request) { s.serveReview(w, r, modeAudit) })
	r.Post("/invalid-namespace-label", func(w http.ResponseWriter, r *http.Request) { s.serveReview(w, r, modeInvalidLabel) })
	r.Post("/explain", s.serveExplain)
	r.Post(PathWorkload, func(w http.ResponseWriter, r *http.Request) { s.serveWorkload(w, r, false) })
	r.Post(PathWorkloadAudit, func(w http.ResponseWriter, r *http.Request) { s.serveWorkload(w, r, true) })
	return r
}

// HealthHandler is the plain-HTTP port's router: /healthz, /readyz, /metrics
// (and /debug/pprof/ with --enable-pprof).
func (s *Server) HealthHandler() http.Handler {
	r := chi.NewRouter()
	r.Use(s.recoverer)
	r.Get("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok\n"))
	})
	r.Get("/readyz", s.serveReadyz)
	r.Method(http.MethodGet, "/metrics", promhttp.HandlerFor(s.gatherer, promhttp.HandlerOpts{
		ErrorLog:      slog.NewLogLogger(s.log.Handler(), slog.LevelError),
		ErrorHandling: promhttp.ContinueOnError,
	}))
	if s.cfg.EnablePprof {
		r.HandleFunc("/debug/pprof/", pprof.Index)
		r.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		r.HandleFunc("/debug/pprof/profile", pprof.Profile)
		r.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		r.HandleFunc("/debug/pprof/trace", pprof.Trace)
		r.Handle("/debug/pprof/{name}", http.HandlerFunc(pprof.Index))
	}
	return r
}

func (s *Server) serveReadyz(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	var why string
	switch {
	case s.shuttingDown.Load():
		why = "shutting down"
	case !s.certs.loaded():
		why = "no serving certificate loaded yet (see the log for why)"
	case s.config.get() == nil:
		why = "no injector config loaded yet"
	}
	if why != "" {
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = w.Write([]byte("not ready: " + why + "\n"))
		return
	}
	_, _ = w.Write([]byte("ok\n"))
}

// acquireSlot takes an in-flight slot, or answers 429 at once above
// MaxInFlight concurrent requests. It is called once the body is read.
func (s *Server) acquireSlot(w http.ResponseWriter) (release func(), ok bool) {
	select {
	case s.sem <- struct{}{}:
	default:
		s.tooMany(w, fmt.Sprintf("more than %d admission requests in flight; retry (or raise --max-in-flight / add replicas)", s.cfg.MaxInFlight))
		return nil, false
	}
	s.metrics.inFlight.Inc()
	return func() {
		s.metrics.inFlight.Dec()
		<-s.sem
	}, true
}

// tooMany answers 429, counted as overloaded.
func (s *Server) tooMany(w http.ResponseWriter, msg string) {
	w.Header().Set("Retry-After", "1")
	writeJSON(w, http.StatusTooManyRequests, httpErrorBody(http.StatusTooManyRequests, msg))
	s.metrics.observe(ResultError, ReasonOverloaded, 0)
}

// recoverer turns a panic outside a review (the review handler recovers its
// own, to answer with the uid) into a 500 and keeps serving.
func (s *Server) recoverer(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			p := recover()
			if p == nil {
				return
			}
			if p == http.ErrAbortHandler {
				panic(p)
			}
			s.metrics.panics.Inc()
			s.log.Error("panic while serving; answered 500", "path", r.URL.Path, "panic", fmt.Sprint(p))
			writeJSON(w, http.StatusInternalServerError, httpErrorBody(http.StatusInternalServerError, "internal error (recovered panic); see the webhook log"))
		}()
		next.ServeHTTP(w, r)
	})
}

// httpServers builds the TLS and the health http.Server.
func (s *Server) httpServers() (tlsSrv, healthSrv *http.Server) {
	errLog := slog.NewLogLogger(s.log.Handler(), slog.LevelWarn)
	protos := new(http.Protocols)
	protos.SetHTTP1(true)
	protos.SetHTTP2(s.cfg.HTTP2)
	tlsSrv = &http.Server{
		Handler:           s.Handler(),
		TLSConfig:         s.TLSConfig(),
		Protocols:         protos,
		ReadHeaderTimeout: s.cfg.ReadHeaderTimeout,
		ReadTimeout:       s.cfg.ReadTimeout,
		WriteTimeout:      s.cfg.WriteTimeout,
		IdleTimeout:       s.cfg.IdleTimeout,
		MaxHeaderBytes:    s.cfg.MaxHeaderBytes,
		ErrorLog:          errLog,
		HTTP2: &http.HTTP2Config{
			MaxConcurrentStreams: s.cfg.MaxConcurrentStreams,
			// Flow-control windows: what a connection may push before the
			// handlers read it (they read at once; this bounds the rest).
			MaxReceiveBufferPerConnection: 256 << 10,
			MaxReceiveBufferPerStream:     256 << 10,
		},
	}
	healthSrv = &http.Server{
		Handler:           s.HealthHandler(),
		ReadHeaderTimeout: s.cfg.ReadHeaderTimeout,
		ReadTimeout:       s.cfg.ReadTimeout,
		WriteTimeout:      max(s.cfg.WriteTimeout, 60*time.Second), // pprof profiles take 30 s
		IdleTimeout:       s.cfg.IdleTimeout,
		MaxHeaderBytes:    s.cfg.MaxHeaderBytes,
		ErrorLog:          errLog,
	}
	return tlsSrv, healthSrv
}

// Run listens on the configured addresses and serves until ctx is done,
// then shuts down gracefully (see Serve).
func (s *Server) Run(ctx context.Context) error {
	var lc net.ListenConfig
	tlsLn, err := lc.Listen(ctx, "tcp", s.cfg.ListenAddress)
	if err != nil {
		return fmt.Errorf("listen on --listen-address %s: %w", s.cfg.ListenAddress, err)
	}
	healthLn, err := lc.Listen(ctx, "tcp", s.cfg.HealthAddress)
	if err != nil {
		tlsLn.Close()
		return fmt.Errorf("listen on --health-address %s: %w", s.cfg.HealthAddress, err)
	}
	return s.Serve(ctx, tlsLn, healthLn)
}

// Serve serves the webhook (TLS) on tlsLn and health and metrics on
// healthLn, and watches the certificate and config files. When ctx is done:
// readiness goes false, the server keeps serving for DrainDelay (endpoint
// removal), then stops accepting and waits up to ShutdownGrace for requests
// in flight. It closes both listeners.
func (s *Server) Serve(ctx context.Context, tlsLn, healthLn net.Listener) error {
	tlsSrv, healthSrv := s.httpServers()
	// At MaxConnections open, Accept waits: further connections stay in
	// the kernel's queue, costing this process nothing.
	tlsLn = netutil.LimitListener(tlsLn, s.cfg.MaxConnections)

	watchCtx, stopWatch := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		err := filewatch.Watch(watchCtx, filewatch.Options{
			Files: []string{s.cfg.TLSCertFile, s.cfg.TLSKeyFile}, Interval: s.cfg.ReloadInterval,
			Debounce: s.cfg.ReloadDebounce, Log: s.log,
		}, func() {
			_, _ = s.certs.reload()
			s.updateReady()
		})
		if err != nil {
			s.log.Error("certificate watch stopped", "error", err)
		}
	})
	if s.cfg.ConfigFile != "" {
		wg.Go(func() {
			err := filewatch.Watch(watchCtx, filewatch.Options{
				Files: []string{s.cfg.ConfigFile}, Interval: s.cfg.ReloadInterval,
				Debounce: s.cfg.ReloadDebounce, Log: s.log,
			}, func() {
				_, _ = s.config.reload()
				s.updateReady()
			})
			if err != nil {
				s.log.Error("injector config watch stopped", "error", err)
			}
		})
	}
	defer func() {
		stopWatch()
		wg.Wait()
	}()

	errc := make(chan error, 2)
	go func() { errc <- fmt.Errorf("webhook server (TLS): %w", tlsSrv.ServeTLS(tlsLn, "", "")) }()
	go func() { errc <- fmt.Errorf("health server: %w", healthSrv.Serve(healthLn)) }()
	s.log.Info("serving", "webhook", "https://"+tlsLn.Addr().String(), "health", "http://"+healthLn.Addr().String(),
		"http2", s.cfg.HTTP2, "tls_min_version", s.cfg.TLSMinVersion, "max_in_flight", s.cfg.MaxInFlight,
		"max_connections", s.cfg.MaxConnections, "max_concurrent_streams", s.cfg.MaxConcurrentStreams,
		"memory_budget_mib", s.cfg.Budget().Memory>>20, "body_budget_mib", s.bodyBudget>>20,
		"config_hash", s.config.get().hash, "version", s.version, "ready", s.Ready())

	var serveErr error
	select {
	case <-ctx.Done():
	case serveErr = <-errc: // a server stopped on its own: shut the other one down
	}

	s.shuttingDown.Store(true)
	s.updateReady()
	if serveErr == nil && s.cfg.DrainDelay > 0 {
		s.log.Info("shutting down: readiness false, still serving while endpoints are removed", "drain_delay", s.cfg.DrainDelay)
		time.Sleep(s.cfg.DrainDelay)
	}
	s.log.Info("shutting down: no new connections, waiting for requests in flight", "grace", s.cfg.ShutdownGrace)
	graceCtx, cancel := context.WithTimeout(context.Background(), s.cfg.ShutdownGrace)
	defer cancel()
	errTLS := tlsSrv.Shutdown(graceCtx)
	errHealth := healthSrv.Shutdown(graceCtx)
	if errTLS != nil || errHealth != nil {
		tlsSrv.Close()
		healthSrv.Close()
	}
	// Collect the Serve results of both servers.
	var errs []error
	if serveErr != nil && !errors.Is(serveErr, http.ErrServerClosed) {
		errs = append(errs, serveErr)
	}
	for range 2 - boolToInt(serveErr != nil) {
		if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
			errs = append(errs, err)
		}
	}
	if errTLS != nil {
		errs = append(errs, fmt.Errorf("shutdown within --shutdown-grace %s: %w (requests still in flight were cut)", s.cfg.ShutdownGrace, errTLS))
	}
	if len(errs) == 0 {
		s.log.Info("stopped")
	}
	return errors.Join(errs...)
}

func boolToInt(b bool) int {
	if b {
		return 1
	}
	return 0
}
