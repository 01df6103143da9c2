// Package serverflags is the command-line plumbing every server binary
// shares: a flag set that returns its errors, the log flags, and the Go
// runtime's GC and memory-limit flags. It links nothing but the standard
// library, so the lean webhook binary can use it.
package serverflags

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime/debug"
)

// ErrUsage is returned after a usage message has been printed: exit 2.
var ErrUsage = errors.New("usage")

// NewFlagSet makes a server's flag set named name (as the user types it,
// "sidecar-injector xds"); parse errors are returned, the usage printed to w.
func NewFlagSet(name string, w io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(w)
	return fs
}

// Parse parses args; a bad flag or a positional argument is ErrUsage, -h is
// flag.ErrHelp.
func Parse(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return ErrUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(fs.Output(), "unexpected arguments: %v\n", fs.Args())
		fs.Usage()
		return ErrUsage
	}
	return nil
}

// LogConfig holds the log flags of a server.
type LogConfig struct{ Format, Level string }

// DefaultLogConfig is JSON at info.
func DefaultLogConfig() LogConfig { return LogConfig{Format: "json", Level: "info"} }

// AddFlags adds --log-format and --log-level.
func (c *LogConfig) AddFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.Format, "log-format", c.Format, "log `format`: json (in the cluster) or text (on a terminal)")
	fs.StringVar(&c.Level, "log-level", c.Level, "log `level`: debug, info, warn or error")
}

// Logger builds the slog logger writing to w, or says which flag is wrong.
func (c LogConfig) Logger(w io.Writer) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(c.Level)); err != nil {
		return nil, fmt.Errorf("--log-level=%q: want debug, info, warn or error", c.Level)
	}
	opts := &slog.HandlerOptions{Level: level}
	switch c.Format {
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("--log-format=%q: want json or text", c.Format)
}

// GCConfig is the garbage-collector setting of a server. A server that
// holds little live memory trades a little of it for a lot of CPU with a GC
// percent above Go's 100; a memory limit for the Go runtime (the chart
// passes the container's limit) keeps that safe.
type GCConfig struct {
	Percent int
	// MemoryLimit is the container's memory limit in bytes (0: none known).
	MemoryLimit int64
	// MemoryLimitPercent is the share of MemoryLimit the Go runtime may
	// use: the rest is for what the runtime does not count (the binary's
	// mapped pages and the OS threads' stacks), so the process as a whole
	// stays under the container's limit.
	MemoryLimitPercent int
}

// DefaultGCConfig is GC percent percent and 85% of the container's limit.
func DefaultGCConfig(percent int) GCConfig {
	return GCConfig{Percent: percent, MemoryLimitPercent: 85}
}

// AddFlags adds --gc-percent, --memory-limit and --memory-limit-percent.
func (c *GCConfig) AddFlags(fs *flag.FlagSet) {
	fs.IntVar(&c.Percent, "gc-percent", c.Percent, "Go GC target percentage (GOGC); the GOGC environment variable wins when set; -1 turns the collector off (not for production)")
	fs.Int64Var(&c.MemoryLimit, "memory-limit", c.MemoryLimit, "the container's memory limit in `bytes` (the chart passes limits.memory); the Go runtime keeps to --memory-limit-percent of it; GOMEMLIMIT wins when set; 0: no limit")
	fs.IntVar(&c.MemoryLimitPercent, "memory-limit-percent", c.MemoryLimitPercent, "share of --memory-limit the Go runtime may use, 50-100; the rest is for memory it does not count, such as the binary's own pages")
}

// Validate names every wrong flag.
func (c GCConfig) Validate() error {
	var errs []error
	if c.Percent < -1 || c.Percent == 0 || c.Percent > 10000 {
		errs = append(errs, fmt.Errorf("--gc-percent=%d: want 1-10000 (or -1)", c.Percent))
	}
	if c.MemoryLimit < 0 || (c.MemoryLimit > 0 && c.MemoryLimit < 16<<20) {
		errs = append(errs, fmt.Errorf("--memory-limit=%d: want 0 (none) or at least 16 MiB (%d bytes)", c.MemoryLimit, 16<<20))
	}
	if c.MemoryLimitPercent < 50 || c.MemoryLimitPercent > 100 {
		errs = append(errs, fmt.Errorf("--memory-limit-percent=%d: want 50-100", c.MemoryLimitPercent))
	}
	return errors.Join(errs...)
}

// Apply sets the GC percent unless GOGC is set in the environment, and the
// runtime's memory limit unless GOMEMLIMIT is.
func (c GCConfig) Apply(log *slog.Logger) {
	if env, ok := os.LookupEnv("GOGC"); ok {
		log.Info("GOGC is set in the environment; --gc-percent ignored", "GOGC", env)
	} else {
		debug.SetGCPercent(c.Percent)
	}
	switch env, ok := os.LookupEnv("GOMEMLIMIT"); {
	case ok:
		log.Info("GOMEMLIMIT is set in the environment; --memory-limit ignored", "GOMEMLIMIT", env)
	case c.MemoryLimit > 0:
		limit := c.MemoryLimit / 100 * int64(c.MemoryLimitPercent)
		debug.SetMemoryLimit(limit)
		log.Info("Go runtime memory limit set", "container_limit_bytes", c.MemoryLimit, "runtime_limit_bytes", limit)
	}
}

// Process holds the flags every server shares: its log, and the Go
// runtime's GC percent and memory limit.
type Process struct {
	Log LogConfig
	GC  GCConfig
}

// DefaultProcess is JSON logs at info and GC percent gcPercent.
func DefaultProcess(gcPercent int) Process {
	return Process{Log: DefaultLogConfig(), GC: DefaultGCConfig(gcPercent)}
}

// AddFlags adds the log flags and the GC flags.
func (p *Process) AddFlags(fs *flag.FlagSet) {
	p.Log.AddFlags(fs)
	p.GC.AddFlags(fs)
}

// Start checks the GC flags, builds the logger writing to w and sets the
// runtime's GC percent and memory limit. A server calls it before it
// checks what depends on the memory limit (the webhook's request caps).
// The logger batches its lines (logWriter); the server calls flush when it
// ends, before anything else writes to w.
func (p Process) Start(w io.Writer) (log *slog.Logger, flush func(), err error) {
	if err := p.GC.Validate(); err != nil {
		return nil, nil, fmt.Errorf("invalid flags:\n%w", err)
	}
	lw := newLogWriter(w)
	log, err = p.Log.Logger(lw)
	if err != nil {
		return nil, nil, err
	}
	log = slog.New(flushAtWarn{log.Handler(), lw})
	p.GC.Apply(log)
	return log, lw.Flush, nil
}
