package webhook

import (
	"errors"
	"flag"
	"fmt"
	"net"
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
	DefaultDrainDelay        = 5 * time.Second
	DefaultShutdownGrace     = 30 * time.Second
	DefaultReloadInterval    = 30 * time.Second
	DefaultReloadDebounce    = 100 * time.Millisecond

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
		ListenAddress:     ":9443",
		HealthAddress:     ":8080",
		TLSMinVersion:     TLSVersion12,
		HTTP2:             true,
		MaxInFlight:       DefaultMaxInFlight,
		MaxBodyBytes:      DefaultMaxBodyBytes,
		ReadHeaderTimeout: DefaultReadHeaderTimeout,
		ReadTimeout:       DefaultReadTimeout,
		WriteTimeout:      DefaultWriteTimeout,
		IdleTimeout:       DefaultIdleTimeout,
		MaxHeaderBytes:    DefaultMaxHeaderBytes,
		DrainDelay:        DefaultDrainDelay,
		ShutdownGrace:     DefaultShutdownGrace,
		ReloadInterval:    DefaultReloadInterval,
		ReloadDebounce:    DefaultReloadDebounce,
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
	fs.IntVar(&c.MaxInFlight, "max-in-flight", c.MaxInFlight, "concurrent admission requests served; more get HTTP 429")
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
