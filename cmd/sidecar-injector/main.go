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
	"os"
	"os/signal"
	"syscall"

	"github.com/sidecar-injector/sidecar-injector/internal/serverflags"
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
var errUsage = serverflags.ErrUsage

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
	return serverflags.NewFlagSet("sidecar-injector "+name, io.err)
}
