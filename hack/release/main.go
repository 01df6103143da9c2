// Command release publishes a release: the image layouts of `make images`
// pushed by their version tag, and the chart packaged and pushed as an OCI
// artifact. With --local it first starts an OCI registry on 127.0.0.1
// (go-containerregistry's implementation of the distribution API), pushes
// there, prints how to install from it, and serves until interrupted: the
// whole release flow rehearsed on a laptop (`make release-local`).
//
// Usage:
//
//	go run ./hack/release --registry ghcr.io/sidecar-injector --version v0.2.0
//	go run ./hack/release --local [--listen 127.0.0.1:5001] [--exit]
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/google/go-containerregistry/pkg/registry"
	"sigs.k8s.io/yaml"

	"github.com/sidecar-injector/sidecar-injector/internal/imagebuild"
)

type config struct {
	rel    imagebuild.ReleaseConfig
	local  bool
	listen string
	exit   bool
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "release:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout io.Writer) error {
	root, err := imagebuild.FindRepoRoot()
	if err != nil {
		return err
	}
	c := config{
		rel: imagebuild.ReleaseConfig{
			ImagesDir: filepath.Join(root, "bin", "images"),
			ChartDir:  filepath.Join(root, "charts", "sidecar-injector"),
			OutDir:    filepath.Join(root, "bin", "charts"),
			Helm:      "helm",
		},
		listen: "127.0.0.1:0",
	}
	fs := flag.NewFlagSet("release", flag.ContinueOnError)
	fs.StringVar(&c.rel.Registry, "registry", "", "registry and `path` to publish to (ghcr.io/sidecar-injector); --local sets it")
	fs.StringVar(&c.rel.Version, "version", "", "image tag and chart appVersion (default: the version bin/images was built with)")
	fs.StringVar(&c.rel.ChartVersion, "chart-version", "", "chart `semver` (default: the version without its v, or a -dev pre-release of Chart.yaml's)")
	fs.StringVar(&c.rel.ImagesDir, "images", c.rel.ImagesDir, "`dir` of the OCI layouts")
	fs.StringVar(&c.rel.OutDir, "out", c.rel.OutDir, "`dir` for the packaged chart")
	fs.StringVar(&c.rel.Helm, "helm", c.rel.Helm, "helm `command` (make release-local uses the one make tools builds)")
	fs.BoolVar(&c.rel.PlainHTTP, "plain-http", false, "speak plain HTTP to the registry")
	fs.BoolVar(&c.local, "local", false, "start an OCI registry on --listen and release to it")
	fs.StringVar(&c.listen, "listen", c.listen, "`address` of the --local registry (127.0.0.1 only)")
	fs.BoolVar(&c.exit, "exit", false, "with --local: exit after publishing instead of serving until interrupted")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if c.rel.Version == "" {
		idx, err := imagebuild.ReadLayout(filepath.Join(c.rel.ImagesDir, imagebuild.Injector))
		if err != nil {
			return err
		}
		m, err := idx.IndexManifest()
		if err != nil {
			return err
		}
		c.rel.Version = m.Annotations["org.opencontainers.image.version"]
	}
	if c.rel.ChartVersion == "" {
		b, err := os.ReadFile(filepath.Join(c.rel.ChartDir, "Chart.yaml"))
		if err != nil {
			return err
		}
		var chart struct{ Version string }
		if err := yaml.Unmarshal(b, &chart); err != nil {
			return fmt.Errorf("read Chart.yaml: %w", err)
		}
		c.rel.ChartVersion = imagebuild.ChartVersionFor(c.rel.Version, chart.Version)
	}

	var srv *http.Server
	if c.local {
		host, _, err := net.SplitHostPort(c.listen)
		if err != nil || net.ParseIP(host) == nil || !net.ParseIP(host).IsLoopback() {
			return fmt.Errorf("--listen %q: want a loopback address such as 127.0.0.1:5001", c.listen)
		}
		ln, err := net.Listen("tcp", c.listen)
		if err != nil {
			return err
		}
		srv = &http.Server{
			Handler:           registry.New(registry.Logger(log.New(io.Discard, "", 0))),
			ReadHeaderTimeout: 10 * time.Second,
		}
		go func() { _ = srv.Serve(ln) }()
		defer srv.Close()
		c.rel.Registry = ln.Addr().String()
		c.rel.PlainHTTP = true
	}
	if c.rel.Registry == "" {
		return errors.New("--registry: want where to publish (ghcr.io/sidecar-injector), or --local")
	}
	out, err := imagebuild.Release(ctx, c.rel)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "chart  %s --version %s (%s)\n", out.Chart, out.ChartVersion, out.ChartFile)
	for _, n := range []string{imagebuild.Injector, imagebuild.IptablesInit} {
		fmt.Fprintf(stdout, "image  %s\n", out.Ref(c.rel.Registry, n))
	}
	install := append([]string{"helm", "install", "sidecar-injector"}, out.InstallArgs(c.rel.Registry)...)
	install = append(install, "--namespace", "sidecar-injector", "--create-namespace")
	if c.rel.PlainHTTP {
		install = append(install, "--plain-http")
	}
	fmt.Fprintf(stdout, "install with:\n  %s\n", strings.Join(install, " "))
	if !c.local || c.exit {
		return nil
	}
	fmt.Fprintf(stdout, "serving the registry on %s until interrupted (a cluster pulls from it only if its nodes reach this address)\n", c.rel.Registry)
	<-ctx.Done()
	return nil
}
