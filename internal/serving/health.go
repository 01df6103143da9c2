package serving

import (
	"log/slog"
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Timeouts are the limits of an http.Server (RELIABILITY.md "Server
// settings").
type Timeouts struct {
	ReadHeader, Read, Write, Idle time.Duration
	MaxHeaderBytes                int
}

// DefaultTimeouts are the limits RELIABILITY.md names: 10 s to read the
// headers, 15 s to read and to write, 90 s idle, 1 MiB of headers.
func DefaultTimeouts() Timeouts {
	return Timeouts{ReadHeader: 10 * time.Second, Read: 15 * time.Second, Write: 15 * time.Second, Idle: 90 * time.Second, MaxHeaderBytes: 1 << 20}
}

// NewHTTPServer is an http.Server for h with t's limits; its own errors
// (failed handshakes, bad requests) go to log at WARN.
func NewHTTPServer(h http.Handler, t Timeouts, log *slog.Logger) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: t.ReadHeader,
		ReadTimeout:       t.Read,
		WriteTimeout:      t.Write,
		IdleTimeout:       t.Idle,
		MaxHeaderBytes:    t.MaxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
}

// Health is the plain-HTTP port of every server: /healthz, /readyz,
// /metrics, and /debug/pprof/ when asked for.
type Health struct {
	// Gatherer is the process's registry, served on /metrics.
	Gatherer prometheus.Gatherer
	// Log receives the errors of /metrics and of the server.
	Log *slog.Logger
	// Live says whether the process works (/healthz: 200, else 503 with
	// the error); nil: always.
	Live func(*http.Request) error
	// Ready says whether the process takes traffic (/readyz: 200, else
	// 503 with the error); nil: always.
	Ready func() error
	// Pprof serves /debug/pprof/.
	Pprof bool
}

// Handler routes the health port.
func (h Health) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		var err error
		if h.Live != nil {
			err = h.Live(r)
		}
		answer(w, "not healthy: ", err)
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		var err error
		if h.Ready != nil {
			err = h.Ready()
		}
		answer(w, "not ready: ", err)
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(h.Gatherer, promhttp.HandlerOpts{
		ErrorLog:      slog.NewLogLogger(h.Log.Handler(), slog.LevelError),
		ErrorHandling: promhttp.ContinueOnError,
	}))
	if h.Pprof {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	return mux
}

// Server is the health port's http.Server, with handler (Handler, maybe
// wrapped) and t's limits; with Pprof the write timeout is at least 60 s,
// as a CPU profile takes 30.
func (h Health) Server(handler http.Handler, t Timeouts) *http.Server {
	if h.Pprof {
		t.Write = max(t.Write, 60*time.Second)
	}
	return NewHTTPServer(handler, t, h.Log)
}

// answer writes "ok" or 503 with why.
func answer(w http.ResponseWriter, prefix string, err error) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if err != nil {
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = w.Write([]byte(prefix + err.Error() + "\n"))
		return
	}
	_, _ = w.Write([]byte("ok\n"))
}
