package imagebuild

// The images, proven without a container runtime: built for this machine's
// architecture (twice, to show the digests repeat), unpacked, the
// injector's entrypoint run with chroot as its user, and iptables-init's
// real-traffic tests (iptables-init/netns_test.go) run against the image's
// own program and iptables, chrooted into its root, for both backends.

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	testneed "github.com/sidecar-injector/sidecar-injector/internal/need"
)

// need fails in CI (internal/need: CI=true or SIDECAR_INJECTOR_REQUIRE_ALL=1) and skips,
// loudly, on a developer's machine, when the test cannot run here.
func need(t *testing.T, ok bool, msg string) {
	t.Helper()
	if ok {
		return
	}
	testneed.Unmet(t, "IMAGE TEST: %s", msg)
}

func requireImageBuild(t *testing.T) {
	t.Helper()
	need(t, os.Geteuid() == 0, "needs root (apt-get download into the repository cache, chroot, mounts, network namespaces)")
	for _, tool := range []string{"apt-get", "dpkg-deb", "chroot", "unshare", "ip", "setpriv", "go", "git"} {
		_, err := exec.LookPath(tool)
		need(t, err == nil, tool+" is not installed (make deps installs what the tests use)")
	}
}

const testVersion = "v0.0.0-imagetest"

func buildForTest(t *testing.T, ctx context.Context, out string) []Result {
	t.Helper()
	cfg := DefaultConfig()
	cfg.Platforms = []string{"linux/" + runtime.GOARCH}
	cfg.OutDir = out
	cfg.Version = testVersion
	cfg.Revision = "0123456789abcdef0123456789abcdef01234567"
	cfg.SourceDateEpoch = 1700000000
	log := slog.New(slog.NewTextHandler(testWriter{t}, nil))
	res, err := Build(ctx, cfg, log)
	if err != nil {
		t.Fatalf("build the images: %v", err)
	}
	return res
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(b)))
	return len(b), nil
}

func TestImagesWithoutRuntime(t *testing.T) {
	requireImageBuild(t)
	ctx, cancel := context.WithTimeout(t.Context(), 15*time.Minute)
	defer cancel()
	platform := "linux/" + runtime.GOARCH

	first := buildForTest(t, ctx, t.TempDir())
	second := buildForTest(t, ctx, t.TempDir())
	for i := range first {
		if first[i].Digest != second[i].Digest {
			t.Errorf("%s: two builds of the same tree give index digests %s and %s", first[i].Name, first[i].Digest, second[i].Digest)
		}
		a, _ := os.ReadFile(first[i].SBOM)
		b, _ := os.ReadFile(second[i].SBOM)
		if len(a) == 0 || !bytes.Equal(a, b) {
			t.Errorf("%s: the SBOMs of two builds differ (or are empty)", first[i].Name)
		}
	}
	byName := map[string]Result{}
	for _, r := range first {
		byName[r.Name] = r
	}

	t.Run(Injector, func(t *testing.T) {
		r := byName[Injector]
		img, cfg := openImage(t, r, platform)
		checkAnnotations(t, img, Injector)
		if cfg.Config.User != NonRootUser {
			t.Errorf("user %q, want %q", cfg.Config.User, NonRootUser)
		}
		root := t.TempDir()
		if err := Unpack(img, root); err != nil {
			t.Fatal(err)
		}
		entries, err := os.ReadDir(root)
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		if diff := slices.Compare(names, []string{"licenses", "sidecar-injector", "sidecar-injector-webhook"}); diff != 0 {
			t.Errorf("root holds %q, want only the two binaries and licenses/", names)
		}
		for _, f := range []string{"licenses/LICENSE", "licenses/NOTICE"} {
			if _, err := os.Stat(filepath.Join(root, f)); err != nil {
				t.Errorf("%s: %v", f, err)
			}
		}
		// The entrypoint, as the image's user, in the image's root.
		args := append([]string{"--userspec=" + cfg.Config.User, root}, cfg.Config.Entrypoint...)
		out, err := exec.CommandContext(ctx, "chroot", append(args, "version")...).CombinedOutput()
		if err != nil {
			t.Fatalf("chroot %s version: %v\n%s", strings.Join(args, " "), err, out)
		}
		if want := "sidecar-injector " + testVersion + " ("; !strings.HasPrefix(string(out), want) {
			t.Errorf("version printed %q, want it to start with %q", out, want)
		}
		// The webhook's own binary, which the chart runs.
		out, err = exec.CommandContext(ctx, "chroot", "--userspec="+cfg.Config.User, root, WebhookBinary, "--version").CombinedOutput()
		if err != nil {
			t.Fatalf("chroot %s %s --version: %v\n%s", root, WebhookBinary, err, out)
		}
		if want := "sidecar-injector-webhook " + testVersion + " ("; !strings.HasPrefix(string(out), want) {
			t.Errorf("%s --version printed %q, want it to start with %q", WebhookBinary, out, want)
		}
		checkSBOM(t, r.SBOM, "pkg:golang/k8s.io/client-go@", "pkg:golang/stdlib@")
	})

	t.Run(IptablesInit, func(t *testing.T) {
		r := byName[IptablesInit]
		img, cfg := openImage(t, r, platform)
		checkAnnotations(t, img, IptablesInit)
		if diff := slices.Compare(cfg.Config.Entrypoint, []string{IptablesInitBinary}); diff != 0 {
			t.Errorf("entrypoint %q, want [%s]", cfg.Config.Entrypoint, IptablesInitBinary)
		}
		if !slices.Contains(cfg.Config.Env, "XTABLES_LOCKFILE="+XtablesLockfile) {
			t.Errorf("env %q lacks XTABLES_LOCKFILE=%s (legacy iptables on a read-only root)", cfg.Config.Env, XtablesLockfile)
		}
		root := t.TempDir()
		if err := os.Chmod(root, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := Unpack(img, root); err != nil {
			t.Fatal(err)
		}
		for _, absent := range []string{"bin/sh", "usr/bin/sh", "bin/bash", "usr/bin/dash", "usr/bin/dpkg", "usr/bin/apt-get", "usr/bin/apt", "usr/bin/env"} {
			if _, err := os.Lstat(filepath.Join(root, absent)); err == nil {
				t.Errorf("/%s is in the image: it must hold no shell and no package manager", absent)
			}
		}
		for _, present := range []string{"usr/sbin/iptables-nft-restore", "usr/sbin/iptables-legacy-restore", "usr/sbin/ip6tables-nft-restore", "usr/sbin/ip6tables-legacy-restore", "usr/share/doc/iptables/copyright", "var/lib/dpkg/status.d/iptables", "licenses/NOTICE"} {
			if st, err := os.Stat(filepath.Join(root, present)); err != nil || !st.Mode().IsRegular() {
				t.Errorf("/%s: not a file in the image (%v)", present, err)
			}
		}
		checkSBOM(t, r.SBOM, "pkg:deb/debian/iptables@", "pkg:deb/debian/libnftnl11@", "pkg:golang/stdlib@")

		// What a container runtime gives every container: /proc, a /dev
		// with null and a writable /dev/shm; the root itself stays as
		// unpacked. (A fresh tmpfs for /dev, not a bind mount of the
		// machine's, so that cleaning up the root can never reach it.)
		mount := func(src, dir, fstype string) {
			target := filepath.Join(root, dir)
			if err := os.MkdirAll(target, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := unix.Mount(src, target, fstype, 0, ""); err != nil {
				t.Fatalf("mount %s on %s: %v", fstype, target, err)
			}
			t.Cleanup(func() {
				if err := unix.Unmount(target, unix.MNT_DETACH); err != nil {
					t.Errorf("unmount %s: %v", target, err)
				}
			})
		}
		mount("proc", "proc", "proc")
		mount("dev", "dev", "tmpfs")
		if err := unix.Mknod(filepath.Join(root, "dev/null"), unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))); err != nil {
			t.Fatal(err)
		}
		mount("shm", "dev/shm", "tmpfs")
		// The image's own iptables, both backends, from its own libraries.
		for _, tool := range []string{"iptables-nft", "iptables-legacy", "ip6tables-nft-restore", "ip6tables-legacy-restore"} {
			cmd := exec.CommandContext(ctx, "chroot", root, tool, "--version")
			cmd.Env = cfg.Config.Env
			out, err := cmd.CombinedOutput()
			if err != nil || !strings.Contains(string(out), "v1.") {
				t.Errorf("chroot %s %s --version: %v: %s", root, tool, err, out)
			} else {
				t.Logf("in the image: %s", strings.TrimSpace(string(out)))
			}
		}
		// Legacy iptables locks /run/xtables.lock unless XTABLES_LOCKFILE
		// says otherwise; a pod's read-only root offers no writable /run
		// (this image has none at all), so the image's setting is what
		// lets legacy restores run: with it, a restore in a fresh network
		// namespace works; without it, it fails on the lock file.
		legacyRestore := func(env []string) (string, error) {
			cmd := exec.CommandContext(ctx, "unshare", "--net", "chroot", root, "iptables-legacy-restore", "--noflush", "--wait=1")
			cmd.Env, cmd.Stdin = env, strings.NewReader("*nat\nCOMMIT\n")
			out, err := cmd.CombinedOutput()
			return string(out), err
		}
		if out, err := legacyRestore(cfg.Config.Env); err != nil {
			t.Errorf("iptables-legacy-restore in the image with its environment: %v: %s", err, out)
		}
		var noLockEnv []string
		for _, e := range cfg.Config.Env {
			if !strings.HasPrefix(e, "XTABLES_LOCKFILE=") {
				noLockEnv = append(noLockEnv, e)
			}
		}
		if out, err := legacyRestore(noLockEnv); err == nil || !strings.Contains(out, "lock") {
			t.Errorf("iptables-legacy-restore in the image without XTABLES_LOCKFILE: %v: %q; want a failure on the lock file", err, out)
		} else {
			t.Logf("without XTABLES_LOCKFILE: %s", strings.TrimSpace(out))
		}

		repo, err := FindRepoRoot()
		if err != nil {
			t.Fatal(err)
		}
		cmd := exec.CommandContext(ctx, "go", "test", "-count=1", "-v", "-run", "^(TestRealTraffic|TestDetectRealBackend)$", "./iptables-init")
		cmd.Dir = repo
		cmd.Env = append(os.Environ(),
			"IPTABLES_INIT_IMAGE_ROOT="+root,
			"IPTABLES_INIT_IMAGE_ENTRYPOINT="+cfg.Config.Entrypoint[0],
			"IPTABLES_INIT_IMAGE_ENV="+strings.Join(cfg.Config.Env, "\n"))
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("iptables-init's real-traffic tests against the image: %v\n%s", err, out)
		}
		for _, line := range strings.Split(string(out), "\n") {
			if strings.Contains(line, "--- ") || strings.HasPrefix(line, "ok") {
				t.Log("against the image: " + strings.TrimSpace(line))
			}
		}
		for _, w := range []string{"--- PASS: TestRealTraffic/nft ", "--- PASS: TestRealTraffic/legacy ", "--- PASS: TestDetectRealBackend "} {
			if !strings.Contains(string(out), w) {
				t.Errorf("the real-traffic run against the image lacks %q:\n%s", w, out)
			}
		}
		if strings.Contains(string(out), "--- SKIP") {
			t.Errorf("a real-traffic test skipped against the image:\n%s", out)
		}
	})
}

func openImage(t *testing.T, r Result, platform string) (v1.Image, *v1.ConfigFile) {
	t.Helper()
	idx, err := ReadLayout(r.Layout)
	if err != nil {
		t.Fatal(err)
	}
	if d, _ := idx.Digest(); d != r.Digest {
		t.Errorf("layout index digest %s, Build reported %s", d, r.Digest)
	}
	img, err := PlatformImage(idx, platform)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Created.Unix() != 1700000000 {
		t.Errorf("created %v, want SOURCE_DATE_EPOCH", cfg.Created)
	}
	return img, cfg
}

func checkAnnotations(t *testing.T, img v1.Image, name string) {
	t.Helper()
	m, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	for k, want := range map[string]string{
		"org.opencontainers.image.source":   "https://" + Module,
		"org.opencontainers.image.revision": "0123456789abcdef0123456789abcdef01234567",
		"org.opencontainers.image.version":  testVersion,
		"org.opencontainers.image.title":    name,
	} {
		if got := m.Annotations[k]; got != want {
			t.Errorf("manifest annotation %s = %q, want %q", k, got, want)
		}
	}
	if !strings.HasPrefix(m.Annotations["org.opencontainers.image.licenses"], "Apache-2.0") {
		t.Errorf("manifest annotation licenses = %q", m.Annotations["org.opencontainers.image.licenses"])
	}
}

func checkSBOM(t *testing.T, file string, purls ...string) {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var doc spdxDocument
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	if doc.SPDXVersion != "SPDX-2.3" || len(doc.DocumentDescribes) == 0 {
		t.Errorf("%s: version %q, describes %q", file, doc.SPDXVersion, doc.DocumentDescribes)
	}
	for _, want := range purls {
		found := false
		for _, p := range doc.Packages {
			for _, r := range p.ExternalRefs {
				if strings.HasPrefix(r.Locator, want) && p.VersionInfo != "" {
					found = true
				}
			}
		}
		if !found {
			t.Errorf("%s: no package with purl %s...", file, want)
		}
	}
}
