package testenv

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"
)

// Modules and packages the tools modules pin (hack/tools/go.mod and
// hack/tools/etcd/go.mod are the source of truth for the versions).
const (
	kubernetesModule = "k8s.io/kubernetes"
	helmModule       = "helm.sh/helm/v3"
	etcdModule       = "go.etcd.io/etcd/server/v3"

	toolsDir     = "hack/tools"
	etcdToolsDir = "hack/tools/etcd"

	// builderRevision changes whenever the way the binaries are built
	// changes (flags, ldflags, targets), so cached binaries are rebuilt.
	builderRevision = "1"
)

// Binary names in the cache's bin directory.
const (
	BinEtcd                  = "etcd"
	BinKubeAPIServer         = "kube-apiserver"
	BinKubeControllerManager = "kube-controller-manager"
	BinKubectl               = "kubectl"
	BinHelm                  = "helm"
)

// BuildConfig says where the tools modules are and where binaries go.
type BuildConfig struct {
	// RepoRoot is the repository holding hack/tools. Empty: found by walking
	// up from the working directory.
	RepoRoot string
	// CacheDir is the cache root; binaries go to CacheDir/<kubernetes version>/bin.
	// Empty: ${XDG_CACHE_HOME:-$HOME/.cache}/sidecar-injector.
	CacheDir string
	// Go is the go command.
	Go string
	// Nice is the niceness of the builds (0 runs them at normal priority):
	// the first build takes minutes of every core.
	Nice int
	// ProgressInterval is how often a running build reports progress.
	ProgressInterval time.Duration
	// Timeout bounds the whole build.
	Timeout time.Duration
}

// DefaultBuildConfig returns the defaults: repository and cache found at
// run time, `go` from PATH, niceness 10, progress every 15 s, 40 min cap.
func DefaultBuildConfig() BuildConfig {
	return BuildConfig{Go: "go", Nice: 10, ProgressInterval: 15 * time.Second, Timeout: 40 * time.Minute}
}

// AddFlags registers the build flags.
func (c *BuildConfig) AddFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.RepoRoot, "repo-root", c.RepoRoot, "repository `dir` holding hack/tools (default: found from the working directory)")
	fs.StringVar(&c.CacheDir, "cache-dir", c.CacheDir, "cache `dir` for the built binaries (default: ${XDG_CACHE_HOME:-$HOME/.cache}/sidecar-injector)")
	fs.StringVar(&c.Go, "go", c.Go, "go `command` used to build")
	fs.IntVar(&c.Nice, "nice", c.Nice, "niceness of the builds, 0-19 (0: normal priority)")
	fs.DurationVar(&c.ProgressInterval, "progress-interval", c.ProgressInterval, "how often a running build prints progress")
	fs.DurationVar(&c.Timeout, "build-timeout", c.Timeout, "give up building after this long")
}

// Validate names every wrong field.
func (c BuildConfig) Validate() error {
	var errs []error
	if strings.TrimSpace(c.Go) == "" {
		errs = append(errs, errors.New("--go is empty: want the go command, such as go or /usr/local/go/bin/go"))
	}
	if c.Nice < 0 || c.Nice > 19 {
		errs = append(errs, fmt.Errorf("--nice=%d: want 0-19", c.Nice))
	}
	if c.ProgressInterval <= 0 {
		errs = append(errs, fmt.Errorf("--progress-interval=%s: want a positive duration such as 15s", c.ProgressInterval))
	}
	if c.Timeout <= 0 {
		errs = append(errs, fmt.Errorf("--build-timeout=%s: want a positive duration such as 40m", c.Timeout))
	}
	return errors.Join(errs...)
}

// Versions are the pinned component versions.
type Versions struct {
	Kubernetes string `json:"kubernetes"`
	Etcd       string `json:"etcd"`
	Helm       string `json:"helm"`
}

// Binaries are the built executables.
type Binaries struct {
	Dir                   string
	Etcd                  string
	KubeAPIServer         string
	KubeControllerManager string
	Kubectl               string
	Helm                  string
	Versions              Versions
}

func binariesIn(dir string, v Versions) Binaries {
	return Binaries{
		Dir:                   dir,
		Etcd:                  filepath.Join(dir, BinEtcd),
		KubeAPIServer:         filepath.Join(dir, BinKubeAPIServer),
		KubeControllerManager: filepath.Join(dir, BinKubeControllerManager),
		Kubectl:               filepath.Join(dir, BinKubectl),
		Helm:                  filepath.Join(dir, BinHelm),
		Versions:              v,
	}
}

func (b Binaries) all() []string {
	return []string{b.Etcd, b.KubeAPIServer, b.KubeControllerManager, b.Kubectl, b.Helm}
}

// target is one binary to build.
type target struct {
	name    string
	dir     string // module directory, relative to the repo root
	pkg     string
	ldflags []string
}

// targets lists what Build builds, with the version stamps: without them
// the apiserver reports v0.0.0 and Helm's .Capabilities.KubeVersion checks
// misfire.
func targets(v Versions) ([]target, error) {
	major, minor, err := majorMinor(v.Kubernetes)
	if err != nil {
		return nil, err
	}
	kube := []string{
		"-X", "k8s.io/component-base/version.gitVersion=" + v.Kubernetes,
		"-X", "k8s.io/component-base/version.gitMajor=" + major,
		"-X", "k8s.io/component-base/version.gitMinor=" + minor,
		"-X", "k8s.io/component-base/version.gitTreeState=clean",
		"-X", "k8s.io/client-go/pkg/version.gitVersion=" + v.Kubernetes,
		"-X", "k8s.io/client-go/pkg/version.gitMajor=" + major,
		"-X", "k8s.io/client-go/pkg/version.gitMinor=" + minor,
		"-X", "k8s.io/client-go/pkg/version.gitTreeState=clean",
	}
	helm := append(append([]string{}, kube...),
		"-X", "helm.sh/helm/v3/internal/version.version="+v.Helm,
		"-X", "helm.sh/helm/v3/internal/version.gitTreeState=clean",
		"-X", "helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor="+major,
		"-X", "helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor="+minor,
		"-X", "helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor="+major,
		"-X", "helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor="+minor,
	)
	return []target{
		{BinEtcd, etcdToolsDir, etcdModule, nil},
		{BinKubeAPIServer, toolsDir, kubernetesModule + "/cmd/kube-apiserver", kube},
		{BinKubeControllerManager, toolsDir, kubernetesModule + "/cmd/kube-controller-manager", kube},
		{BinKubectl, toolsDir, kubernetesModule + "/cmd/kubectl", kube},
		{BinHelm, toolsDir, helmModule + "/cmd/helm", helm},
	}, nil
}

// majorMinor splits "v1.37.2" into "1" and "37".
func majorMinor(version string) (string, string, error) {
	parts := strings.SplitN(strings.TrimPrefix(version, "v"), ".", 3)
	if !strings.HasPrefix(version, "v") || len(parts) != 3 || parts[0] == "" || parts[1] == "" {
		return "", "", fmt.Errorf("kubernetes version %q: want vMAJOR.MINOR.PATCH such as v1.37.2", version)
	}
	for _, p := range parts[:2] {
		for _, r := range p {
			if r < '0' || r > '9' {
				return "", "", fmt.Errorf("kubernetes version %q: want vMAJOR.MINOR.PATCH such as v1.37.2", version)
			}
		}
	}
	return parts[0], parts[1], nil
}

// FindRepoRoot walks up from dir to the directory that holds hack/tools/go.mod.
func FindRepoRoot(dir string) (string, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", fmt.Errorf("find repository root: %w", err)
	}
	for d, i := abs, 0; i < 64; i++ {
		if _, err := os.Stat(filepath.Join(d, toolsDir, "go.mod")); err == nil {
			return d, nil
		}
		parent := filepath.Dir(d)
		if parent == d {
			break
		}
		d = parent
	}
	return "", fmt.Errorf("no %s/go.mod in %s or any parent directory: run from inside the sidecar-injector repository or pass --repo-root", toolsDir, abs)
}

// DefaultCacheDir is ${XDG_CACHE_HOME:-$HOME/.cache}/sidecar-injector.
func DefaultCacheDir() (string, error) {
	if x := os.Getenv("XDG_CACHE_HOME"); x != "" {
		return filepath.Join(x, "sidecar-injector"), nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("cache directory: neither XDG_CACHE_HOME nor HOME is set: set one or pass --cache-dir: %w", err)
	}
	return filepath.Join(home, ".cache", "sidecar-injector"), nil
}

// Build returns the pinned binaries, building them first unless the cache
// already holds a build of exactly these tools modules with this Go. Two
// processes building at once wait for each other (a lock file).
func Build(ctx context.Context, cfg BuildConfig, log *slog.Logger) (Binaries, error) {
	if err := cfg.Validate(); err != nil {
		return Binaries{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	root := cfg.RepoRoot
	if root == "" {
		wd, err := os.Getwd()
		if err != nil {
			return Binaries{}, fmt.Errorf("find repository root: %w", err)
		}
		if root, err = FindRepoRoot(wd); err != nil {
			return Binaries{}, err
		}
	}
	cache := cfg.CacheDir
	if cache == "" {
		var err error
		if cache, err = DefaultCacheDir(); err != nil {
			return Binaries{}, err
		}
	}
	versions, err := readVersions(ctx, cfg.Go, root)
	if err != nil {
		return Binaries{}, err
	}
	key, err := buildKey(ctx, cfg.Go, root)
	if err != nil {
		return Binaries{}, err
	}
	verDir := filepath.Join(cache, versions.Kubernetes)
	bins := binariesIn(filepath.Join(verDir, "bin"), versions)
	if err := os.MkdirAll(verDir, 0o755); err != nil {
		return Binaries{}, fmt.Errorf("create cache directory: %w", err)
	}
	unlock, err := lockFile(ctx, filepath.Join(verDir, ".lock"), log)
	if err != nil {
		return Binaries{}, err
	}
	defer unlock()

	stampFile := filepath.Join(bins.Dir, ".stamp")
	if cached(stampFile, key, bins) {
		log.Info("using cached binaries", "dir", bins.Dir, "kubernetes", versions.Kubernetes, "etcd", versions.Etcd, "helm", versions.Helm)
		return bins, nil
	}
	tgts, err := targets(versions)
	if err != nil {
		return Binaries{}, err
	}
	log.Info("building the control plane binaries once; later runs reuse them",
		"dir", bins.Dir, "kubernetes", versions.Kubernetes, "etcd", versions.Etcd, "helm", versions.Helm,
		"note", "the first build takes several minutes")
	tmp, err := os.MkdirTemp(verDir, "build-")
	if err != nil {
		return Binaries{}, fmt.Errorf("create build directory: %w", err)
	}
	defer os.RemoveAll(tmp)
	// The stamp goes first so that a half-replaced bin directory is never
	// taken for a complete one.
	_ = os.Remove(stampFile)
	start := time.Now()
	for i, t := range tgts {
		if err := buildOne(ctx, cfg, root, tmp, t, fmt.Sprintf("%d/%d", i+1, len(tgts)), log); err != nil {
			return Binaries{}, err
		}
	}
	if err := os.MkdirAll(bins.Dir, 0o755); err != nil {
		return Binaries{}, fmt.Errorf("create bin directory: %w", err)
	}
	for _, t := range tgts {
		if err := os.Rename(filepath.Join(tmp, t.name), filepath.Join(bins.Dir, t.name)); err != nil {
			return Binaries{}, fmt.Errorf("install %s: %w", t.name, err)
		}
	}
	if err := os.WriteFile(stampFile, []byte(key+"\n"), 0o644); err != nil {
		return Binaries{}, fmt.Errorf("write build stamp: %w", err)
	}
	log.Info("built the control plane binaries", "dir", bins.Dir, "took", time.Since(start).Round(time.Second))
	return bins, nil
}

func cached(stampFile, key string, bins Binaries) bool {
	b, err := os.ReadFile(stampFile)
	if err != nil || strings.TrimSpace(string(b)) != key {
		return false
	}
	for _, f := range bins.all() {
		st, err := os.Stat(f)
		if err != nil || !st.Mode().IsRegular() || st.Mode().Perm()&0o111 == 0 {
			return false
		}
	}
	return true
}

// buildOne runs one `go build`, reporting progress from its -v output (one
// line per package compiled).
func buildOne(ctx context.Context, cfg BuildConfig, root, outDir string, t target, step string, log *slog.Logger) error {
	args := []string{"build", "-v", "-trimpath", "-ldflags", strings.Join(append([]string{"-s", "-w"}, t.ldflags...), " "), "-o", filepath.Join(outDir, t.name), t.pkg}
	name, argv := cfg.Go, args
	if cfg.Nice > 0 {
		if nice, err := exec.LookPath("nice"); err == nil {
			name, argv = nice, append([]string{"-n", fmt.Sprint(cfg.Nice), cfg.Go}, args...)
		}
	}
	cmd := exec.CommandContext(ctx, name, argv...)
	cmd.Dir = filepath.Join(root, t.dir)
	// Static binaries, as Kubernetes releases them; also no C toolchain needed.
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	pr, pw := io.Pipe()
	cmd.Stdout = pw
	cmd.Stderr = pw
	var packages atomic.Int64
	var tail tailBuffer
	done := make(chan struct{})
	go func() {
		defer close(done)
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			line := sc.Text()
			tail.add(line)
			if !strings.Contains(line, " ") {
				packages.Add(1)
			}
		}
		_, _ = io.Copy(io.Discard, pr)
	}()
	start := time.Now()
	log.Info("building", "step", step, "binary", t.name, "package", t.pkg)
	if err := cmd.Start(); err != nil {
		pw.Close()
		<-done
		return fmt.Errorf("build %s: start %s: %w (is Go installed and on PATH?)", t.name, cfg.Go, err)
	}
	waitErr := make(chan error, 1)
	go func() { waitErr <- cmd.Wait(); pw.Close() }()
	tick := time.NewTicker(cfg.ProgressInterval)
	defer tick.Stop()
	for {
		select {
		case err := <-waitErr:
			<-done
			if err != nil {
				if ctx.Err() != nil {
					return fmt.Errorf("build %s: %w", t.name, ctx.Err())
				}
				return fmt.Errorf("build %s (go build %s in %s): %w\n%s", t.name, t.pkg, t.dir, err, tail.String())
			}
			log.Info("built", "step", step, "binary", t.name, "packages_compiled", packages.Load(), "took", time.Since(start).Round(time.Second))
			return nil
		case <-tick.C:
			log.Info("still building", "step", step, "binary", t.name, "packages_compiled", packages.Load(), "elapsed", time.Since(start).Round(time.Second))
		}
	}
}

// readVersions reads the pinned versions from the tools modules' go.mod.
func readVersions(ctx context.Context, goCmd, root string) (Versions, error) {
	main, err := modRequires(ctx, goCmd, filepath.Join(root, toolsDir))
	if err != nil {
		return Versions{}, err
	}
	etcd, err := modRequires(ctx, goCmd, filepath.Join(root, etcdToolsDir))
	if err != nil {
		return Versions{}, err
	}
	v := Versions{Kubernetes: main[kubernetesModule], Helm: main[helmModule], Etcd: etcd[etcdModule]}
	for _, m := range []struct{ mod, dir, v string }{
		{kubernetesModule, toolsDir, v.Kubernetes}, {helmModule, toolsDir, v.Helm}, {etcdModule, etcdToolsDir, v.Etcd},
	} {
		if m.v == "" {
			return Versions{}, fmt.Errorf("%s/go.mod does not require %s: restore it from git", m.dir, m.mod)
		}
	}
	if _, _, err := majorMinor(v.Kubernetes); err != nil {
		return Versions{}, err
	}
	return v, nil
}

// modRequires returns module path -> version of a go.mod's require lines.
func modRequires(ctx context.Context, goCmd, dir string) (map[string]string, error) {
	cmd := exec.CommandContext(ctx, goCmd, "mod", "edit", "-json")
	cmd.Dir = dir
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("read %s/go.mod (go mod edit -json): %w: %s", dir, err, strings.TrimSpace(stderr.String()))
	}
	var mf struct {
		Require []struct{ Path, Version string }
	}
	if err := json.Unmarshal(out, &mf); err != nil {
		return nil, fmt.Errorf("read %s/go.mod: %w", dir, err)
	}
	m := make(map[string]string, len(mf.Require))
	for _, r := range mf.Require {
		m[r.Path] = r.Version
	}
	return m, nil
}

// buildKey identifies a build: the tools modules' go.mod and go.sum, the Go
// version and target platform, and builderRevision.
func buildKey(ctx context.Context, goCmd, root string) (string, error) {
	h := sha256.New()
	fmt.Fprintf(h, "builder %s\n", builderRevision)
	for _, f := range []string{"go.mod", "go.sum"} {
		for _, d := range []string{toolsDir, etcdToolsDir} {
			b, err := os.ReadFile(filepath.Join(root, d, f))
			if err != nil {
				return "", fmt.Errorf("read tools module: %w", err)
			}
			fmt.Fprintf(h, "%s/%s %d\n", d, f, len(b))
			h.Write(b)
		}
	}
	cmd := exec.CommandContext(ctx, goCmd, "env", "GOVERSION", "GOOS", "GOARCH")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("go env: %w (is Go installed and on PATH?)", err)
	}
	h.Write(out)
	return hex.EncodeToString(h.Sum(nil)), nil
}

// tailBuffer keeps the last lines of a build's output for error messages.
type tailBuffer struct {
	lines []string
}

const tailLines = 40

func (t *tailBuffer) add(line string) {
	t.lines = append(t.lines, line)
	if len(t.lines) > 2*tailLines {
		t.lines = append(t.lines[:0], t.lines[len(t.lines)-tailLines:]...)
	}
}

func (t *tailBuffer) String() string {
	l := t.lines
	if len(l) > tailLines {
		l = l[len(l)-tailLines:]
	}
	return strings.Join(l, "\n")
}

// ServerBinaries are the project's server binaries, built for a test run.
type ServerBinaries struct {
	// Injector is ./cmd/sidecar-injector (xds, controller, the CLI).
	Injector string
	// Webhook is ./cmd/sidecar-injector-webhook, the lean webhook binary
	// the chart runs.
	Webhook string
}

// BuildBinaries builds the project's binaries from the repository at root
// into dir with goTool ("go" from PATH when empty), without the race
// detector (they run as child processes).
func BuildBinaries(ctx context.Context, goTool, root, dir string) (ServerBinaries, error) {
	if goTool == "" {
		goTool = "go"
	}
	cmd := exec.CommandContext(ctx, goTool, "build", "-o", dir+string(filepath.Separator), "./cmd/sidecar-injector", "./cmd/sidecar-injector-webhook")
	cmd.Dir = root
	if b, err := cmd.CombinedOutput(); err != nil {
		return ServerBinaries{}, fmt.Errorf("go build ./cmd/sidecar-injector ./cmd/sidecar-injector-webhook: %w\n%s", err, b)
	}
	return ServerBinaries{Injector: filepath.Join(dir, "sidecar-injector"), Webhook: filepath.Join(dir, "sidecar-injector-webhook")}, nil
}
