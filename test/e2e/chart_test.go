//go:build e2e

package e2e

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sidecar-injector/sidecar-injector/test/testenv"
)

// TestChartWebhookConfiguration renders the Helm chart's
// MutatingWebhookConfiguration with helm template and checks (1) it equals
// the Go definition the other tests use, for each default and failure
// policy, once its service is switched to the local URL, and (2) the
// apiserver accepts it and injects through it.
func TestChartWebhookConfiguration(t *testing.T) {
	t.Parallel()
	chart := filepath.Join(env.root, "charts", "sidecar-injector")
	if _, err := os.Stat(filepath.Join(chart, "Chart.yaml")); err != nil {
		t.Fatalf("no Helm chart at %s: %v", chart, err)
	}
	const release = "sidecar-injector"
	var rendered *admissionregistrationv1.MutatingWebhookConfiguration
	for _, dp := range []string{"disabled", "enabled"} {
		for _, fp := range []admissionregistrationv1.FailurePolicyType{admissionregistrationv1.Fail, admissionregistrationv1.Ignore} {
			t.Run(dp+"/"+string(fp), func(t *testing.T) {
				manifests, err := testenv.RenderChart(t.Context(), env.cp.Binaries.Helm, chart, release, "sidecar-injector", env.cp.Versions.Kubernetes,
					"--set", "injection.defaultPolicy="+dp, "--set", "webhook.failurePolicy="+string(fp))
				if err != nil {
					t.Fatal(err)
				}
				got, err := testenv.WebhookFromManifests(manifests, env.main.url, env.ca.CertPEM)
				if err != nil {
					t.Fatal(err)
				}
				o := testenv.DefaultWebhookOptions()
				o.Name, o.InjectorNamespace, o.URL, o.CABundle = release, "sidecar-injector", env.main.url, env.ca.CertPEM
				o.DefaultPolicy, o.FailurePolicy = dp, fp
				want, err := testenv.MutatingWebhookConfiguration(o)
				if err != nil {
					t.Fatal(err)
				}
				if diff := cmp.Diff(want, got, cmpopts.IgnoreFields(metav1.ObjectMeta{}, "Labels", "Annotations")); diff != "" {
					t.Errorf("chart (+) and Go definition (-) differ:\n%s", diff)
				}
				if dp == "disabled" && fp == admissionregistrationv1.Fail {
					rendered = got
				}
			})
		}
	}
	if rendered == nil {
		t.Fatal("the chart's default rendering is missing")
	}
	const scope = "chart"
	register(t, scoped(rendered, scope))
	ns := newNamespace(t, scope, map[string]string{testenv.NamespaceLabel: "enabled"})
	waitInjecting(t, ns, nil)
	assertInjected(t, createDeployment(t, ns, "shop", nil))
	assertUntouched(t, createPod(t, ns, simplePod("out", map[string]string{"sidecar.io/inject": "false"}, nil)))
}
