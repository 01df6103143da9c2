// Command images builds the project's OCI images without a container
// engine (internal/imagebuild) into bin/images/<name>/ as OCI image
// layouts, with an SPDX SBOM beside each, and prints each index digest.
//
// Usage: go run ./hack/images [--platforms linux/amd64,linux/arm64] [--images sidecar-injector,iptables-init]
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/sidecar-injector/sidecar-injector/internal/imagebuild"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	cfg := imagebuild.DefaultConfig()
	fs := flag.NewFlagSet("images", flag.ExitOnError)
	cfg.AddFlags(fs)
	_ = fs.Parse(os.Args[1:])
	if err := cfg.Validate(); err != nil {
		fmt.Fprintln(os.Stderr, "images:", err)
		os.Exit(2)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	results, err := imagebuild.Build(ctx, cfg, log)
	if err != nil {
		fmt.Fprintln(os.Stderr, "images:", err)
		stop()
		os.Exit(1)
	}
	for _, r := range results {
		fmt.Printf("%s %s %s\n", r.Name, r.Digest, r.Layout)
	}
}
