// Package imagebuild builds the project's OCI images without a container
// engine: static Go binaries cross-compiled for each platform, the
// iptables-init image's iptables from Debian packages, deterministic layers
// (sorted entries, owner 0:0, normalised modes, every time set to
// SOURCE_DATE_EPOCH), an image index per image written as an OCI image
// layout, and an SPDX SBOM beside it. The same commit gives the same
// digests.
package imagebuild

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Module is the Go module path; the source URL and the release registry
// path follow from it.
const Module = "github.com/sidecar-injector/sidecar-injector"

// Image names.
const (
	Injector     = "sidecar-injector"
	IptablesInit = "iptables-init"
)

// Paths inside the images.
const (
	InjectorBinary     = "/sidecar-injector"
	WebhookBinary      = "/sidecar-injector-webhook"
	IptablesInitBinary = "/usr/local/bin/iptables-init"
	// XtablesLockfile is where legacy iptables takes its lock: /run is on
	// the read-only root filesystem the chart asks for, /dev/shm is a
	// writable tmpfs in every pod (iptables-init's error for a lock file
	// that cannot be created points at this setting).
	XtablesLockfile = "/dev/shm/xtables.lock"
	// NonRootUser is the injector's user and group: no name, no home.
	NonRootUser = "65532:65532"
)

// Config says what to build and where.
type Config struct {
	RepoRoot        string   // the module's root; default: found from the working directory
	OutDir          string   // layouts and SBOMs; default RepoRoot/bin/images
	CacheDir        string   // Go builds, apt state, .debs; default RepoRoot/.cache/images
	Platforms       []string // os/arch
	Images          []string // which images
	Version         string   // default: git describe --tags --always --dirty
	Revision        string   // default: git rev-parse HEAD
	SourceDateEpoch int64    // default: $SOURCE_DATE_EPOCH, else the commit time
	Go              string   // the go command
	AptUpdate       bool     // refresh Debian's package index first
}

// DefaultConfig builds both images for linux/amd64 and linux/arm64.
func DefaultConfig() Config {
	return Config{
		Platforms: []string{"linux/amd64", "linux/arm64"},
		Images:    []string{Injector, IptablesInit},
		Go:        "go",
	}
}

type listFlag struct{ l *[]string }

func (f listFlag) String() string {
	if f.l == nil {
		return ""
	}
	return strings.Join(*f.l, ",")
}
func (f listFlag) Set(s string) error {
	*f.l = nil
	for _, v := range strings.Split(s, ",") {
		if v = strings.TrimSpace(v); v != "" {
			*f.l = append(*f.l, v)
		}
	}
	return nil
}

// AddFlags registers the build flags.
func (c *Config) AddFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.RepoRoot, "repo-root", c.RepoRoot, "the repository `dir` (default: found from the working directory)")
	fs.StringVar(&c.OutDir, "out", c.OutDir, "output `dir` for the OCI layouts and SBOMs (default: REPO/bin/images)")
	fs.StringVar(&c.CacheDir, "cache-dir", c.CacheDir, "cache `dir` for Go builds, apt state and .debs (default: REPO/.cache/images)")
	fs.Var(listFlag{&c.Platforms}, "platforms", "comma-separated `os/arch` list")
	fs.Var(listFlag{&c.Images}, "images", "comma-separated image `names` ("+Injector+", "+IptablesInit+")")
	fs.StringVar(&c.Version, "version", c.Version, "image `version` (default: git describe --tags --always --dirty)")
	fs.StringVar(&c.Revision, "revision", c.Revision, "source `commit` (default: git rev-parse HEAD)")
	fs.Int64Var(&c.SourceDateEpoch, "source-date-epoch", c.SourceDateEpoch, "`seconds` since 1970 for every time in the images (default: $SOURCE_DATE_EPOCH, else the commit time)")
	fs.StringVar(&c.Go, "go", c.Go, "go `command`")
	fs.BoolVar(&c.AptUpdate, "apt-update", c.AptUpdate, "refresh Debian's package index before downloading (otherwise only when missing or stale)")
}

// Validate checks the settings that need no repository to check.
func (c Config) Validate() error {
	var errs []error
	if len(c.Platforms) == 0 {
		errs = append(errs, errors.New("--platforms: want at least one os/arch"))
	}
	for _, p := range c.Platforms {
		os, arch, ok := strings.Cut(p, "/")
		if !ok || os != "linux" || arch == "" || strings.Contains(arch, "/") {
			errs = append(errs, fmt.Errorf("--platforms: %q: want linux/ARCH (linux/amd64, linux/arm64)", p))
			continue
		}
		if _, err := debArch(arch); err != nil {
			errs = append(errs, fmt.Errorf("--platforms: %q: %w", p, err))
		}
	}
	if len(c.Images) == 0 {
		errs = append(errs, errors.New("--images: want at least one image"))
	}
	for _, n := range c.Images {
		if n != Injector && n != IptablesInit {
			errs = append(errs, fmt.Errorf("--images: %q: want %s or %s", n, Injector, IptablesInit))
		}
	}
	if c.SourceDateEpoch < 0 {
		errs = append(errs, errors.New("--source-date-epoch: want seconds since 1970, not negative"))
	}
	return errors.Join(errs...)
}

// complete fills the defaults that need the repository.
func (c *Config) complete(ctx context.Context) error {
	if c.RepoRoot == "" {
		root, err := FindRepoRoot()
		if err != nil {
			return err
		}
		c.RepoRoot = root
	}
	if c.OutDir == "" {
		c.OutDir = filepath.Join(c.RepoRoot, "bin", "images")
	}
	if c.CacheDir == "" {
		c.CacheDir = filepath.Join(c.RepoRoot, ".cache", "images")
	}
	git := func(args ...string) string {
		cmd := exec.CommandContext(ctx, "git", args...)
		cmd.Dir = c.RepoRoot
		out, err := cmd.Output()
		if err != nil {
			return ""
		}
		return strings.TrimSpace(string(out))
	}
	if c.Version == "" {
		c.Version = git("describe", "--tags", "--always", "--dirty")
		if c.Version == "" {
			c.Version = "dev"
		}
	}
	if c.Revision == "" {
		c.Revision = git("rev-parse", "HEAD")
	}
	if c.SourceDateEpoch == 0 {
		s := os.Getenv("SOURCE_DATE_EPOCH")
		if s == "" {
			s = git("log", "-1", "--format=%ct")
		}
		if s == "" {
			return errors.New("no SOURCE_DATE_EPOCH and no git commit to take it from: set SOURCE_DATE_EPOCH or --source-date-epoch")
		}
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n < 0 {
			return fmt.Errorf("SOURCE_DATE_EPOCH=%q: want seconds since 1970", s)
		}
		c.SourceDateEpoch = n
	}
	return nil
}

// FindRepoRoot walks up from the working directory to the go.mod of Module.
func FindRepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && strings.HasPrefix(string(b), "module "+Module+"\n") {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no go.mod of %s above the working directory: run from the repository or pass --repo-root", Module)
		}
		dir = parent
	}
}

// Result is one built image.
type Result struct {
	Name      string
	Layout    string             // the OCI layout directory
	SBOM      string             // the SPDX JSON file
	Digest    v1.Hash            // of the image index
	Manifests map[string]v1.Hash // platform -> image manifest digest
	Debs      []debPackage
}

// Build builds the configured images. The layouts replace any earlier ones.
func Build(ctx context.Context, cfg Config, log *slog.Logger) ([]Result, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if err := cfg.complete(ctx); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.OutDir, 0o755); err != nil {
		return nil, err
	}
	mtime := time.Unix(cfg.SourceDateEpoch, 0).UTC()
	b := builder{cfg: cfg, log: log, mtime: mtime, bins: map[string]string{}}
	var results []Result
	for _, name := range cfg.Images {
		r, err := b.image(ctx, name)
		if err != nil {
			return nil, fmt.Errorf("image %s: %w", name, err)
		}
		results = append(results, r)
	}
	return results, nil
}

type builder struct {
	cfg   Config
	log   *slog.Logger
	mtime time.Time
	bins  map[string]string // "pkg os/arch" -> built binary
}

// goBinary cross-compiles a static binary, as `make build` does.
func (b *builder) goBinary(ctx context.Context, pkg, platform string) (string, error) {
	key := pkg + " " + platform
	if f, ok := b.bins[key]; ok {
		return f, nil
	}
	goos, goarch, _ := strings.Cut(platform, "/")
	out := filepath.Join(b.cfg.CacheDir, "build", goos+"_"+goarch, filepath.Base(pkg))
	ldflags := "-s -w -X " + Module + "/internal/version.version=" + b.cfg.Version
	cmd := exec.CommandContext(ctx, b.cfg.Go, "build", "-trimpath", "-ldflags", ldflags, "-o", out, pkg)
	cmd.Dir = b.cfg.RepoRoot
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS="+goos, "GOARCH="+goarch, "GOFLAGS=")
	b.log.Info("go build", "package", pkg, "platform", platform)
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build %s for %s: %w: %s", pkg, platform, err, lastLines(string(out), 10))
	}
	b.bins[key] = out
	return out, nil
}

func (b *builder) licenses(r rootfs) error {
	for _, f := range []string{"LICENSE", "NOTICE"} {
		data, err := os.ReadFile(filepath.Join(b.cfg.RepoRoot, f))
		if err != nil {
			return fmt.Errorf("the image carries %s: %w", f, err)
		}
		if err := r.addFile("licenses/"+f, data, false); err != nil {
			return err
		}
	}
	return nil
}

// annotations are the org.opencontainers.image.* keys of every manifest,
// the index and (as labels) the config.
func (b *builder) annotations(name, description, licenses string) map[string]string {
	return map[string]string{
		"org.opencontainers.image.title":       name,
		"org.opencontainers.image.description": description,
		"org.opencontainers.image.source":      "https://" + Module,
		"org.opencontainers.image.url":         "https://" + Module,
		"org.opencontainers.image.revision":    b.cfg.Revision,
		"org.opencontainers.image.version":     b.cfg.Version,
		"org.opencontainers.image.licenses":    licenses,
		"org.opencontainers.image.created":     b.mtime.Format(time.RFC3339),
	}
}

func (b *builder) image(ctx context.Context, name string) (Result, error) {
	res := Result{Name: name, Manifests: map[string]v1.Hash{}}
	// binaries: the Go packages of the image, the first its entrypoint.
	type binary struct{ pkg, path string }
	var (
		bins                        []binary
		description, licenses, user string
		env                         []string
	)
	switch name {
	case Injector:
		// The webhook runs its own lean binary (sidecar-injector-webhook);
		// xds, controller and the CLI run sidecar-injector.
		bins, user = []binary{{"./cmd/sidecar-injector", InjectorBinary}, {"./cmd/sidecar-injector-webhook", WebhookBinary}}, NonRootUser
		description = "sidecar-injector: the admission webhook, xDS server and controller of the Envoy sidecar injector"
		licenses = "Apache-2.0"
	case IptablesInit:
		bins, user = []binary{{"./iptables-init", IptablesInitBinary}}, "0:0"
		description = "iptables-init: the init container that redirects a pod's TCP traffic through its Envoy sidecar (iptables nft and legacy)"
		licenses = "Apache-2.0 AND GPL-2.0-or-later AND LGPL-2.1-or-later"
		env = []string{"XTABLES_LOCKFILE=" + XtablesLockfile}
	}
	env = append([]string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}, env...)
	ann := b.annotations(name, description, licenses)

	idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	var sbom sbomDoc
	sbom.init(name, b.cfg, b.mtime)
	for _, platform := range b.cfg.Platforms {
		goos, goarch, _ := strings.Cut(platform, "/")
		fs := rootfs{}
		var built []string
		for _, bin := range bins {
			file, err := b.goBinary(ctx, bin.pkg, platform)
			if err != nil {
				return res, err
			}
			data, err := os.ReadFile(file)
			if err != nil {
				return res, err
			}
			if err := fs.addFile(bin.path, data, true); err != nil {
				return res, err
			}
			built = append(built, file)
		}
		if err := b.licenses(fs); err != nil {
			return res, err
		}
		var debs []debPackage
		var err error
		if name == IptablesInit {
			arch, _ := debArch(goarch)
			a := apt{dir: filepath.Join(b.cfg.CacheDir, "apt", arch), arch: arch, log: b.log}
			if debs, err = a.download(ctx, iptablesPackages, b.cfg.AptUpdate); err != nil {
				return res, err
			}
			for _, d := range debs {
				if err := fs.addDeb(ctx, d); err != nil {
					return res, err
				}
			}
			if err := fs.mergeUsr(); err != nil {
				return res, err
			}
			fs.pruneDangling()
			res.Debs = append(res.Debs, debs...)
		}
		layerTar, err := fs.tar(b.mtime)
		if err != nil {
			return res, err
		}
		layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
			return io.NopCloser(bytes.NewReader(layerTar)), nil
		}, tarball.WithMediaType(types.OCILayer), tarball.WithCompressionLevel(gzip.DefaultCompression), tarball.WithCompressedCaching)
		if err != nil {
			return res, err
		}
		created := v1.Time{Time: b.mtime}
		img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
		img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
		img, err = mutate.ConfigFile(img, &v1.ConfigFile{
			Architecture: goarch, OS: goos, Created: created,
			Config: v1.Config{
				User: user, Entrypoint: []string{bins[0].path}, Env: env, WorkingDir: "/", Labels: ann,
			},
			RootFS: v1.RootFS{Type: "layers"},
		})
		if err != nil {
			return res, err
		}
		img, err = mutate.Append(img, mutate.Addendum{
			Layer:   layer,
			History: v1.History{Created: created, CreatedBy: "hack/images (go-containerregistry)", Comment: name + " " + b.cfg.Version},
		})
		if err != nil {
			return res, err
		}
		img = mutate.Annotations(img, ann).(v1.Image)
		d, err := img.Digest()
		if err != nil {
			return res, err
		}
		res.Manifests[platform] = d
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{
			Add:        img,
			Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: goos, Architecture: goarch}},
		})
		if err := sbom.addPlatform(platform, d, built, debs); err != nil {
			return res, err
		}
	}
	idx = mutate.Annotations(idx, ann).(v1.ImageIndex)
	digest, err := idx.Digest()
	if err != nil {
		return res, err
	}
	res.Digest = digest

	res.Layout = filepath.Join(b.cfg.OutDir, name)
	if err := os.RemoveAll(res.Layout); err != nil {
		return res, err
	}
	p, err := layout.Write(res.Layout, mutate.IndexMediaType(empty.Index, types.OCIImageIndex))
	if err != nil {
		return res, fmt.Errorf("write layout %s: %w", res.Layout, err)
	}
	if err := p.AppendIndex(idx, layout.WithAnnotations(map[string]string{
		"org.opencontainers.image.ref.name": b.cfg.Version,
	})); err != nil {
		return res, fmt.Errorf("write layout %s: %w", res.Layout, err)
	}
	res.SBOM = filepath.Join(b.cfg.OutDir, name+".spdx.json")
	if err := sbom.write(res.SBOM, digest); err != nil {
		return res, err
	}
	slices.SortFunc(res.Debs, func(x, y debPackage) int {
		return strings.Compare(x.Arch+x.Name, y.Arch+y.Name)
	})
	b.log.Info("image written", "image", name, "digest", digest.String(), "layout", res.Layout, "sbom", res.SBOM)
	return res, nil
}
