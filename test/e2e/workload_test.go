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
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"github.com/sidecar-injector/sidecar-injector/pkg/inject"
	"github.com/sidecar-injector/sidecar-injector/test/testenv"
)

// TestWorkloadWarningsAtApply: the chart's validating entry for workloads
// makes `kubectl apply -f deployment.yaml` print what the Deployment's pods
// will get (a moved port) or that they will be refused (UID 1337), to the
// person who applied it; the Deployment is created in both cases.
func TestWorkloadWarningsAtApply(t *testing.T) {
	t.Parallel()
	const scope = "workloads"
	manifests, err := testenv.RenderChart(t.Context(), env.cp.Binaries.Helm, filepath.Join(env.root, "charts", "sidecar-injector"),
		"sidecar-injector", "sidecar-injector", env.cp.Versions.Kubernetes)
	if err != nil {
		t.Fatal(err)
	}
	vwc, err := testenv.WorkloadWebhookFromManifests(manifests, env.main.url, env.ca.CertPEM)
	if err != nil {
		t.Fatal(err)
	}
	vwc.Name += "-e2e-" + scope
	for i := range vwc.Webhooks {
		w := &vwc.Webhooks[i]
		if *w.FailurePolicy != "Ignore" || *w.SideEffects != "None" {
			t.Fatalf("entry %s: failurePolicy %s, sideEffects %s; want Ignore and None", w.Name, *w.FailurePolicy, *w.SideEffects)
		}
		w.NamespaceSelector.MatchExpressions = append(w.NamespaceSelector.MatchExpressions,
			metav1.LabelSelectorRequirement{Key: scopeLabel, Operator: metav1.LabelSelectorOpIn, Values: []string{scope}})
	}
	api := env.cs.AdmissionregistrationV1().ValidatingWebhookConfigurations()
	if _, err := api.Create(t.Context(), vwc, metav1.CreateOptions{}); err != nil {
		t.Fatalf("the apiserver refused the chart's ValidatingWebhookConfiguration: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := api.Delete(ctx, vwc.Name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			t.Errorf("delete %s: %v", vwc.Name, err)
		}
	})
	ns := newNamespace(t, scope, map[string]string{testenv.NamespaceLabel: "enabled"})

	deployment := func(name, podSpec string) []byte {
		return []byte(`apiVersion: apps/v1
kind: Deployment
metadata: {name: ` + name + `}
spec:
  selector: {matchLabels: {app: ` + name + `}}
  template:
    metadata: {labels: {app: ` + name + `}}
    spec:
` + podSpec)
	}
	for _, tc := range []struct {
		name, spec, want string
	}{
		{"uses-10001", "      containers: [{name: app, image: app:1, ports: [{containerPort: 10001}]}]\n",
			"Warning: pods of deployment/uses-10001: proxy ports moved because the app uses them: inbound 10001→10003"},
		{"runs-as-1337", "      securityContext: {runAsUser: 1337}\n      containers: [{name: app, image: app:1}]\n",
			`Warning: pods of deployment/runs-as-1337 will be refused: container "app" would run as UID 1337`},
	} {
		m := deployment(tc.name, tc.spec)
		// The apiserver picks the configuration up within moments: dry runs
		// until the warning is there, then the real apply.
		err := testenv.WaitFor(t.Context(), nil, waitTimeout, func(context.Context) error {
			_, stderr := kubectl(t, m, "apply", "--dry-run=server", "-n", ns, "-f", "-")
			if !strings.Contains(stderr, tc.want) {
				return fmt.Errorf("kubectl stderr %q lacks %q", stderr, tc.want)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		_, stderr := kubectl(t, m, "apply", "-n", ns, "-f", "-")
		if !strings.Contains(stderr, tc.want) {
			t.Errorf("kubectl apply printed %q; want %q", stderr, tc.want)
		}
		t.Logf("kubectl apply -f %s.yaml printed: %s", tc.name, strings.TrimSpace(stderr))
		if _, err := env.cs.AppsV1().Deployments(ns).Get(t.Context(), tc.name, metav1.GetOptions{}); err != nil {
			t.Errorf("deployment %s not created: %v", tc.name, err)
		}
	}
}

// TestExplainFromCluster: explain --from-cluster reads the injector config
// from the cluster's ConfigMap and the namespace's labels, and gives the
// webhook's answer for a pod injected with a non-default config: the same
// ports and hash for the manifest, already_injected for the stored pod.
func TestExplainFromCluster(t *testing.T) {
	t.Parallel()
	const scope = "fromcluster"
	config := "apiVersion: sidecar.io/v1alpha1\nkind: InjectorConfig\nports:\n  inbound: 10051\n  stats: 10091\nproxy:\n  logLevel: debug\n"
	dir := t.TempDir()
	file := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(file, []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	w, err := env.startWebhook(t.Context(), "fromcluster", "--config", file)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = w.stop() })
	register(t, injectorConfig(t, w, scope, nil))
	cmNS := newNamespace(t, scope, nil)
	cm := `{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"injector"},"data":{"config.yaml":` + mustJSON(t, config) + `}}`
	kubectl(t, []byte(cm), "apply", "-n", cmNS, "-f", "-")
	ns := newNamespace(t, scope, map[string]string{testenv.NamespaceLabel: "enabled"})
	waitInjecting(t, ns, nil)

	manifest, err := yaml.Marshal(&corev1.Pod{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{Name: "shop"},
		Spec:       simplePod("shop", nil, nil).Spec,
	})
	if err != nil {
		t.Fatal(err)
	}
	kubectl(t, manifest, "apply", "-n", ns, "-f", "-")
	stored, _ := kubectl(t, nil, "get", "pod", "shop", "-n", ns, "-o", "yaml")
	pod, err := env.cs.CoreV1().Pods(ns).Get(t.Context(), "shop", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	st := assertInjected(t, pod)
	if st.Ports.Inbound != 10051 {
		t.Fatalf("the webhook injected inbound %d; want the non-default 10051", st.Ports.Inbound)
	}

	explain := func(stdin []byte) []struct {
		Decision inject.Decision
		Reason   inject.Reason
		Status   *inject.Status
	} {
		t.Helper()
		ctx, cancel := context.WithTimeout(t.Context(), waitTimeout)
		defer cancel()
		cmd := exec.CommandContext(ctx, env.injector, "explain", "--from-cluster", "--kubeconfig", env.cp.Kubeconfig,
			"--injector-configmap", cmNS+"/injector", "-n", ns, "-f", "-", "-o", "json")
		cmd.Stdin = strings.NewReader(string(stdin))
		var out, errb strings.Builder
		cmd.Stdout, cmd.Stderr = &out, &errb
		if err := cmd.Run(); err != nil {
			t.Fatalf("explain --from-cluster: %v\n%s", err, errb.String())
		}
		var ex []struct {
			Decision inject.Decision
			Reason   inject.Reason
			Status   *inject.Status
		}
		if err := json.Unmarshal([]byte(out.String()), &ex); err != nil || len(ex) != 1 {
			t.Fatalf("explain output (%v):\n%s", err, out.String())
		}
		return ex
	}
	before := explain(manifest)[0]
	if before.Decision != inject.DecisionInject || before.Status == nil {
		t.Fatalf("explain of the manifest: %+v; want inject", before)
	}
	if before.Status.ConfigHash != st.ConfigHash || before.Status.Ports != st.Ports || before.Status.Native != st.Native {
		t.Errorf("explain --from-cluster says hash %s ports %+v native %v; the webhook wrote hash %s ports %+v native %v",
			before.Status.ConfigHash, before.Status.Ports, before.Status.Native, st.ConfigHash, st.Ports, st.Native)
	}
	after := explain([]byte(stored))[0]
	if after.Decision != inject.DecisionSkip || after.Reason != inject.ReasonAlreadyInjected {
		t.Errorf("explain of the stored pod: %s/%s; want skip/already_injected (the cluster's config hash)", after.Decision, after.Reason)
	}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
