//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"log/slog"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sidecar-injector/sidecar-injector/internal/imagebuild"
	"github.com/sidecar-injector/sidecar-injector/internal/need"
)

// TestReleaseFromLocalRegistry is the release flow of `make release-local`
// against the control plane: both images (built for this machine's
// architecture, without a container engine) and the chart pushed to an
// OCI registry on 127.0.0.1 (go-containerregistry's implementation of the
// distribution API), `helm install oci://...` with the images pinned by the
// pushed digests, and `helm upgrade` to a second pushed chart version,
// which keeps the certificates.
func TestReleaseFromLocalRegistry(t *testing.T) {
	t.Parallel()
	if os.Geteuid() != 0 {
		msg := "the iptables-init image is assembled from Debian packages fetched with apt-get, as root"
		need.Unmet(t, "RELEASE TEST: %s", msg)
	}
	const (
		scope     = "release"
		release   = "from-registry"
		namespace = "e2e-release"
		version   = "v0.0.0-e2e"
	)
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Minute)
	defer cancel()

	cfg := imagebuild.DefaultConfig()
	cfg.Platforms = []string{"linux/" + runtime.GOARCH}
	cfg.RepoRoot = env.root
	cfg.OutDir = filepath.Join(t.TempDir(), "images")
	cfg.Version = version
	built, err := imagebuild.Build(ctx, cfg, slog.New(slog.NewTextHandler(testWriter{t}, nil)))
	if err != nil {
		t.Fatalf("build the images: %v", err)
	}

	reg := httptest.NewServer(registry.New())
	t.Cleanup(reg.Close)
	host := strings.TrimPrefix(reg.URL, "http://")
	publish := func(chartVersion string) imagebuild.Released {
		t.Helper()
		out, err := imagebuild.Release(ctx, imagebuild.ReleaseConfig{
			Registry: host, ImagesDir: cfg.OutDir, ChartDir: filepath.Join(env.root, "charts", "sidecar-injector"),
			OutDir: filepath.Join(t.TempDir(), "charts"), Version: version, ChartVersion: chartVersion,
			Helm: env.cp.Binaries.Helm, PlainHTTP: true,
		})
		if err != nil {
			t.Fatalf("release %s to %s: %v", chartVersion, host, err)
		}
		return out
	}
	first := publish("0.0.1-e2e.1")
	for _, b := range built {
		if first.Images[b.Name] != b.Digest {
			t.Errorf("%s: pushed index %s, built %s", b.Name, first.Images[b.Name], b.Digest)
		}
		// The registry serves the index by digest, with the platform image in it.
		ref, err := name.NewDigest(first.Ref(host, b.Name), name.Insecure)
		if err != nil {
			t.Fatal(err)
		}
		idx, err := remote.Index(ref, remote.WithContext(ctx))
		if err != nil {
			t.Fatalf("pull %s back: %v", ref, err)
		}
		if _, err := imagebuild.PlatformImage(idx, "linux/"+runtime.GOARCH); err != nil {
			t.Errorf("%s: %v", ref, err)
		}
	}
	if first.ChartDigest == "" {
		t.Error("helm push printed no chart digest")
	}

	helm := func(args ...string) string { t.Helper(); return runHelm(t, ctx, args...) }
	// The release's webhook entries are confined to namespaces no test makes.
	scopeSelector := scopeSelectorValue(scope)
	install := append([]string{"install", release}, first.InstallArgs(host)...)
	helm(append(install, "-n", namespace, "--create-namespace", "--plain-http", "--set-json", scopeSelector, "--wait=false")...)
	t.Cleanup(func() {
		c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = exec.CommandContext(c, env.cp.Binaries.Helm, "uninstall", release, "-n", namespace, "--kubeconfig", env.cp.Kubeconfig).Run()
		_ = env.cs.CoreV1().Namespaces().Delete(c, namespace, metav1.DeleteOptions{})
	})
	if got := helm("get", "metadata", release, "-n", namespace); !strings.Contains(got, "0.0.1-e2e.1") {
		t.Errorf("installed chart version: %s", got)
	}

	injectorRef := first.Ref(host, imagebuild.Injector)
	initRef := first.Ref(host, imagebuild.IptablesInit)
	checkImages := func(when string) {
		t.Helper()
		deps, err := env.cs.AppsV1().Deployments(namespace).List(ctx, metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if len(deps.Items) < 2 {
			t.Fatalf("%s: %d Deployments in %s, want the webhook's and the xDS server's", when, len(deps.Items), namespace)
		}
		for _, d := range deps.Items {
			for _, c := range append(d.Spec.Template.Spec.InitContainers, d.Spec.Template.Spec.Containers...) {
				if c.Image != injectorRef {
					t.Errorf("%s: Deployment %s container %s: image %q, want the pushed %q", when, d.Name, c.Name, c.Image, injectorRef)
				}
			}
		}
		cms, err := env.cs.CoreV1().ConfigMaps(namespace).List(ctx, metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		found := false
		for _, cm := range cms.Items {
			if strings.Contains(cm.Data["config.yaml"], "initImage: "+initRef) {
				found = true
			}
		}
		if !found {
			t.Errorf("%s: no injector config in %s names the pushed iptables-init image %s", when, namespace, initRef)
		}
	}
	checkImages("after install")
	secretName := release + "-sidecar-injector-webhook-tls"
	before, err := env.cs.CoreV1().Secrets(namespace).Get(ctx, secretName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}

	// A second chart version, pushed and upgraded to: same certificates.
	second := publish("0.0.2-e2e.1")
	if second.ChartDigest == first.ChartDigest {
		t.Errorf("two chart versions pushed with the same digest %s", first.ChartDigest)
	}
	helm("upgrade", release, second.Chart, "--version", second.ChartVersion, "-n", namespace, "--plain-http", "--reuse-values", "--wait=false")
	if got := helm("get", "metadata", release, "-n", namespace); !strings.Contains(got, "0.0.2-e2e.1") {
		t.Errorf("upgraded chart version: %s", got)
	}
	after, err := env.cs.CoreV1().Secrets(namespace).Get(ctx, secretName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"ca.crt", "ca.key", "tls.crt", "tls.key"} {
		if !bytes.Equal(before.Data[k], after.Data[k]) {
			t.Errorf("helm upgrade to the second chart version changed %s of the webhook Secret", k)
		}
	}
	checkImages("after upgrade")
	t.Logf("installed %s %s, upgraded to %s; Deployments run %s, pods get %s; certificates kept",
		first.Chart, first.ChartVersion, second.ChartVersion, injectorRef, initRef)
}
