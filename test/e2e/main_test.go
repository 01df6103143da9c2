//go:build e2e

// Package e2e runs the injector against a real kube-apiserver, etcd and
// kube-controller-manager on 127.0.0.1 (package test/testenv): the apiserver
// calls our webhook, registered with clientConfig.url, and stores what its
// patches make. Run with `make e2e` (go test -tags e2e ./test/e2e/...).
//
// Isolation: every webhook configuration a test registers is scoped to
// namespaces carrying the label e2e.sidecar.io/scope=<scope>, so tests with
// different configurations run in parallel without seeing each other's.
// Apart from that extra namespaceSelector requirement, the configurations are
// exactly testenv.MutatingWebhookConfiguration's, as the chart installs them.
package e2e

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"testing"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/sidecar-injector/sidecar-injector/test/testenv"
)

// suite is the state TestMain sets up once per test binary.
type suite struct {
	cp       *testenv.ControlPlane
	restCfg  *rest.Config
	cs       kubernetes.Interface
	root     string       // the repository
	injector string       // the sidecar-injector binary under test
	webhook  string       // the sidecar-injector-webhook binary under test (the chart's webhook)
	dir      string       // scratch directory of the suite
	ca       *testenv.CA  // signs every webhook serving certificate
	main     *webhookProc // the webhook most tests share
	mainCtl  *ctlProc     // the controller beside it
	log      *slog.Logger
}

var env *suite

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	t0 := time.Now()
	s, cleanup, err := setup(ctx, log)
	defer cleanup()
	if err != nil {
		fmt.Fprintf(os.Stderr, "e2e setup: %v\n", err)
		return 1
	}
	env = s
	ready := time.Now()
	code := m.Run()
	log.Info("e2e timings", "setup", ready.Sub(t0).Round(time.Second), "tests", time.Since(ready).Round(time.Second), "total", time.Since(t0).Round(time.Second))
	if code != 0 {
		for _, p := range append(s.cp.Processes(), s.main.proc, s.mainCtl.proc) {
			fmt.Fprintf(os.Stderr, "\n--- last lines of %s (%s):\n%s\n", p.Name, p.LogFile, p.LogTail(25))
		}
	}
	return code
}

// setup builds and starts everything; cleanup undoes what it did, also on error.
func setup(ctx context.Context, log *slog.Logger) (*suite, func(), error) {
	var undo []func()
	cleanup := func() {
		for i := len(undo) - 1; i >= 0; i-- {
			undo[i]()
		}
	}
	bc := testenv.DefaultBuildConfig()
	bins, err := testenv.Build(ctx, bc, log)
	if err != nil {
		return nil, cleanup, err
	}
	cc := testenv.DefaultConfig()
	cc.KeepDir = os.Getenv("E2E_KEEP") != ""
	cp, err := testenv.Start(ctx, cc, bins, log)
	if err != nil {
		return nil, cleanup, err
	}
	undo = append(undo, func() {
		if err := cp.Stop(); err != nil {
			log.Error("stop control plane", "err", err)
		}
		if cc.KeepDir {
			log.Info("kept the control plane directory (E2E_KEEP)", "dir", cp.Dir)
		}
	})
	dir, err := os.MkdirTemp("", "sidecar-injector-e2e-")
	if err != nil {
		return nil, cleanup, err
	}
	undo = append(undo, func() {
		if !cc.KeepDir {
			os.RemoveAll(dir)
		}
	})
	wd, err := os.Getwd()
	if err != nil {
		return nil, cleanup, err
	}
	root, err := testenv.FindRepoRoot(wd)
	if err != nil {
		return nil, cleanup, err
	}
	start := time.Now()
	servers, err := testenv.BuildBinaries(ctx, "", root, dir)
	if err != nil {
		return nil, cleanup, err
	}
	log.Info("built sidecar-injector and sidecar-injector-webhook", "took", time.Since(start).Round(time.Millisecond))
	ca, err := testenv.NewCA("sidecar-injector-e2e-ca", 24*time.Hour)
	if err != nil {
		return nil, cleanup, err
	}
	restCfg := cp.RESTConfig()
	cs, err := kubernetes.NewForConfig(restCfg)
	if err != nil {
		return nil, cleanup, err
	}
	s := &suite{cp: cp, restCfg: restCfg, cs: cs, root: root, injector: servers.Injector, webhook: servers.Webhook, dir: dir, ca: ca, log: log}
	s.main, err = s.startWebhook(ctx, "main")
	if err != nil {
		return nil, cleanup, err
	}
	undo = append(undo, func() { _ = s.main.stop() })
	// The controller beside it: envoy-config and Events for the shared
	// webhook's namespaces. The controller tests run controllers of their
	// own on namespaces labelled e2e.sidecar.io/controller.
	s.mainCtl, err = s.startControllerProcess(ctx, "main", "--leader-elect=false",
		"--namespace-selector", "!e2e.sidecar.io/controller")
	if err != nil {
		return nil, cleanup, err
	}
	undo = append(undo, func() { _ = s.mainCtl.proc.Stop(10 * time.Second) })
	return s, cleanup, nil
}
