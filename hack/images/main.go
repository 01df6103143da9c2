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
	"path/filepath"
	"syscall"

	"github.com/sidecar-injector/sidecar-injector/internal/imagebuild"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	cfg := imagebuild.DefaultConfig()
	fs := flag.NewFlagSet("images", flag.ExitOnError)
	cfg.AddFlags(fs)
	unpack := fs.String("unpack", "", "also unpack each image's root filesystem into `dir`/<name> (one platform only; the Dockerfiles use it)")
	_ = fs.Parse(os.Args[1:])
	err := cfg.Validate()
	if err == nil && *unpack != "" && len(cfg.Platforms) != 1 {
		err = fmt.Errorf("--unpack: want exactly one --platforms entry, got %d", len(cfg.Platforms))
	}
	if err != nil {
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
		if *unpack == "" {
			continue
		}
		if err := unpackImage(r, cfg.Platforms[0], filepath.Join(*unpack, r.Name)); err != nil {
			fmt.Fprintln(os.Stderr, "images:", err)
			stop()
			os.Exit(1)
		}
	}
}

func unpackImage(r imagebuild.Result, platform, dir string) error {
	idx, err := imagebuild.ReadLayout(r.Layout)
	if err != nil {
		return err
	}
	img, err := imagebuild.PlatformImage(idx, platform)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	return imagebuild.Unpack(img, dir)
}
