//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sidecar-injector/sidecar-injector/test/testenv"
)

// TestHelmInstallUpgradeUninstall installs the chart into the real
// apiserver with helm, serves the release's webhook configuration with a
// webhook run locally from the certificate and key of the release's own
// Secret (so the chart's CA, caBundle and names are proven against the
// apiserver), upgrades with changed values and checks the CA and serving
// certificate are kept, and uninstalls: no webhook configuration is left.
func TestHelmInstallUpgradeUninstall(t *testing.T) {
	t.Parallel()
	const (
		scope     = "helm"
		release   = "mesh"
		namespace = "e2e-helm-release"
	)
	ctx := t.Context()
	chart := filepath.Join(env.root, "charts", "sidecar-injector")
	ports, err := testenv.FreePorts(2)
	if err != nil {
		t.Fatal(err)
	}
	url := "https://127.0.0.1:" + strconv.Itoa(ports[0])
	helm := func(args ...string) string { t.Helper(); return runHelm(t, ctx, args...) }
	// The release's webhook entries are confined to this test's namespaces.
	scopeSelector := scopeSelectorValue(scope)
	helm("install", release, chart, "-n", namespace, "--create-namespace",
		"--set", "webhook.url="+url, "--set-json", scopeSelector)
	installed := true
	t.Cleanup(func() {
		c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if installed {
			_ = exec.CommandContext(c, env.cp.Binaries.Helm, "uninstall", release, "-n", namespace, "--kubeconfig", env.cp.Kubeconfig).Run()
		}
		_ = env.cs.CoreV1().Namespaces().Delete(c, namespace, metav1.DeleteOptions{})
	})

	mwcName := release + "-sidecar-injector"
	mwc, err := env.cs.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(ctx, mwcName, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("the release's webhook configuration: %v", err)
	}
	if len(mwc.Webhooks) < 3 {
		t.Fatalf("the release's webhook configuration has %d entries, want at least 3", len(mwc.Webhooks))
	}
	secretName := release + "-sidecar-injector-webhook-tls"
	secret, err := env.cs.CoreV1().Secrets(namespace).Get(ctx, secretName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range mwc.Webhooks {
		if !bytes.Equal(w.ClientConfig.CABundle, secret.Data["ca.crt"]) {
			t.Fatalf("entry %s: caBundle is not the release Secret's CA", w.Name)
		}
	}

	// The webhook, run locally with the release's certificate and key.
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	if err := os.WriteFile(certFile, secret.Data["tls.crt"], 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, secret.Data["tls.key"], 0o600); err != nil {
		t.Fatal(err)
	}
	proc, err := testenv.StartProcess(testenv.ProcessSpec{
		Name: "webhook-helm",
		Path: env.webhook,
		Args: []string{"--tls-cert-file", certFile, "--tls-key-file", keyFile,
			"--listen-address", "127.0.0.1:" + strconv.Itoa(ports[0]),
			"--health-address", "127.0.0.1:" + strconv.Itoa(ports[1]),
			"--kubeconfig", env.cp.Kubeconfig,
			"--drain-delay", "0s", "--shutdown-grace", "5s", "--log-format", "text"},
		LogFile: filepath.Join(dir, "webhook.log"),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = proc.Stop(10 * time.Second) })
	if err := testenv.WaitFor(ctx, proc, waitTimeout, func(ctx context.Context) error {
		return testenv.GetOK(ctx, "http://127.0.0.1:"+strconv.Itoa(ports[1])+"/readyz")
	}); err != nil {
		t.Fatalf("webhook with the release's certificate not ready: %v\n%s", err, proc.LogTail(20))
	}
	ns := newNamespace(t, scope, map[string]string{testenv.NamespaceLabel: "enabled"})
	waitInjecting(t, ns, nil)
	assertInjected(t, createDeployment(t, ns, "shop", nil))

	// Upgrade with changed values: same CA, same serving certificate.
	helm("upgrade", release, chart, "-n", namespace, "--reuse-values", "--set", "webhook.timeoutSeconds=7")
	after, err := env.cs.CoreV1().Secrets(namespace).Get(ctx, secretName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"ca.crt", "ca.key", "tls.crt", "tls.key"} {
		if !bytes.Equal(secret.Data[k], after.Data[k]) {
			t.Errorf("helm upgrade changed %s of the webhook Secret", k)
		}
	}
	mwc, err = env.cs.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(ctx, mwcName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range mwc.Webhooks {
		if w.TimeoutSeconds == nil || *w.TimeoutSeconds != 7 {
			t.Errorf("entry %s: timeoutSeconds %v after the upgrade, want 7", w.Name, w.TimeoutSeconds)
		}
		if !bytes.Equal(w.ClientConfig.CABundle, secret.Data["ca.crt"]) {
			t.Errorf("entry %s: caBundle changed by the upgrade", w.Name)
		}
	}
	assertInjected(t, createPod(t, ns, simplePod("after-upgrade", nil, nil)))

	// Uninstall: no webhook configuration is left to block pod creation.
	helm("uninstall", release, "-n", namespace)
	installed = false
	if _, err := env.cs.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(ctx, mwcName, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Fatalf("after helm uninstall the webhook configuration is still there (err %v)", err)
	}
}
