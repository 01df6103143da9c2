package xds

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"

	"github.com/sidecar-injector/sidecar-injector/internal/serving"
)

// fileDebounce is how long after the first change event of a burst the
// watched files are re-read.
const fileDebounce = 100 * time.Millisecond

// Config is the configuration of `sidecar-injector xds`.
type Config struct {
	// ListenAddress is the gRPC (ADS) address.
	ListenAddress string
	// HealthAddress serves /healthz, /readyz and /metrics, plain HTTP.
	HealthAddress string
	// MeshConfig is the mesh settings file, watched; empty means the defaults.
	MeshConfig string
	// TLSCertFile and TLSKeyFile turn on TLS for gRPC, reloaded on change.
	TLSCertFile string
	TLSKeyFile  string
	// TLSMinVersion is 1.2 or 1.3.
	TLSMinVersion string
	// KeepaliveTime is how long a connection may be silent before the server
	// pings it; KeepaliveTimeout how long the ping may stay unanswered.
	KeepaliveTime    time.Duration
	KeepaliveTimeout time.Duration
	// KeepaliveMinTime is the shortest client ping interval tolerated; a
	// client pinging more often is disconnected. The bootstrap pings every 30s.
	KeepaliveMinTime time.Duration
	// MaxConnectionAge, when set, closes connections that old (gracefully,
	// MaxConnectionAgeGrace later) so proxies spread over new replicas.
	MaxConnectionAge time.Duration
	// MaxConcurrentStreams bounds the streams of one connection (Envoy opens one).
	MaxConcurrentStreams uint32
	// MaxConnections bounds open connections; more wait to be accepted.
	MaxConnections int
	// SendTimeout cuts the connection of a client that does not take a
	// response within it (it never reads).
	SendTimeout time.Duration
	// CheckPodIP refuses a node whose metadata podIP is not its connection's
	// peer address; turn it off for proxies behind NAT.
	CheckPodIP bool
	// FilePollInterval re-reads the watched files in case a change event is missed.
	FilePollInterval time.Duration
	// ShutdownDelay is how long /readyz says 503 before the server stops;
	// ShutdownGrace bounds the stop itself.
	ShutdownDelay time.Duration
	ShutdownGrace time.Duration
}

// DefaultConfig is what the flags default to (DESIGN.md "Command line").
func DefaultConfig() Config {
	return Config{
		ListenAddress:        ":18000",
		HealthAddress:        ":8080",
		TLSMinVersion:        serving.TLS12,
		KeepaliveTime:        30 * time.Second,
		KeepaliveTimeout:     10 * time.Second,
		KeepaliveMinTime:     10 * time.Second,
		MaxConcurrentStreams: 16,
		MaxConnections:       20000,
		SendTimeout:          30 * time.Second,
		CheckPodIP:           true,
		FilePollInterval:     30 * time.Second,
		ShutdownDelay:        5 * time.Second,
		ShutdownGrace:        10 * time.Second,
	}
}

// AddFlags binds c's fields to kebab-case flags, with c's values as defaults.
func (c *Config) AddFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.ListenAddress, "listen-address", c.ListenAddress, "gRPC (ADS) listen address")
	fs.StringVar(&c.HealthAddress, "health-address", c.HealthAddress, "listen address of /healthz, /readyz and /metrics (plain HTTP)")
	fs.StringVar(&c.MeshConfig, "mesh-config", c.MeshConfig, "mesh settings file (YAML, kind MeshConfig), watched for changes; empty: built-in defaults")
	fs.StringVar(&c.TLSCertFile, "tls-cert-file", c.TLSCertFile, "PEM certificate for gRPC TLS (reloaded on change); empty: plaintext")
	fs.StringVar(&c.TLSKeyFile, "tls-key-file", c.TLSKeyFile, "PEM key of --tls-cert-file")
	fs.StringVar(&c.TLSMinVersion, "tls-min-version", c.TLSMinVersion, "minimum TLS version: 1.2 or 1.3")
	fs.DurationVar(&c.KeepaliveTime, "keepalive-time", c.KeepaliveTime, "ping a connection silent this long")
	fs.DurationVar(&c.KeepaliveTimeout, "keepalive-timeout", c.KeepaliveTimeout, "close a connection whose ping is unanswered this long")
	fs.DurationVar(&c.KeepaliveMinTime, "keepalive-min-time", c.KeepaliveMinTime, "disconnect clients that ping more often than this")
	fs.DurationVar(&c.MaxConnectionAge, "max-connection-age", c.MaxConnectionAge, "close connections this old so proxies rebalance over replicas; 0: never")
	fs.Func("max-concurrent-streams", "most streams on one connection (default "+strconv.FormatUint(uint64(c.MaxConcurrentStreams), 10)+")", func(s string) error {
		n, err := strconv.ParseUint(s, 10, 32)
		if err != nil {
			return fmt.Errorf("want a number 1-%d", uint32(math.MaxUint32))
		}
		c.MaxConcurrentStreams = uint32(n)
		return nil
	})
	fs.IntVar(&c.MaxConnections, "max-connections", c.MaxConnections, "most open connections (one per proxy); more wait to be accepted")
	fs.DurationVar(&c.SendTimeout, "send-timeout", c.SendTimeout, "cut the connection of a proxy that does not take a response within this long")
	fs.BoolVar(&c.CheckPodIP, "check-pod-ip", c.CheckPodIP, "refuse a proxy whose node metadata podIP is not its connection's address (false: proxies behind NAT)")
	fs.DurationVar(&c.FilePollInterval, "file-poll-interval", c.FilePollInterval, "re-read the mesh settings and TLS files this often besides watching them")
	fs.DurationVar(&c.ShutdownDelay, "shutdown-delay", c.ShutdownDelay, "on SIGTERM, report not ready this long before stopping")
	fs.DurationVar(&c.ShutdownGrace, "shutdown-grace", c.ShutdownGrace, "on SIGTERM, bound the stop to this (ADS streams end at once: GOAWAY, then their connections close and proxies reconnect to another replica)")
}

// Validate names every wrong field and says how to fix it.
func (c Config) Validate() error {
	var errs []error
	errs = append(errs, serving.CheckAddress("--listen-address", c.ListenAddress), serving.CheckAddress("--health-address", c.HealthAddress))
	if _, port, err := net.SplitHostPort(c.ListenAddress); err == nil && port != "0" && c.ListenAddress == c.HealthAddress {
		errs = append(errs, fmt.Errorf("--listen-address and --health-address are both %q; use two ports", c.ListenAddress))
	}
	if (c.TLSCertFile == "") != (c.TLSKeyFile == "") {
		errs = append(errs, errors.New("--tls-cert-file and --tls-key-file go together: set both for TLS, or neither"))
	}
	if c.TLSMinVersion != serving.TLS12 && c.TLSMinVersion != serving.TLS13 {
		errs = append(errs, fmt.Errorf("--tls-min-version %q: want 1.2 or 1.3", c.TLSMinVersion))
	}
	for _, d := range []struct {
		flag string
		v    time.Duration
		min  time.Duration
	}{
		{"--keepalive-time", c.KeepaliveTime, time.Second},
		{"--keepalive-timeout", c.KeepaliveTimeout, time.Second},
		{"--keepalive-min-time", c.KeepaliveMinTime, time.Second},
		{"--file-poll-interval", c.FilePollInterval, 100 * time.Millisecond},
	} {
		if d.v < d.min {
			errs = append(errs, fmt.Errorf("%s %v: want at least %v", d.flag, d.v, d.min))
		}
	}
	if c.MaxConnectionAge != 0 && c.MaxConnectionAge < time.Minute {
		errs = append(errs, fmt.Errorf("--max-connection-age %v: want 0 (never) or at least 1m, or every proxy reconnects all the time", c.MaxConnectionAge))
	}
	if c.MaxConnections < 1 {
		errs = append(errs, fmt.Errorf("--max-connections %d: want at least 1", c.MaxConnections))
	}
	if c.SendTimeout < time.Second {
		errs = append(errs, fmt.Errorf("--send-timeout %v: want at least 1s", c.SendTimeout))
	}
	if c.MaxConcurrentStreams == 0 {
		errs = append(errs, errors.New("--max-concurrent-streams 0: want at least 1"))
	}
	if c.ShutdownDelay < 0 || c.ShutdownGrace < 0 {
		errs = append(errs, errors.New("--shutdown-delay and --shutdown-grace must not be negative"))
	}
	return errors.Join(errs...)
}

// App is the running xDS server: gRPC, the health port and the file watches.
type App struct {
	cfg     Config
	log     *slog.Logger
	metrics *Metrics
	server  *Server

	grpc      *grpc.Server
	http      *http.Server
	grpcLis   net.Listener
	healthLis net.Listener
	mesh      *meshFile
	certs     *serving.CertSource
	ready     atomic.Bool
	stop      context.CancelFunc // ends the server's workers and pushes
}

// New checks cfg, reads the mesh settings and the TLS pair, and binds both
// ports. Metrics go to reg; /metrics serves gatherer.
func New(cfg Config, log *slog.Logger, reg prometheus.Registerer, gatherer prometheus.Gatherer) (*App, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	a := &App{cfg: cfg, log: log, metrics: NewMetrics(reg)}
	mesh := DefaultMeshSettings()
	if cfg.MeshConfig != "" {
		m, data, err := loadMeshFile(cfg.MeshConfig)
		if err != nil {
			return nil, fmt.Errorf("%w (fix the file, or leave --mesh-config empty for the defaults)", err)
		}
		mesh = m
		a.mesh = &meshFile{path: cfg.MeshConfig, log: log, metrics: a.metrics, last: data}
	}
	serverCtx, stop := context.WithCancel(context.Background())
	server, err := NewServer(serverCtx, log, a.metrics, mesh)
	if err != nil {
		stop()
		return nil, err
	}
	server.SetCheckPodIP(cfg.CheckPodIP)
	a.server, a.stop = server, stop
	if a.mesh != nil {
		a.mesh.server = server
	}

	params := keepalive.ServerParameters{Time: cfg.KeepaliveTime, Timeout: cfg.KeepaliveTimeout}
	if cfg.MaxConnectionAge > 0 { // 0 in ServerParameters means the default: never
		params.MaxConnectionAge, params.MaxConnectionAgeGrace = cfg.MaxConnectionAge, cfg.ShutdownGrace
	}
	opts := []grpc.ServerOption{
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: cfg.KeepaliveMinTime, PermitWithoutStream: true}),
		grpc.KeepaliveParams(params),
		grpc.MaxConcurrentStreams(cfg.MaxConcurrentStreams),
		// A request carries a node (metadata at most 64 KiB is read) and
		// resource names: 1 MiB is plenty.
		grpc.MaxRecvMsgSize(1 << 20),
		// One connection per proxy: a 32 KiB read buffer each (gRPC's
		// default) is 320 MB for 10,000 proxies, whose requests are small.
		grpc.ReadBufferSize(8 << 10),
		grpc.ForceServerCodecV2(Codec()),
	}
	if cfg.TLSCertFile != "" {
		// The first pair is a Load, not counted: the reload counter says
		// what changed while serving.
		a.certs = serving.NewCertSource(cfg.TLSCertFile, cfg.TLSKeyFile, log, serving.CertMetrics{Reloads: a.metrics.TLSReloads})
		if err := a.certs.Load(); err != nil {
			stop()
			return nil, err
		}
		opts = append(opts, grpc.Creds(credentials.NewTLS(serving.TLSConfig(cfg.TLSMinVersion, a.certs.GetCertificate))))
	}
	if a.grpcLis, err = net.Listen("tcp", cfg.ListenAddress); err != nil {
		stop()
		return nil, fmt.Errorf("listen on --listen-address %s: %w", cfg.ListenAddress, err)
	}
	conns := newConnLimiter(a.grpcLis, cfg.MaxConnections)
	a.grpcLis = conns
	opts = append(opts, grpc.ChainStreamInterceptor(sendTimeout(cfg.SendTimeout, conns, func(addr string) {
		a.metrics.SendTimeouts.Inc()
		log.Warn("connection cut: a response waited longer than --send-timeout for the proxy to read", "peer", addr, "send_timeout", cfg.SendTimeout)
	})))
	a.grpc = grpc.NewServer(opts...)
	discoveryv3.RegisterAggregatedDiscoveryServiceServer(a.grpc, server.XDS())

	health := serving.Health{Gatherer: gatherer, Log: log, Ready: a.notReady}
	a.http = health.Server(health.Handler(), serving.DefaultTimeouts())

	if a.healthLis, err = net.Listen("tcp", cfg.HealthAddress); err != nil {
		a.grpcLis.Close()
		stop()
		return nil, fmt.Errorf("listen on --health-address %s: %w", cfg.HealthAddress, err)
	}
	return a, nil
}

// GRPCAddr is the bound gRPC address.
func (a *App) GRPCAddr() net.Addr { return a.grpcLis.Addr() }

// HealthAddr is the bound health address.
func (a *App) HealthAddr() net.Addr { return a.healthLis.Addr() }

// Server is the xDS server.
func (a *App) Server() *Server { return a.server }

// notReady says why /readyz is 503: before Run and once shutdown starts.
func (a *App) notReady() error {
	if !a.ready.Load() {
		return errors.New("not serving (starting, or shutting down)")
	}
	return nil
}

// Run serves until ctx is done, then shuts down (serving.Lifecycle): not
// ready, a delay for endpoint removal, streams ended (proxies reconnect to
// another replica), GracefulStop bounded by the grace period.
func (a *App) Run(ctx context.Context) error {
	defer a.stop()
	var watches []serving.Watch
	if a.mesh != nil {
		watches = append(watches, serving.Watch{Name: "mesh settings", Files: []string{a.mesh.path},
			Interval: a.cfg.FilePollInterval, Debounce: fileDebounce, Changed: a.mesh.reload})
	}
	if a.certs != nil {
		watches = append(watches, serving.Watch{Name: "certificate", Files: a.certs.Files(),
			Interval: a.cfg.FilePollInterval, Debounce: fileDebounce, Changed: func() { _, _ = a.certs.Reload() }})
	}
	lc := serving.Lifecycle{
		Log: a.log, Watches: watches, DrainDelay: a.cfg.ShutdownDelay, Grace: a.cfg.ShutdownGrace,
		Serving: func() {
			a.ready.Store(true)
			a.log.Info("xds server listening", "grpc", a.GRPCAddr().String(), "health", a.HealthAddr().String(),
				"tls", a.certs != nil, "mesh_config", a.cfg.MeshConfig)
		},
		Draining: func() { a.ready.Store(false) },
	}
	return lc.Run(ctx, a.grpcUnit(), serving.HTTP("health server", a.http, a.healthLis))
}

// grpcUnit serves ADS; its stop sends GOAWAY (no new streams) and closes
// the connections, which ends the open streams so that each proxy
// reconnects to another replica. An ADS stream never ends by itself, and
// its goroutine waits in its read (adsServer), which only the end of the
// connection interrupts.
func (a *App) grpcUnit() serving.Unit {
	return serving.Unit{
		Name: "gRPC server",
		Serve: func() error {
			if err := a.grpc.Serve(a.grpcLis); !errors.Is(err, grpc.ErrServerStopped) {
				return err
			}
			return nil // stopped before it began serving
		},
		Stop: func(context.Context) error {
			stopped := make(chan struct{})
			go func() {
				a.grpc.GracefulStop()
				close(stopped)
			}()
			a.stop()
			a.grpc.Stop()
			<-stopped
			return nil
		},
	}
}
