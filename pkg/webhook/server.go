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
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/net/netutil"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sidecar-injector/sidecar-injector/internal/serving"
	"github.com/sidecar-injector/sidecar-injector/internal/version"
	"github.com/sidecar-injector/sidecar-injector/pkg/inject"
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
	certs    *serving.CertSource
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
		cfg:      cfg,
		log:      d.Log,
		metrics:  d.Metrics,
		gatherer: d.Gatherer,
		certs: serving.NewCertSource(cfg.TLSCertFile, cfg.TLSKeyFile, d.Log, serving.CertMetrics{
			Reloads: d.Metrics.certReloads, LastReload: d.Metrics.certLastReload, Expiry: d.Metrics.certExpiry,
		}),
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
	_, _ = s.certs.Reload() // logged and counted inside
	s.updateReady()
	return s, nil
}

// Ready says whether /readyz answers 200: certificate and config loaded and
// not shutting down.
func (s *Server) Ready() bool {
	return s.notReady() == nil
}

// notReady says why /readyz is 503, nil when it is 200.
func (s *Server) notReady() error {
	switch {
	case s.shuttingDown.Load():
		return errors.New("shutting down")
	case !s.certs.Loaded():
		return errors.New("no serving certificate loaded yet (see the log for why)")
	case s.config.get() == nil:
		return errors.New("no injector config loaded yet")
	}
	return nil
}

func (s *Server) updateReady() {
	if s.Ready() {
		s.metrics.ready.Set(1)
	} else {
		s.metrics.ready.Set(0)
	}
}

// TLSConfig is the TLS port's configuration (serving.TLSConfig): TLS 1.2+
// (1.3 with --tls-min-version=1.3), ECDHE with AEAD ciphers only for 1.2,
// and the reloading certificate.
func (s *Server) TLSConfig() *tls.Config {
	return serving.TLSConfig(s.cfg.TLSMinVersion, s.certs.GetCertificate)
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
	r.Post("/mutate", s.serveMutate)
	r.Post("/audit", s.serveAudit)
	r.Post("/invalid-namespace-label", s.serveInvalidLabel)
	r.Post("/explain", s.serveExplain)
	r.Post(PathWorkload, func(w http.ResponseWriter, r *http.Request) { s.serveWorkload(w, r, false) })
	r.Post(PathWorkloadAudit, func(w http.ResponseWriter, r *http.Request) { s.serveWorkload(w, r, true) })
	return growFirst(r)
}

// HealthHandler is the plain-HTTP port's router: /healthz, /readyz, /metrics
// (and /debug/pprof/ with --enable-pprof).
func (s *Server) HealthHandler() http.Handler {
	return s.recoverer(s.health().Handler())
}

func (s *Server) health() serving.Health {
	return serving.Health{Gatherer: s.gatherer, Log: s.log, Ready: s.notReady, Pprof: s.cfg.EnablePprof}
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
	limits := serving.Timeouts{
		ReadHeader: s.cfg.ReadHeaderTimeout, Read: s.cfg.ReadTimeout, Write: s.cfg.WriteTimeout,
		Idle: s.cfg.IdleTimeout, MaxHeaderBytes: s.cfg.MaxHeaderBytes,
	}
	protos := new(http.Protocols)
	protos.SetHTTP1(true)
	protos.SetHTTP2(s.cfg.HTTP2)
	tlsSrv = serving.NewHTTPServer(s.Handler(), limits, s.log)
	tlsSrv.TLSConfig = s.TLSConfig()
	tlsSrv.Protocols = protos
	tlsSrv.HTTP2 = &http.HTTP2Config{
		MaxConcurrentStreams: s.cfg.MaxConcurrentStreams,
		// Flow-control windows: what a connection may push before the
		// handlers read it (they read at once; this bounds the rest).
		MaxReceiveBufferPerConnection: 256 << 10,
		MaxReceiveBufferPerStream:     256 << 10,
	}
	return tlsSrv, s.health().Server(s.HealthHandler(), limits)
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
// healthLn, and watches the certificate and config files (in place before
// it serves). When ctx is done: readiness goes false, the server keeps
// serving for DrainDelay (endpoint removal), then stops accepting and
// waits up to ShutdownGrace for requests in flight (serving.Lifecycle). It
// closes both listeners.
func (s *Server) Serve(ctx context.Context, tlsLn, healthLn net.Listener) error {
	tlsSrv, healthSrv := s.httpServers()
	// At MaxConnections open, Accept waits: further connections stay in
	// the kernel's queue, costing this process nothing.
	tlsLn = netutil.LimitListener(tlsLn, s.cfg.MaxConnections)

	watches := []serving.Watch{{
		Name: "certificate", Files: s.certs.Files(), Interval: s.cfg.ReloadInterval, Debounce: s.cfg.ReloadDebounce,
		Changed: func() {
			_, _ = s.certs.Reload()
			s.updateReady()
		},
	}}
	if s.cfg.ConfigFile != "" {
		watches = append(watches, serving.Watch{
			Name: "injector config", Files: []string{s.cfg.ConfigFile}, Interval: s.cfg.ReloadInterval, Debounce: s.cfg.ReloadDebounce,
			Changed: func() {
				_, _ = s.config.reload()
				s.updateReady()
			},
		})
	}
	lc := serving.Lifecycle{
		Log: s.log, Watches: watches, DrainDelay: s.cfg.DrainDelay, Grace: s.cfg.ShutdownGrace,
		Serving: func() {
			s.log.Info("serving", "webhook", "https://"+tlsLn.Addr().String(), "health", "http://"+healthLn.Addr().String(),
				"http2", s.cfg.HTTP2, "tls_min_version", s.cfg.TLSMinVersion, "max_in_flight", s.cfg.MaxInFlight,
				"max_connections", s.cfg.MaxConnections, "max_concurrent_streams", s.cfg.MaxConcurrentStreams,
				"memory_budget_mib", s.cfg.Budget().Memory>>20, "body_budget_mib", s.bodyBudget>>20,
				"config_hash", s.config.get().hash, "version", s.version, "ready", s.Ready())
		},
		Draining: func() {
			s.shuttingDown.Store(true)
			s.updateReady()
		},
	}
	return lc.Run(ctx, serving.HTTP("webhook server (TLS)", tlsSrv, tlsLn), serving.HTTP("health server", healthSrv, healthLn))
}
