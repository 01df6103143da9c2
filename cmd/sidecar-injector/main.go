// Command sidecar-injector is the one binary of the project. Each subcommand
// lives in its own file; main only dispatches: flags -> Config.Validate() ->
// wire -> run -> exit code.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"
)

// stdio is what a subcommand reads and writes.
type stdio struct {
	in       io.Reader
	out, err io.Writer
}

// command is a subcommand that parses its own flags with a flag.FlagSet
// (the servers: their Configs have AddFlags(*flag.FlagSet)). The cobra tree
// of root.go wraps each one; adding a server is one line here.
type command struct {
	summary string
	run     func(ctx context.Context, args []string, io stdio) error
}

func commands() map[string]command {
	return map[string]command{
		"webhook": {"serve the mutating admission webhook", runWebhook},
		"xds":     {"serve Envoy configuration over ADS (gRPC)", runXDS},
		// The only process with write access to the cluster (controller.go).
		"controller": {"keep envoy-config in injected namespaces, record Events, count stale pods (leader-elected)", runController},
	}
}

// errUsage is returned after a usage message has been printed: exit 2.
var errUsage = errors.New("usage")

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], stdio{in: os.Stdin, out: os.Stdout, err: os.Stderr})
	stop()
	os.Exit(code)
}

// run executes the command line and returns the exit code: 0, 1 for a
// failure, 2 for a usage error.
func run(ctx context.Context, args []string, io stdio) int {
	root := newRootCmd(ctx, io)
	root.SetArgs(args)
	cmd, err := root.ExecuteC()
	switch {
	case err == nil:
		if len(args) == 0 {
			return 2 // the usage was printed: nothing to do
		}
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, errUsage):
		return 2
	case isCobraUsageError(err):
		fmt.Fprintf(io.err, "sidecar-injector: %v\n", err)
		fmt.Fprintf(io.err, "Run '%s --help' for usage.\n", cmd.CommandPath())
		return 2
	default:
		fmt.Fprintf(io.err, "%s: %v\n", cmd.CommandPath(), err)
		return 1
	}
}

// newFlagSet makes a subcommand's flag set; parse errors are returned, with
// the usage already printed to io.err.
func newFlagSet(name string, io stdio) *flag.FlagSet {
	fs := flag.NewFlagSet("sidecar-injector "+name, flag.ContinueOnError)
	fs.SetOutput(io.err)
	return fs
}

// parseFlags parses args; a bad flag is errUsage, -h is flag.ErrHelp.
func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return errUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(fs.Output(), "unexpected arguments: %v\n", fs.Args())
		fs.Usage()
		return errUsage
	}
	return nil
}

// logConfig holds the log flags of the serving subcommands.
type logConfig struct{ Format, Level string }

func defaultLogConfig() logConfig { return logConfig{Format: "json", Level: "info"} }

func (c *logConfig) AddFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.Format, "log-format", c.Format, "log `format`: json (in the cluster) or text (on a terminal)")
	fs.StringVar(&c.Level, "log-level", c.Level, "log `level`: debug, info, warn or error")
}

// logger builds the slog logger, or says which flag is wrong.
func (c logConfig) logger(w io.Writer) (*slog.Logger, error) {
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

// gcConfig is the garbage-collector setting of a serving subcommand. A
// server that holds little live memory trades a little of it for a lot of
// CPU with a GC percent above Go's 100; a memory limit for the Go runtime
// (the chart passes the container's limit) keeps that safe.
type gcConfig struct {
	Percent int
	// MemoryLimit is the container's memory limit in bytes (0: none known).
	MemoryLimit int64
	// MemoryLimitPercent is the share of MemoryLimit the Go runtime may
	// use: the rest is for what the runtime does not count (the binary's
	// mapped pages, some 40 MiB of it, and the OS threads' stacks), so the
	// process as a whole stays under the container's limit.
	MemoryLimitPercent int
}

func defaultGCConfig(percent int) gcConfig {
	return gcConfig{Percent: percent, MemoryLimitPercent: 85}
}

func (c *gcConfig) AddFlags(fs *flag.FlagSet) {
	fs.IntVar(&c.Percent, "gc-percent", c.Percent, "Go GC target percentage (GOGC); the GOGC environment variable wins when set; -1 turns the collector off (not for production)")
	fs.Int64Var(&c.MemoryLimit, "memory-limit", c.MemoryLimit, "the container's memory limit in `bytes` (the chart passes limits.memory); the Go runtime keeps to --memory-limit-percent of it; GOMEMLIMIT wins when set; 0: no limit")
	fs.IntVar(&c.MemoryLimitPercent, "memory-limit-percent", c.MemoryLimitPercent, "share of --memory-limit the Go runtime may use, 50-100; the rest is for memory it does not count, such as the binary's own pages")
}

func (c gcConfig) Validate() error {
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

// apply sets the GC percent unless GOGC is set in the environment, and the
// runtime's memory limit unless GOMEMLIMIT is.
func (c gcConfig) apply(log *slog.Logger) {
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
