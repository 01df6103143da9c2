package imagebuild

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/google/go-containerregistry/pkg/authn"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// ReleaseConfig says what a release publishes and where.
type ReleaseConfig struct {
	// Registry is the registry and path the images and the chart go to:
	// <Registry>/sidecar-injector, <Registry>/iptables-init and
	// oci://<Registry>/charts/sidecar-injector.
	Registry     string
	ImagesDir    string // the layouts of `make images`
	ChartDir     string // the chart's source
	OutDir       string // where the packaged chart is written
	Version      string // image tag and the chart's appVersion (v1.2.3)
	ChartVersion string // SemVer without a v (1.2.3)
	Helm         string // the helm command
	// PlainHTTP speaks HTTP to the registry (a local one on 127.0.0.1).
	PlainHTTP bool
}

// Released is what a release pushed.
type Released struct {
	Images       map[string]v1.Hash `json:"images"` // image name -> index digest
	Chart        string             `json:"chart"`  // oci://<registry>/charts/sidecar-injector
	ChartVersion string             `json:"chartVersion"`
	ChartDigest  string             `json:"chartDigest"` // of the chart's OCI manifest, as helm push printed it
	ChartFile    string             `json:"chartFile"`   // the packaged chart
}

// Ref is an image's reference by digest.
func (r Released) Ref(registry, image string) string {
	return registry + "/" + image + "@" + r.Images[image].String()
}

// gitDescribeSuffix is what git describe adds after a tag: commits since
// it and the commit, and -dirty for local changes.
var gitDescribeSuffix = regexp.MustCompile(`(-\d+-g[0-9a-f]+|-dirty)$`)

var semver = regexp.MustCompile(`^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(-[0-9A-Za-z.-]+)?$`)

// ChartVersionFor gives the chart version of an image version: v1.2.3
// gives 1.2.3; anything else (a commit, a dirty tree) gives a pre-release
// of the chart's own version, 0.1.0-dev.bb23b21-dirty, which helm sorts
// before the release.
func ChartVersionFor(version, chartVersion string) string {
	v := strings.TrimPrefix(version, "v")
	if semver.MatchString(v) && !gitDescribeSuffix.MatchString(v) {
		return v
	}
	base, _, _ := strings.Cut(chartVersion, "-")
	clean := regexp.MustCompile(`[^0-9A-Za-z-]+`).ReplaceAllString(version, "-")
	return base + "-dev." + strings.Trim(clean, "-")
}

func (c ReleaseConfig) validate() error {
	var errs []error
	if c.Registry == "" || strings.Contains(c.Registry, "://") || strings.HasSuffix(c.Registry, "/") {
		errs = append(errs, fmt.Errorf("registry %q: want host[:port]/path without a scheme, such as ghcr.io/sidecar-injector", c.Registry))
	}
	if c.Version == "" {
		errs = append(errs, errors.New("version: want the image tag, such as v0.1.0"))
	}
	if !semver.MatchString(c.ChartVersion) {
		errs = append(errs, fmt.Errorf("chart version %q: want SemVer such as 0.1.0", c.ChartVersion))
	}
	return errors.Join(errs...)
}

// Release pushes the image layouts under their version tag and the chart
// (helm package + helm push) to the registry. Credentials come from the
// docker/helm configuration (`docker login`, `helm registry login`).
func Release(ctx context.Context, c ReleaseConfig) (Released, error) {
	out := Released{Images: map[string]v1.Hash{}, ChartVersion: c.ChartVersion}
	if err := c.validate(); err != nil {
		return out, err
	}
	for _, name := range []string{Injector, IptablesInit} {
		d, err := Push(ctx, filepath.Join(c.ImagesDir, name), c.Registry+"/"+name+":"+c.Version,
			remote.WithAuthFromKeychain(authn.DefaultKeychain))
		if err != nil {
			return out, err
		}
		out.Images[name] = d
	}
	if err := os.MkdirAll(c.OutDir, 0o755); err != nil {
		return out, err
	}
	helm := func(args ...string) (string, error) {
		cmd := exec.CommandContext(ctx, c.Helm, args...)
		var buf bytes.Buffer
		cmd.Stdout, cmd.Stderr = &buf, &buf
		if err := cmd.Run(); err != nil {
			return "", fmt.Errorf("helm %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(buf.String()))
		}
		return buf.String(), nil
	}
	if _, err := helm("package", c.ChartDir, "--version", c.ChartVersion, "--app-version", c.Version, "--destination", c.OutDir); err != nil {
		return out, err
	}
	out.ChartFile = filepath.Join(c.OutDir, "sidecar-injector-"+c.ChartVersion+".tgz")
	push := []string{"push", out.ChartFile, "oci://" + c.Registry + "/charts"}
	if c.PlainHTTP {
		push = append(push, "--plain-http")
	}
	pushed, err := helm(push...)
	if err != nil {
		return out, err
	}
	out.Chart = "oci://" + c.Registry + "/charts/sidecar-injector"
	if m := regexp.MustCompile(`Digest: (sha256:[0-9a-f]{64})`).FindStringSubmatch(pushed); m != nil {
		out.ChartDigest = m[1]
	}
	b, err := json.MarshalIndent(out, "", "  ")
	if err != nil {
		return out, err
	}
	return out, os.WriteFile(filepath.Join(c.OutDir, "release.json"), append(b, '\n'), 0o644)
}

// InstallArgs are the helm arguments that install a release from the
// registry with both images pinned by digest.
func (r Released) InstallArgs(registry string) []string {
	return []string{
		r.Chart, "--version", r.ChartVersion,
		"--set", "image.registry=" + registry, "--set", "image.repository=" + Injector,
		"--set", "image.digest=" + r.Images[Injector].String(),
		"--set", "proxy.initImage.registry=" + registry, "--set", "proxy.initImage.repository=" + IptablesInit,
		"--set", "proxy.initImage.digest=" + r.Images[IptablesInit].String(),
	}
}
