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
	proc := serverflags.DefaultProcess(100)
	fs := newFlagSet("controller", io)
	cfg.AddFlags(fs)
	proc.AddFlags(fs)
	if err := serverflags.Parse(fs, args); err != nil {
		return err
	}
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("invalid flags:\n%w", err)
	}
	log, flushLog, err := proc.Start(io.err)
	if err != nil {
		return err
	}
	defer flushLog()
	klog.SetSlogLogger(log) // client-go (leader election, informers) logs through klog
	return controller.RunApp(ctx, cfg, log)
}
