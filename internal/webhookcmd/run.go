// Package webhookcmd is the webhook server's command line: flags ->
// Config.Validate() -> wire -> run. The lean binary
// cmd/sidecar-injector-webhook (which the chart runs) and `sidecar-injector
// webhook` both call Run. It must not link the controller, the xDS server
// or the typed Kubernetes clientset: TestWebhookBinaryIsLean holds that.
package webhookcmd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"runtime"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/rest"
	"k8s.io/klog/v2"

	"github.com/sidecar-injector/sidecar-injector/internal/kubeconfig"
	"github.com/sidecar-injector/sidecar-injector/internal/serverflags"
	"github.com/sidecar-injector/sidecar-injector/internal/version"
	"github.com/sidecar-injector/sidecar-injector/pkg/nsview"
	"github.com/sidecar-injector/sidecar-injector/pkg/webhook"
)

// DefaultGCPercent is the webhook's --gc-percent. Its live heap is small
// (2-3 MiB), so its heap goal is the runtime's floor of 4 MiB × GOGC/100:
// 200 (the setting before the webhook had its own binary) let the heap reach
// 8 MiB and the process 30-32 MiB under the benchmark's load; 150 keeps it at
// 28-29.5 MiB (test/memory TestWebhookLeanUnderLoad) for a few percent more
// collector CPU, within the run-to-run noise of make bench-webhook.
const DefaultGCPercent = 150

// Run serves the mutating admission webhook until ctx is done (SIGTERM);
// then shuts down gracefully. name is the command as the user typed it (for
// the usage), args its flags; --version prints to stdout, the usage and the
// logs go to stderr. With a cluster config it also watches namespaces and
// envoy-config ConfigMaps, read-only, for its admission warnings; without
// one it injects all the same. A bad flag is serverflags.ErrUsage, -h
// flag.ErrHelp.
func Run(ctx context.Context, name string, args []string, stdout, stderr io.Writer) error {
	cfg := webhook.DefaultConfig()
	proc := serverflags.DefaultProcess(DefaultGCPercent)
	fs := serverflags.NewFlagSet(name, stderr)
	cfg.AddFlags(fs)
	proc.AddFlags(fs)
	printVersion := fs.Bool("version", false, "print the version and exit")
	if err := serverflags.Parse(fs, args); err != nil {
		return err
	}
	if *printVersion {
		_, err := fmt.Fprintf(stdout, "%s %s (%s, %s/%s)\n", name, version.Get(), runtime.Version(), runtime.GOOS, runtime.GOARCH)
		return err
	}
	// The runtime's memory limit first: the request caps are checked
	// against it.
	log, flushLog, err := proc.Start(stderr)
	if err != nil {
		return err
	}
	defer flushLog()
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("invalid flags:\n%w", err)
	}
	klog.SetSlogLogger(log) // client-go logs through klog

	// The cluster, if any: read once, for the version and the view.
	cluster, err := kubeconfig.Load(cfg.Kubeconfig)
	switch {
	case errors.Is(err, kubeconfig.ErrNoClusterConfig):
		cluster = nil
	case err != nil:
		return err
	}

	// Native sidecars: from the cluster version when a cluster config is
	// available. If the version cannot be read, the classic layout (which
	// works on every version) is the safe choice.
	detectCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	native, err := webhook.NativeSidecarSupport(detectCtx, cluster, 3)
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
	view, err := newNamespaceView(cluster, log)
	if err != nil {
		return err
	}
	deps := webhook.Deps{
		Log:                    log,
		Metrics:                webhook.NewMetrics(reg),
		Gatherer:               reg,
		NativeSidecarSupported: native,
	}
	if view != nil {
		deps.Namespaces = view
		deps.Labels = view
	}
	srv, err := webhook.New(cfg, deps)
	if err != nil {
		return err
	}
	log.Info("starting", "version", version.Get(), "namespace_view", view != nil)
	if view == nil {
		return srv.Run(ctx)
	}
	return runBoth(ctx, srv.Run, view.Run)
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

// newNamespaceView builds the webhook's read-only view of namespaces and
// envoy-config ConfigMaps of the cluster; nil without a cluster config
// (the webhook run on a laptop): injection works alone.
func newNamespaceView(cluster *rest.Config, log *slog.Logger) (*nsview.View, error) {
	if cluster == nil {
		log.Info("no cluster config (no --kubeconfig, not in a pod): no envoy-config or Pod Security warnings at admission")
		return nil, nil
	}
	rc := rest.CopyConfig(cluster)
	rc.UserAgent = "sidecar-injector-webhook"
	md, err := metadata.NewForConfig(rc)
	if err != nil {
		return nil, fmt.Errorf("kubernetes client for %s: %w", rc.Host, err)
	}
	return nsview.NewView(md, log)
}
