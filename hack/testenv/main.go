// Command testenv builds (once, cached) and runs the local control plane of
// package test/testenv: etcd, kube-apiserver and kube-controller-manager on
// 127.0.0.1.
//
//	go run ./hack/testenv build      # build or find the binaries; print their directory
//	go run ./hack/testenv up         # start the control plane; Ctrl-C stops it
//	go run ./hack/testenv up --once  # start it, print how to use it, stop it
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
	"syscall"

	"github.com/sidecar-injector/sidecar-injector/internal/serverflags"
	"github.com/sidecar-injector/sidecar-injector/test/testenv"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
	case errors.Is(err, errUsage):
		os.Exit(2)
	default:
		fmt.Fprintf(os.Stderr, "testenv: %v\n", err)
		os.Exit(1)
	}
}

var errUsage = serverflags.ErrUsage

func usage(w io.Writer) {
	fmt.Fprint(w, `usage: go run ./hack/testenv <command> [flags]

commands:
  build   build the pinned control-plane binaries (once; cached) and print their directory
  up      start etcd, kube-apiserver and kube-controller-manager on 127.0.0.1 until Ctrl-C

Run 'go run ./hack/testenv <command> -h' for a command's flags.
`)
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		usage(stderr)
		return errUsage
	}
	log := slog.New(slog.NewTextHandler(stderr, nil))
	bc := testenv.DefaultBuildConfig()
	fs := flag.NewFlagSet("testenv "+args[0], flag.ContinueOnError)
	fs.SetOutput(stderr)
	bc.AddFlags(fs)
	switch args[0] {
	case "build":
		if err := serverflags.Parse(fs, args[1:]); err != nil {
			return err
		}
		bins, err := testenv.Build(ctx, bc, log)
		if err != nil {
			return err
		}
		fmt.Fprintln(stdout, bins.Dir)
		return nil
	case "up":
		cc := testenv.DefaultConfig()
		cc.AddFlags(fs)
		once := fs.Bool("once", false, "start, print how to use the cluster, then stop (for scripts and CI)")
		if err := serverflags.Parse(fs, args[1:]); err != nil {
			return err
		}
		if err := cc.Validate(); err != nil {
			return err
		}
		bins, err := testenv.Build(ctx, bc, log)
		if err != nil {
			return err
		}
		cp, err := testenv.Start(ctx, cc, bins, log)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "\nKubernetes %s is running at %s (etcd %s; logs in %s).\nUse it with:\n\n  export KUBECONFIG=%s\n  export PATH=%s:$PATH   # kubectl and helm %s\n  kubectl get namespaces\n\n",
			bins.Versions.Kubernetes, cp.APIServerURL, bins.Versions.Etcd, cp.LogDir(), cp.Kubeconfig, bins.Dir, bins.Versions.Helm)
		if !*once {
			fmt.Fprintln(stdout, "Press Ctrl-C to stop.")
			<-ctx.Done()
		}
		return cp.Stop()
	case "-h", "--help", "help":
		usage(stdout)
		return nil
	default:
		fmt.Fprintf(stderr, "testenv: unknown command %q\n\n", args[0])
		usage(stderr)
		return errUsage
	}
}
