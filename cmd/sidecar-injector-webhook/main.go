// Command sidecar-injector-webhook is the mutating admission webhook in a
// binary of its own: the same server as `sidecar-injector webhook`, linking
// only what the webhook needs (no controller, no xDS server, no Envoy
// protos, no typed Kubernetes clientset), so its process stays small. The
// chart runs this one. main only wires signals and the exit code.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/sidecar-injector/sidecar-injector/internal/serverflags"
	"github.com/sidecar-injector/sidecar-injector/internal/webhookcmd"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := webhookcmd.Run(ctx, "sidecar-injector-webhook", os.Args[1:], os.Stdout, os.Stderr)
	stop()
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
	case errors.Is(err, serverflags.ErrUsage):
		os.Exit(2)
	default:
		fmt.Fprintf(os.Stderr, "sidecar-injector-webhook: %v\n", err)
		os.Exit(1)
	}
}
