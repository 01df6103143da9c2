package main

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/sidecar-injector/sidecar-injector/internal/version"
)

// newRootCmd builds the command tree. cobra gives what kubectl, helm,
// istioctl and linkerd users expect: help on standard output when asked,
// `help <command>`, --version, shell completion and every flag in -h.
func newRootCmd(ctx context.Context, io stdio) *cobra.Command {
	root := &cobra.Command{
		Use:   "sidecar-injector",
		Short: "Envoy sidecar injector for Kubernetes",
		Long: "sidecar-injector injects an Envoy sidecar with traffic redirection into Kubernetes pods.\n\n" +
			"In the cluster it runs as an admission webhook (webhook) and an xDS server (xds);\n" +
			"offline, inject, uninject and explain work on manifests the way the webhook would.",
		Version:           versionLine(),
		SilenceErrors:     true,
		SilenceUsage:      true,
		CompletionOptions: cobra.CompletionOptions{HiddenDefaultCmd: false},
		RunE: func(cmd *cobra.Command, args []string) error {
			// No command: the usage on standard error, exit 2.
			cmd.SetOut(io.err)
			return cmd.Usage()
		},
	}
	root.SetVersionTemplate("{{.Version}}\n")
	root.SetIn(io.in)
	root.SetOut(io.out)
	root.SetErr(io.err)
	root.SetContext(ctx)
	root.SetFlagErrorFunc(func(cmd *cobra.Command, err error) error {
		return usageError{err}
	})

	for _, name := range slices.Sorted(mapKeys(commands())) {
		root.AddCommand(flagSetCommand(ctx, name, commands()[name], io))
	}
	root.AddCommand(newInjectCmd(io), newUninjectCmd(io), newExplainCmd(io), newVersionCmd(io))
	return root
}

// usageError is a flag or argument mistake: exit 2.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func isCobraUsageError(err error) bool {
	var ue usageError
	if errors.As(err, &ue) {
		return true
	}
	msg := err.Error()
	return strings.HasPrefix(msg, "unknown command") || strings.HasPrefix(msg, "unknown flag") ||
		strings.HasPrefix(msg, "unknown shorthand flag") || strings.Contains(msg, "accepts ") && strings.Contains(msg, " arg(s)") ||
		strings.HasPrefix(msg, "invalid argument")
}

func mapKeys[K comparable, V any](m map[K]V) func(func(K) bool) {
	return func(yield func(K) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// flagSetCommand wraps a command that parses its own flags with a Go
// flag.FlagSet (the servers). -h and `help <command>` print its flags on
// standard output.
func flagSetCommand(ctx context.Context, name string, c command, io stdio) *cobra.Command {
	cmd := &cobra.Command{
		Use:                name + " [flags]",
		Short:              c.summary,
		DisableFlagParsing: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			sio := io
			if helpRequested(args) {
				sio.err = io.out // asked for: the usage goes to standard output
			}
			return c.run(cmd.Context(), args, sio)
		},
	}
	cmd.SetHelpFunc(func(cmd *cobra.Command, _ []string) {
		_ = c.run(ctx, []string{"-h"}, stdio{in: io.in, out: io.out, err: io.out})
	})
	return cmd
}

// helpRequested says whether a Go flag set will see -h or --help.
func helpRequested(args []string) bool {
	for _, a := range args {
		switch a {
		case "--":
			return false
		case "-h", "-help", "--help", "--h":
			return true
		}
	}
	return false
}

func versionLine() string {
	return fmt.Sprintf("sidecar-injector %s (%s, %s/%s)", version.Get(), runtime.Version(), runtime.GOOS, runtime.GOARCH)
}

func newVersionCmd(io stdio) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "print the version",
		Args:  noArgs,
		RunE: func(*cobra.Command, []string) error {
			_, err := fmt.Fprintln(io.out, versionLine())
			return err
		},
	}
}

// noArgs refuses positional arguments as a usage error.
func noArgs(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		return usageError{fmt.Errorf("unexpected arguments %q: %s takes flags only", args, cmd.CommandPath())}
	}
	return nil
}
