package controller

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"k8s.io/client-go/tools/leaderelection"

	"github.com/sidecar-injector/sidecar-injector/envoy"
	"github.com/sidecar-injector/sidecar-injector/internal/version"
)

// AppConfig is the whole `sidecar-injector controller` process.
type AppConfig struct {
	Controller Config
	Leader     LeaderConfig
	// Kubeconfig is the cluster config file; empty: in-cluster.
	Kubeconfig string
	// ConfigFile is the injector config (the webhook's); empty: built-in
	// defaults. Changes are picked up without a restart.
	ConfigFile string
	// HealthAddress serves /healthz, /readyz and /metrics (plain HTTP) on
	// every replica, leader or not.
	HealthAddress string
}

// DefaultAppConfig returns the defaults.
func DefaultAppConfig() AppConfig {
	return AppConfig{Controller: DefaultConfig(), Leader: DefaultLeaderConfig(), HealthAddress: ":8080"}
}

// AddFlags registers every flag of the process.
func (c *AppConfig) AddFlags(fs *flag.FlagSet) {
	c.Controller.AddFlags(fs)
	c.Leader.AddFlags(fs)
	fs.StringVar(&c.Kubeconfig, "kubeconfig", c.Kubeconfig, "kubeconfig `file` (default: the in-cluster config)")
	fs.StringVar(&c.ConfigFile, "config", c.ConfigFile, "injector config `file` (the webhook's; default: built-in defaults); reloaded when it changes")
	fs.StringVar(&c.HealthAddress, "health-address", c.HealthAddress, "plain-HTTP `address` of /healthz, /readyz and /metrics")
}

// Validate reports every wrong flag.
func (c AppConfig) Validate() error {
	var errs []error
	if _, _, err := net.SplitHostPort(c.HealthAddress); err != nil {
		errs = append(errs, fmt.Errorf("--health-address=%q: want host:port, such as :8080", c.HealthAddress))
	}
	return errors.Join(c.Controller.Validate(), c.Leader.Validate(), errors.Join(errs...))
}

// RunApp runs the controller process until ctx is done: the health server
// on every replica, leader election, and the reconciler on the leader. It
// needs cluster access; the error says how to give it.
func RunApp(ctx context.Context, cfg AppConfig, log *slog.Logger) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	rc, err := RESTConfig(cfg.Kubeconfig)
	if err != nil {
		return err
	}
	cs, md, err := NewClients(rc)
	if err != nil {
		return err
	}
	src, err := NewFileConfigSource(cfg.ConfigFile, log)
	if err != nil {
		return err
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(version.NewCollector("controller"))
	c, err := New(cfg.Controller, cs, md, src, envoy.DefaultBootstrapConfig(), reg, log)
	if err != nil {
		return err
	}
	lis, err := net.Listen("tcp", cfg.HealthAddress)
	if err != nil {
		return fmt.Errorf("listen on --health-address %s: %w", cfg.HealthAddress, err)
	}
	// A leader that has not renewed for this long fails /healthz and is
	// restarted; a standby always passes.
	watchdog := leaderelection.NewLeaderHealthzAdaptor(20 * time.Second)
	srv := &http.Server{
		Handler:           c.healthHandler(reg, watchdog),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       15 * time.Second,
		WriteTimeout:      15 * time.Second,
		IdleTimeout:       90 * time.Second,
		MaxHeaderBytes:    1 << 20,
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(lis) }()
	log.Info("controller starting", "version", version.Get(), "health_address", lis.Addr().String(), "leader_election", cfg.Leader.Enabled)

	runErr := c.RunElected(ctx, cfg.Leader, cs, watchdog)
	shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	_ = srv.Shutdown(shutdownCtx)
	if err := <-served; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return errors.Join(runErr, fmt.Errorf("health server: %w", err))
	}
	return runErr
}

// healthHandler serves /healthz (the process and, on the leader, its
// Lease renewals), /readyz (a standby is ready; the leader once its
// caches have synced) and /metrics.
func (c *Controller) healthHandler(reg *prometheus.Registry, watchdog *leaderelection.HealthzAdaptor) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		if err := watchdog.Check(r); err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if c.Leading() && !c.HasSynced() {
			http.Error(w, "leading, caches not synced yet", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	return mux
}
