package webhook

import (
	"errors"
	"flag"
	"fmt"
	"math"
	"net"
	"runtime/debug"
	"strings"
	"time"
)

// Server settings of RELIABILITY.md "Server settings". They are Config fields
// so tests can shorten them; the defaults are the contract.
const (
	DefaultReadHeaderTimeout = 10 * time.Second
	DefaultReadTimeout       = 15 * time.Second
	DefaultWriteTimeout      = 15 * time.Second
	DefaultIdleTimeout       = 90 * time.Second
	DefaultMaxHeaderBytes    = 1 << 20
	DefaultMaxBodyBytes      = 7 << 20
	DefaultMaxInFlight       = 256
	// DefaultMaxConnections caps open connections on the TLS port; more
	// wait in the kernel's accept queue. The apiserver needs a handful.
	DefaultMaxConnections = 96
	// DefaultMaxConcurrentStreams caps HTTP/2 streams per connection; the
	// apiserver's client opens another connection when it needs more.
	// 16 streams on 96 connections take the memory 4 on 320 did (52 against
	// 55 MiB in Budget), but 16 concurrent reviews then share one
	// connection, whose frames go out in fewer writes: at 16 concurrent
	// reviews the p99 latency went from 1.43-1.68 to 1.29 times the null
	// webhook's (docs/benchmarks.md).
	DefaultMaxConcurrentStreams = 16
	// DefaultMemoryBudget is the memory the caps are checked against when
	// neither --memory-budget nor a runtime memory limit (--memory-limit,
	// or GOMEMLIMIT) is set.
	DefaultMemoryBudget   = 128 << 20
	DefaultDrainDelay     = 5 * time.Second
	DefaultShutdownGrace  = 30 * time.Second
	DefaultReloadInterval = 30 * time.Second
	DefaultReloadDebounce = 100 * time.Millisecond

	// maxRequestTimeout caps ?timeout=: the apiserver allows 1-30 s.
	maxRequestTimeout = 30 * time.Second
)

// TLS versions accepted by --tls-min-version.
const (
	TLSVersion12 = "1.2"
	TLSVersion13 = "1.3"
)

// Config is the webhook subcommand's configuration.
type Config struct {
	// ListenAddress is the TLS address of /mutate, /audit and /explain.
	ListenAddress string
	// HealthAddress is the plain-HTTP address of /healthz, /readyz and /metrics.
	HealthAddress string
	// TLSCertFile and TLSKeyFile are the serving pair (PEM); both are
	// reloaded when their directory changes.
	TLSCertFile string
	TLSKeyFile  string
	// TLSMinVersion is "1.2" or "1.3".
	TLSMinVersion string
	// HTTP2 offers h2 over ALPN (the apiserver multiplexes reviews on it).
	HTTP2 bool
	// ConfigFile is the injector config; empty means the built-in defaults.
	ConfigFile string
	// Kubeconfig is used only to read the cluster version (native sidecar
	// support). Empty: the in-cluster config when running in a pod, else none.
	Kubeconfig string

	// MaxInFlight bounds concurrent admission requests; the excess gets 429.
	MaxInFlight int
	// MaxBodyBytes caps a request body (413 above it).
	MaxBodyBytes int64
	// MaxConnections caps open connections on the TLS port.
	MaxConnections int
	// MaxConcurrentStreams caps HTTP/2 streams per connection.
	MaxConcurrentStreams int
	// MemoryBudget is what the caps must fit in together (see Budget);
	// 0: GOMEMLIMIT when set, else DefaultMemoryBudget.
	MemoryBudget int64
	// ReadHeaderTimeout, ReadTimeout, WriteTimeout, IdleTimeout and
	// MaxHeaderBytes are the http.Server settings.
	ReadHeaderTimeout time.Duration
	ReadTimeout       time.Duration
	WriteTimeout      time.Duration
	IdleTimeout       time.Duration
	MaxHeaderBytes    int

	// DrainDelay is how long the server keeps serving after readiness goes
	// false on shutdown (longer than endpoint removal takes).
	DrainDelay time.Duration
	// ShutdownGrace bounds the wait for in-flight requests to finish.
	ShutdownGrace time.Duration
	// ReloadInterval is the periodic re-check of the certificate and config
	// files, the fallback for missed file-system events.
	ReloadInterval time.Duration
	// ReloadDebounce gathers the burst of events of one file update.
	ReloadDebounce time.Duration

	// EnablePprof serves /debug/pprof/ on the health port.
	EnablePprof bool
}

// DefaultConfig returns the documented defaults. TLSCertFile and TLSKeyFile
// have none: they are required.
func DefaultConfig() Config {
	return Config{
		ListenAddress:        ":9443",
		HealthAddress:        ":8080",
		TLSMinVersion:        TLSVersion12,
		HTTP2:                true,
		MaxInFlight:          DefaultMaxInFlight,
		MaxBodyBytes:         DefaultMaxBodyBytes,
		MaxConnections:       DefaultMaxConnections,
		MaxConcurrentStreams: DefaultMaxConcurrentStreams,
		ReadHeaderTimeout:    DefaultReadHeaderTimeout,
		ReadTimeout:          DefaultReadTimeout,
		WriteTimeout:         DefaultWriteTimeout,
		IdleTimeout:          DefaultIdleTimeout,
		MaxHeaderBytes:       DefaultMaxHeaderBytes,
		DrainDelay:           DefaultDrainDelay,
		ShutdownGrace:        DefaultShutdownGrace,
		ReloadInterval:       DefaultReloadInterval,
		ReloadDebounce:       DefaultReloadDebounce,
	}
}

// AddFlags registers the command-line flags of DESIGN.md "Command line" and
// the operational knobs. The HTTP server limits are not flags: they are the
// contract of RELIABILITY.md.
func (c *Config) AddFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.ListenAddress, "listen-address", c.ListenAddress, "TLS `address` of /mutate, /audit and /explain")
	fs.StringVar(&c.HealthAddress, "health-address", c.HealthAddress, "plain-HTTP `address` of /healthz, /readyz and /metrics")
	fs.StringVar(&c.TLSCertFile, "tls-cert-file", c.TLSCertFile, "serving certificate `file` (PEM; reloaded when it changes; required)")
	fs.StringVar(&c.TLSKeyFile, "tls-key-file", c.TLSKeyFile, "serving private key `file` (PEM; reloaded when it changes; required)")
	fs.StringVar(&c.TLSMinVersion, "tls-min-version", c.TLSMinVersion, "minimum TLS `version`: 1.2 or 1.3")
	fs.BoolVar(&c.HTTP2, "http2", c.HTTP2, "offer HTTP/2 on the TLS port (--http2=false for HTTP/1.1 only)")
	fs.StringVar(&c.ConfigFile, "config", c.ConfigFile, "injector config `file` (reloaded when it changes; default: built-in defaults)")
	fs.StringVar(&c.Kubeconfig, "kubeconfig", c.Kubeconfig, "kubeconfig `file`, to read the cluster version and watch namespaces and envoy-config ConfigMaps read-only for admission warnings (default: in-cluster config when in a pod)")
	fs.IntVar(&c.MaxInFlight, "max-in-flight", c.MaxInFlight, "concurrent admission requests served (taken once a body is read); more get HTTP 429")
	fs.IntVar(&c.MaxConnections, "max-connections", c.MaxConnections, "open connections on the TLS port; more wait to be accepted")
	fs.IntVar(&c.MaxConcurrentStreams, "max-concurrent-streams", c.MaxConcurrentStreams, "HTTP/2 streams per connection")
	fs.Int64Var(&c.MemoryBudget, "memory-budget", c.MemoryBudget, "`bytes` the request caps must fit in together; 0: the runtime memory limit (--memory-limit or GOMEMLIMIT), else 128 MiB")
	fs.DurationVar(&c.DrainDelay, "drain-delay", c.DrainDelay, "on SIGTERM, keep serving this long with readiness false before shutting down")
	fs.DurationVar(&c.ShutdownGrace, "shutdown-grace", c.ShutdownGrace, "on SIGTERM, wait at most this long for in-flight requests")
	fs.DurationVar(&c.ReloadInterval, "reload-interval", c.ReloadInterval, "re-check the certificate and config files this often (besides file-system events)")
	fs.BoolVar(&c.EnablePprof, "enable-pprof", c.EnablePprof, "serve /debug/pprof/ on the health port")
}

// Validate reports every wrong field, each with how to fix it.
func (c Config) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }

	if c.TLSCertFile == "" {
		bad("--tls-cert-file is required: the apiserver only calls webhooks over TLS")
	}
	if c.TLSKeyFile == "" {
		bad("--tls-key-file is required: the apiserver only calls webhooks over TLS")
	}
	for _, a := range []struct{ flag, v string }{{"--listen-address", c.ListenAddress}, {"--health-address", c.HealthAddress}} {
		if _, port, err := net.SplitHostPort(a.v); err != nil || port == "" {
			bad("%s=%q: want host:port such as :9443 or 127.0.0.1:9443", a.flag, a.v)
		}
	}
	if c.ListenAddress != "" && c.ListenAddress == c.HealthAddress && !strings.HasSuffix(c.ListenAddress, ":0") {
		bad("--listen-address and --health-address are both %q: the TLS and health ports must differ", c.ListenAddress)
	}
	if c.TLSMinVersion != TLSVersion12 && c.TLSMinVersion != TLSVersion13 {
		bad("--tls-min-version=%q: want 1.2 or 1.3", c.TLSMinVersion)
	}
	if c.MaxInFlight < 1 || c.MaxInFlight > 100000 {
		bad("--max-in-flight=%d: want 1-100000", c.MaxInFlight)
	}
	if c.MaxBodyBytes < 1024 {
		bad("max body bytes %d: want at least 1024", c.MaxBodyBytes)
	}
	if c.MaxConnections < 1 || c.MaxConnections > 1000000 {
		bad("--max-connections=%d: want 1-1000000", c.MaxConnections)
	}
	if c.MaxConcurrentStreams < 1 || c.MaxConcurrentStreams > 1000 {
		bad("--max-concurrent-streams=%d: want 1-1000", c.MaxConcurrentStreams)
	}
	if c.MemoryBudget < 0 {
		bad("--memory-budget=%d: want 0 (the runtime memory limit) or a number of bytes", c.MemoryBudget)
	}
	if c.MaxInFlight >= 1 && c.MaxBodyBytes >= 1024 && c.MaxConnections >= 1 && c.MaxConcurrentStreams >= 1 && c.MemoryBudget >= 0 {
		if b := c.Budget(); b.BodyBytes < c.MaxBodyBytes {
			bad("%s", b.problem(c))
		}
	}
	if c.MaxHeaderBytes < 1024 {
		bad("max header bytes %d: want at least 1024", c.MaxHeaderBytes)
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{
		{"read header timeout", c.ReadHeaderTimeout}, {"read timeout", c.ReadTimeout},
		{"write timeout", c.WriteTimeout}, {"idle timeout", c.IdleTimeout},
		{"--shutdown-grace", c.ShutdownGrace}, {"--reload-interval", c.ReloadInterval},
		{"reload debounce", c.ReloadDebounce},
	} {
		if d.v <= 0 {
			bad("%s=%s: want a positive duration such as 30s", d.name, d.v)
		}
	}
	if c.DrainDelay < 0 {
		bad("--drain-delay=%s: want 0 or a positive duration such as 5s", c.DrainDelay)
	}
	return errors.Join(errs...)
}

// The memory model the caps are checked against at start-up. The figures
// are measured upper bounds on this server (Go 1.26, a TLS port):
const (
	memBaseline = 24 << 20 // the process with its caches, idle
	// memPerConn is an open TLS connection, before any request: its
	// goroutine, the TLS and bufio buffers (4,000 half-open connections
	// once took 172 MB, 43 KiB each).
	memPerConn = 48 << 10
	// memPerStream is a request whose body is still arriving: its
	// goroutine, the request, the first 16 KiB body buffer.
	memPerStream = 32 << 10
	// memPerRequest is the fixed part of a request in flight.
	memPerRequest = 16 << 10
	// memWorkFactor is the live heap a request in flight needs per byte of
	// its body, besides the body: the typed pod, the patch, the answer (a
	// 3.8 MB review of 75,000 ports peaked at 3.7 times its size).
	memWorkFactor = 4
)

// Budget is how the memory budget divides between the caps.
type Budget struct {
	Memory      int64 // the budget
	Connections int64 // open connections, every one with its streams waiting for bodies
	InFlight    int64 // the fixed part of requests in flight
	// BodyBytes is what the bodies held at once (being read or in flight)
	// may take, with the work they cause: every body byte beyond the first
	// 16 KiB of a request is reserved from it as it arrives, and a request
	// that finds it spent gets 429.
	BodyBytes int64
}

// Budget divides the memory budget: what connections and their streams
// can take at most, then the requests in flight, then the bodies with
// their work. The caps are valid when BodyBytes holds one body of
// MaxBodyBytes.
func (c Config) Budget() Budget {
	b := Budget{Memory: c.memoryBudget()}
	b.Connections = int64(c.MaxConnections) * (memPerConn + int64(c.MaxConcurrentStreams)*memPerStream)
	b.InFlight = int64(c.MaxInFlight) * memPerRequest
	b.BodyBytes = (b.Memory - memBaseline - b.Connections - b.InFlight) / (1 + memWorkFactor)
	return b
}

func (b Budget) problem(c Config) string {
	return fmt.Sprintf("the request caps do not fit the memory budget of %d MiB (--memory-budget, else the runtime's memory limit): "+
		"%d MiB baseline + %d connections (--max-connections) × (%d KiB + %d streams (--max-concurrent-streams) × %d KiB) = %d MiB "+
		"+ %d requests in flight (--max-in-flight) × %d KiB = %d MiB leave %d MiB for bodies and their work (%d× the body), "+
		"less than one body of %d MiB: lower a cap or raise the budget",
		b.Memory>>20, memBaseline>>20, c.MaxConnections, memPerConn>>10, c.MaxConcurrentStreams, memPerStream>>10, b.Connections>>20,
		c.MaxInFlight, memPerRequest>>10, b.InFlight>>20, max(0, b.BodyBytes*(1+memWorkFactor))>>20, 1+memWorkFactor, c.MaxBodyBytes>>20)
}

// memoryBudget is MemoryBudget, else GOMEMLIMIT, else DefaultMemoryBudget.
func (c Config) memoryBudget() int64 {
	if c.MemoryBudget > 0 {
		return c.MemoryBudget
	}
	if limit := debug.SetMemoryLimit(-1); limit > 0 && limit < math.MaxInt64 {
		return limit
	}
	return DefaultMemoryBudget
}
