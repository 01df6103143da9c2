package controller

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/client-go/tools/leaderelection"

	"github.com/sidecar-injector/sidecar-injector/envoy"
	"github.com/sidecar-injector/sidecar-injector/internal/serving"
	"github.com/sidecar-injector/sidecar-injector/internal/version"
)

// shutdownGrace bounds the stop on SIGTERM: the reconciler ends and the
// leader releases its Lease for a standby.
const shutdownGrace = 30 * time.Second

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
	return errors.Join(c.Controller.Validate(), c.Leader.Validate(), serving.CheckAddress("--health-address", c.HealthAddress))
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
	// restarted; a standby always passes. A standby is ready; the leader
	// once its caches have synced.
	watchdog := leaderelection.NewLeaderHealthzAdaptor(20 * time.Second)
	health := serving.Health{Gatherer: reg, Log: log, Live: watchdog.Check, Ready: c.notReady}
	srv := health.Server(health.Handler(), serving.DefaultTimeouts())
	log.Info("controller starting", "version", version.Get(), "health_address", lis.Addr().String(), "leader_election", cfg.Leader.Enabled)
	elected := serving.Task("controller", func(ctx context.Context) error { return c.RunElected(ctx, cfg.Leader, cs, watchdog) })
	lc := serving.Lifecycle{Log: log, Grace: shutdownGrace}
	return lc.Run(ctx, elected, serving.HTTP("health server", srv, lis))
}

// notReady says why /readyz is 503: a leader whose caches have not synced.
func (c *Controller) notReady() error {
	if c.Leading() && !c.HasSynced() {
		return errors.New("leading, caches not synced yet")
	}
	return nil
}
