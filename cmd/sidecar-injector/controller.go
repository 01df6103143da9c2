package main

import (
	"context"
	"fmt"

	"k8s.io/klog/v2"

	"github.com/sidecar-injector/sidecar-injector/internal/serverflags"
	"github.com/sidecar-injector/sidecar-injector/pkg/controller"
)

// runController is `sidecar-injector controller`: the only process with
// write access to the cluster. flags -> Config.Validate() -> run.
func runController(ctx context.Context, args []string, io stdio) error {
	cfg := controller.DefaultAppConfig()
	logCfg := serverflags.DefaultLogConfig()
	gc := serverflags.DefaultGCConfig(100)
	fs := newFlagSet("controller", io)
	cfg.AddFlags(fs)
	logCfg.AddFlags(fs)
	gc.AddFlags(fs)
	if err := serverflags.Parse(fs, args); err != nil {
		return err
	}
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("invalid flags:\n%w", err)
	}
	if err := gc.Validate(); err != nil {
		return err
	}
	log, err := logCfg.Logger(io.err)
	if err != nil {
		return err
	}
	gc.Apply(log)
	klog.SetSlogLogger(log) // client-go (leader election, informers) logs through klog
	return controller.RunApp(ctx, cfg, log)
}
