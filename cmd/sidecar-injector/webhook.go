package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/klog/v2"

	"github.com/sidecar-injector/sidecar-injector/envoy"
	"github.com/sidecar-injector/sidecar-injector/internal/version"
	"github.com/sidecar-injector/sidecar-injector/pkg/controller"
	"github.com/sidecar-injector/sidecar-injector/pkg/inject"
	"github.com/sidecar-injector/sidecar-injector/pkg/webhook"
)

// runWebhook serves the mutating admission webhook, and runs the controller
// next to it, until ctx is done (SIGTERM); then shuts down gracefully.
func runWebhook(ctx context.Context, args []string, io stdio) error {
	cfg := webhook.DefaultConfig()
	ccfg := controller.DefaultConfig()
	logCfg := defaultLogConfig()
	// Measured with make bench-webhook: 200 took the CPU per request from
	// 1.58x to 1.35x the null webhook's for a few MiB (docs/benchmarks.md).
	gc := gcConfig{Percent: 200}
	fs := newFlagSet("webhook", io)
	cfg.AddFlags(fs)
	ccfg.AddFlags(fs)
	logCfg.AddFlags(fs)
	gc.AddFlags(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := errors.Join(cfg.Validate(), ccfg.Validate(), gc.Validate()); err != nil {
		return fmt.Errorf("invalid flags:\n%w", err)
	}
	log, err := logCfg.logger(io.err)
	if err != nil {
		return err
	}
	gc.apply(log)
	klog.SetSlogLogger(log) // client-go logs through klog

	// Native sidecars: from the cluster version when a cluster config is
	// available. If the version cannot be read, the classic layout (which
	// works on every version) is the safe choice.
	detectCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	native, err := webhook.NativeSidecarSupport(detectCtx, cfg.Kubeconfig, 3)
	cancel()
	switch {
	case err != nil:
		classic := false
		native = &classic
		log.Error("cannot read the cluster version; injecting classic (non-native) sidecars, which work on every version", "error", err)
	case native == nil:
		log.Info("no cluster config (no --kubeconfig, not in a pod); proxy.nativeSidecar auto means native sidecars")
	default:
		log.Info("cluster version read", "native_sidecar_supported", *native)
	}

	reg := prometheus.NewRegistry()
	var srv *webhook.Server
	ctrl, err := newController(ccfg, cfg.Kubeconfig, func() *inject.Injector {
		if srv == nil {
			return nil
		}
		return srv.Injector()
	}, reg, log)
	if err != nil {
		return err
	}
	deps := webhook.Deps{
		Log:                    log,
		Metrics:                webhook.NewMetrics(reg),
		Gatherer:               reg,
		NativeSidecarSupported: native,
	}
	if ctrl != nil {
		deps.Namespaces = ctrl
		deps.Skips = skipEvents{ctrl.Recorder()}
	}
	if srv, err = webhook.New(cfg, deps); err != nil {
		return err
	}
	log.Info("starting", "version", version.Get(), "controller", ctrl != nil)
	if ctrl == nil {
		return srv.Run(ctx)
	}
	return runBoth(ctx, srv.Run, ctrl.Run)
}

// runBoth runs a and b until ctx is done or one of them returns; then the
// other is stopped too. It returns the first error.
func runBoth(ctx context.Context, a, b func(context.Context) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errs := make(chan error, 2)
	for _, f := range []func(context.Context) error{a, b} {
		go func() { errs <- f(ctx) }()
	}
	first := <-errs
	cancel()
	second := <-errs
	if first != nil {
		return first
	}
	return second
}

// newController builds the controller when it is enabled and a cluster is
// reachable; nil when it is off, or on when no cluster config exists (the
// webhook run on a laptop): then injection works alone and a log line says so.
func newController(cfg controller.Config, kubeconfig string, src controller.ConfigSourceFunc, reg prometheus.Registerer, log *slog.Logger) (*controller.Controller, error) {
	if !cfg.Enabled {
		log.Info("controller off (--controller=false): envoy-config ConfigMaps are not managed, no Events are recorded")
		return nil, nil
	}
	rc, err := controller.RESTConfig(kubeconfig)
	if errors.Is(err, controller.ErrNoClusterConfig) {
		log.Warn("no cluster config (no --kubeconfig, not in a pod): the controller is off; envoy-config ConfigMaps are not managed")
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	cs, md, err := controller.NewClients(rc)
	if err != nil {
		return nil, err
	}
	return controller.New(cfg, cs, md, src, envoy.DefaultBootstrapConfig(), reg, log)
}

// skipEvents turns the webhook's skips into the controller's Events.
type skipEvents struct{ rec *controller.Recorder }

func (s skipEvents) Skipped(k webhook.Skip) {
	s.rec.SkipEvent(controller.Skip{Namespace: k.Namespace, Pod: k.Pod, Owner: k.Owner, Reason: k.Reason, Message: k.Message, DryRun: k.DryRun})
}
