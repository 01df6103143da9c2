package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"runtime/pprof"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/sidecar-injector/sidecar-injector/pkg/xds"
)

// runXDS is `sidecar-injector xds`: flags -> Config.Validate() -> wire -> run.
func runXDS(ctx context.Context, args []string, io stdio) error {
	cfg := xds.DefaultConfig()
	logCfg := xdsLogConfig{Format: "json", Level: "info"}
	fs := newFlagSet("xds", io)
	cfg.AddFlags(fs)
	fs.StringVar(&logCfg.Format, "log-format", logCfg.Format, "log format: json or text")
	fs.StringVar(&logCfg.Level, "log-level", logCfg.Level, "log level: debug, info, warn or error")
	cpuProfile := ""
	fs.StringVar(&cpuProfile, "cpu-profile", "", "write a CPU profile of the whole run to this file (benchmarks)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	log, err := logCfg.logger(io)
	if err != nil {
		return err
	}
	if err := cfg.Validate(); err != nil {
		return err
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
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

// xdsLogConfig holds the log flags of the xds command.
type xdsLogConfig struct{ Format, Level string }

func (c xdsLogConfig) logger(io stdio) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(c.Level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: want debug, info, warn or error", c.Level)
	}
	opts := &slog.HandlerOptions{Level: level}
	switch c.Format {
	case "json":
		return slog.New(slog.NewJSONHandler(io.err, opts)), nil
	case "text":
		return slog.New(slog.NewTextHandler(io.err, opts)), nil
	}
	return nil, fmt.Errorf("--log-format %q: want json or text", c.Format)
}
