package main

import (
	"context"
	"fmt"
	"os"
	"runtime/pprof"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sidecar-injector/sidecar-injector/internal/serverflags"
	"github.com/sidecar-injector/sidecar-injector/pkg/xds"
)

// runXDS is `sidecar-injector xds`: flags -> Config.Validate() -> wire -> run.
func runXDS(ctx context.Context, args []string, io stdio) error {
	cfg := xds.DefaultConfig()
	// Measured with make bench-xds: the server holds little live memory per
	// proxy, and most of its CPU under a connection storm went to the GC.
	proc := serverflags.DefaultProcess(400)
	fs := newFlagSet("xds", io)
	cfg.AddFlags(fs)
	proc.AddFlags(fs)
	cpuProfile := ""
	fs.StringVar(&cpuProfile, "cpu-profile", "", "write a CPU profile of the whole run to this file (benchmarks)")
	if err := serverflags.Parse(fs, args); err != nil {
		return err
	}
	if err := cfg.Validate(); err != nil {
		return err
	}
	log, flushLog, err := proc.Start(io.err)
	if err != nil {
		return err
	}
	defer flushLog()
	reg := prometheus.NewRegistry()
	app, err := xds.New(cfg, log, reg, reg)
	if err != nil {
		return err
	}
	if cpuProfile != "" {
		stop, err := startXDSProfile(cpuProfile)
		if err != nil {
			return err
		}
		defer stop()
	}
	return app.Run(ctx)
}

// startXDSProfile starts a CPU profile written to path when stop is called.
func startXDSProfile(path string) (stop func(), err error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("--cpu-profile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("--cpu-profile: %w", err)
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}, nil
}
