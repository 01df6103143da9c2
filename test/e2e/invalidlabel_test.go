//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sidecar-injector/sidecar-injector/pkg/controller"
	"github.com/sidecar-injector/sidecar-injector/test/testenv"
)

// TestInvalidNamespaceLabel: a namespace labelled sidecar-injection=true
// (the commonest mistake) no longer fails silently: kubectl run there
// prints a warning naming the label, its value and the valid values; the
// controller records an Event on the namespace and counts it; explain
// --cluster lists it; offline explain with --namespace-labels says the same.
func TestInvalidNamespaceLabel(t *testing.T) {
	t.Parallel()
	const scope = "invalid-label"
	const want = `Warning: no sidecar: namespace label sidecar-injection="true" is invalid (valid: enabled, disabled, audit)`
	register(t, injectorConfig(t, env.main, scope, nil))
	ns := newNamespace(t, scope, map[string]string{testenv.NamespaceLabel: "true"})

	// The webhook's namespace cache follows within moments: dry runs until
	// the warning names the value, then the real kubectl run.
	poll(t, waitTimeout, "the warning names the value", func(context.Context) error {
		_, stderr := kubectl(t, nil, "run", "probe", "-n", ns, "--image", "example/app:1", "--dry-run=server")
		if !strings.Contains(stderr, want) {
			return fmt.Errorf("kubectl stderr %q", stderr)
		}
		return nil
	})
	stdout, stderr := kubectl(t, nil, "run", "web", "-n", ns, "--image", "example/app:1")
	if !strings.Contains(stderr, want) {
		t.Errorf("kubectl run: stderr %q, want %q", stderr, want)
	}
	t.Logf("kubectl run web -n %s:\n%s%s", ns, stderr, stdout)
	p, err := env.cs.CoreV1().Pods(ns).Get(t.Context(), "web", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	assertUntouched(t, p)

	waitEvent(t, ns, controller.EventNamespaceLabelInvalid)
	poll(t, waitTimeout, "the controller counts it", func(ctx context.Context) error {
		if v := env.mainCtl.metric(ctx, "sidecar_injector_namespaces_label_invalid", ""); v < 1 {
			return fmt.Errorf("sidecar_injector_namespaces_label_invalid %v", v)
		}
		return nil
	})

	out, err := exec.CommandContext(t.Context(), env.injector, "explain", "--cluster", "--kubeconfig", env.cp.Kubeconfig, "-n", ns, "-o", "json").Output()
	if err != nil {
		t.Fatalf("explain --cluster: %v", err)
	}
	var r controller.ClusterReport
	if err := json.Unmarshal(out, &r); err != nil {
		t.Fatal(err)
	}
	if len(r.Namespaces) != 1 || !r.Namespaces[0].LabelInvalid || !strings.Contains(strings.Join(r.Namespaces[0].Warnings, "\n"), `sidecar-injection="true" is invalid`) {
		t.Errorf("explain --cluster -n %s: %s", ns, out)
	}

	pod := filepath.Join(t.TempDir(), "pod.yaml")
	if err := os.WriteFile(pod, []byte("apiVersion: v1\nkind: Pod\nmetadata: {name: web}\nspec:\n  containers: [{name: web, image: example/app:1}]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	text, err := exec.CommandContext(t.Context(), env.injector, "explain", "-f", pod, "--namespace-labels", "sidecar-injection=true").CombinedOutput()
	if err != nil || !strings.Contains(string(text), `namespace label sidecar-injection=\"true\" is invalid (valid: enabled, disabled, audit)`) && !strings.Contains(string(text), `namespace label sidecar-injection="true" is invalid (valid: enabled, disabled, audit)`) {
		t.Errorf("offline explain --namespace-labels sidecar-injection=true: %v\n%s", err, text)
	}
}
