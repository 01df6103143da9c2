//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"github.com/sidecar-injector/sidecar-injector/pkg/inject"
	"github.com/sidecar-injector/sidecar-injector/test/testenv"
)

// Scopes served by the shared webhook; their configurations are registered
// once by registerShared.
const (
	scopeMain           = "main"            // the chart's defaults
	scopeDefaultEnabled = "default-enabled" // injection.defaultPolicy: enabled
)

var sharedOnce sync.Once

// shared registers the configurations of the shared webhook once, and
// waits until the apiserver uses them.
func shared(t *testing.T) {
	t.Helper()
	sharedOnce.Do(func() {
		ctx := context.Background()
		api := env.cs.AdmissionregistrationV1().MutatingWebhookConfigurations()
		for _, c := range []struct {
			scope  string
			change func(*testenv.WebhookOptions)
		}{
			{scopeMain, nil},
			{scopeDefaultEnabled, func(o *testenv.WebhookOptions) { o.DefaultPolicy = "enabled" }},
		} {
			mwc := injectorConfig(t, env.main, c.scope, c.change)
			if _, err := api.Create(ctx, mwc, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
				t.Fatalf("register %s: the apiserver refused the webhook configuration: %v", mwc.Name, err)
			}
		}
	})
	// Every caller waits, in its own namespace, for the configuration to
	// be in effect (the apiserver loads it asynchronously).
	ns := newNamespace(t, scopeMain, map[string]string{testenv.NamespaceLabel: "enabled"})
	waitInjecting(t, ns, nil)
}

// TestLabelledNamespace: a Deployment's pod in a namespace labelled
// sidecar-injection=enabled comes back with iptables-init, envoy, the
// envoy-config volume and sidecar.io/status; in an unlabelled namespace it
// comes back untouched.
func TestLabelledNamespace(t *testing.T) {
	t.Parallel()
	shared(t)
	t.Run("enabled", func(t *testing.T) {
		t.Parallel()
		ns := newNamespace(t, scopeMain, map[string]string{testenv.NamespaceLabel: "enabled"})
		pod := createDeployment(t, ns, "shop", nil)
		st := assertInjected(t, pod)
		if st.ConfigHash == "" || st.Ports.Inbound != 10001 || st.Ports.Outbound != 10002 {
			t.Errorf("status %+v: want a config hash and ports 10001/10002", st)
		}
		envoy, native := proxyContainer(pod)
		if !native {
			t.Errorf("envoy is not a native sidecar on Kubernetes %s (the webhook reads the version through --kubeconfig)", env.cp.Versions.Kubernetes)
		}
		if envoy != nil && !hasMount(envoy, inject.ConfigVolumeName) {
			t.Errorf("envoy does not mount %s: %+v", inject.ConfigVolumeName, envoy.VolumeMounts)
		}
	})
	t.Run("unlabelled", func(t *testing.T) {
		t.Parallel()
		ns := newNamespace(t, scopeMain, nil)
		pod := createDeployment(t, ns, "shop", nil)
		assertUntouched(t, pod)
		if got := containerNames(pod.Spec.Containers); len(got) != 2 || len(pod.Spec.InitContainers) != 0 {
			t.Errorf("containers %v, init containers %v: want the template's two and none", got, containerNames(pod.Spec.InitContainers))
		}
	})
}

func hasMount(c *corev1.Container, volume string) bool {
	for _, m := range c.VolumeMounts {
		if m.Name == volume {
			return true
		}
	}
	return false
}

// TestPrecedence walks DESIGN.md "Who gets a sidecar": the sidecar.io/inject
// label and annotation opt out, "true" opts in as the table says, and
// sidecar-injection=disabled wins over defaultPolicy enabled.
func TestPrecedence(t *testing.T) {
	t.Parallel()
	shared(t)
	enabled := map[string]string{testenv.NamespaceLabel: "enabled"}
	disabled := map[string]string{testenv.NamespaceLabel: "disabled"}
	lTrue := map[string]string{inject.InjectKey: "true"}
	lFalse := map[string]string{inject.InjectKey: "false"}
	tests := []struct {
		name        string
		scope       string
		nsLabels    map[string]string
		labels      map[string]string
		annotations map[string]string
		want        bool
	}{
		{"enabled namespace, nothing on the pod", scopeMain, enabled, nil, nil, true},
		{"enabled namespace, label true", scopeMain, enabled, lTrue, nil, true},
		{"enabled namespace, label false", scopeMain, enabled, lFalse, nil, false},
		{"enabled namespace, annotation false", scopeMain, enabled, nil, lFalse, false},
		{"enabled namespace, label true wins over annotation false", scopeMain, enabled, lTrue, lFalse, true},
		{"enabled namespace, label false wins over annotation true", scopeMain, enabled, lFalse, lTrue, false},
		{"unlabelled namespace, label true", scopeMain, nil, lTrue, nil, true},
		{"unlabelled namespace, annotation true only", scopeMain, nil, nil, lTrue, false},
		{"unlabelled namespace, nothing (default disabled)", scopeMain, nil, nil, nil, false},
		{"disabled namespace, label true", scopeMain, disabled, lTrue, nil, false},
		{"default enabled: unlabelled namespace, nothing", scopeDefaultEnabled, nil, nil, nil, true},
		{"default enabled: unlabelled namespace, annotation false", scopeDefaultEnabled, nil, nil, lFalse, false},
		{"default enabled: unlabelled namespace, label false", scopeDefaultEnabled, nil, lFalse, nil, false},
		{"default enabled: disabled namespace wins, nothing", scopeDefaultEnabled, disabled, nil, nil, false},
		{"default enabled: disabled namespace wins, label true", scopeDefaultEnabled, disabled, lTrue, nil, false},
	}
	// The default-enabled configuration must be in effect before its
	// negative rows mean anything.
	probe := newNamespace(t, scopeDefaultEnabled, nil)
	waitInjecting(t, probe, nil)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ns := newNamespace(t, tt.scope, tt.nsLabels)
			pod := createPod(t, ns, simplePod("precedence", tt.labels, tt.annotations))
			if tt.want {
				assertInjected(t, pod)
			} else {
				assertUntouched(t, pod)
			}
		})
	}
}

// TestJobNativeSidecar: a Job's pod gets Envoy as a native sidecar right
// after iptables-init, and the apiserver accepts it.
func TestJobNativeSidecar(t *testing.T) {
	t.Parallel()
	shared(t)
	ns := newNamespace(t, scopeMain, map[string]string{testenv.NamespaceLabel: "enabled"})
	job := &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{Name: "migrate"},
		Spec: batchv1.JobSpec{
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "migrate"}},
				Spec: corev1.PodSpec{
					RestartPolicy:  corev1.RestartPolicyNever,
					InitContainers: []corev1.Container{{Name: "schema", Image: "busybox:1.36", Command: []string{"true"}}},
					Containers:     []corev1.Container{{Name: "migrate", Image: "busybox:1.36", Command: []string{"true"}}},
				},
			},
		},
	}
	if _, err := env.cs.BatchV1().Jobs(ns).Create(t.Context(), job, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	pod := waitPod(t, env.cs, ns, "app=migrate")
	inits := containerNames(pod.Spec.InitContainers)
	want := []string{inject.InitContainerName, inject.ProxyContainerName, "schema"}
	if strings.Join(inits, ",") != strings.Join(want, ",") {
		t.Errorf("init containers %v, want %v (iptables-init, then envoy, then the pod's own)", inits, want)
	}
	envoy, native := proxyContainer(pod)
	if envoy == nil || !native {
		t.Fatalf("envoy is not a native sidecar (init container with restartPolicy Always): %v", inits)
	}
	if envoy.StartupProbe == nil {
		t.Error("native envoy has no startup probe: apps would start before the proxy is ready")
	}
	if got := containerNames(pod.Spec.Containers); strings.Join(got, ",") != "migrate" {
		t.Errorf("containers %v, want only the job's own", got)
	}
}

// TestSystemNamespacesNeverTouched: pods in kube-system and in the
// injector's own namespace are never injected, even labelled enabled and
// with the pod label "true". First the selectors keep the apiserver from
// calling the webhook at all (its request counters do not move); then, with
// a configuration that forgets the exclusion, the webhook skips them itself.
func TestSystemNamespacesNeverTouched(t *testing.T) {
	shared(t) // not parallel: it labels kube-system for a while
	nsLabels := map[string]string{testenv.NamespaceLabel: "enabled", scopeLabel: scopeMain}
	injectorNS := testenv.DefaultWebhookOptions().InjectorNamespace
	namespaces := []string{"kube-system", injectorNS}
	for _, ns := range namespaces {
		labelNamespace(t, ns, nsLabels)
	}
	before, _ := env.main.requests(t)
	for _, ns := range namespaces {
		assertUntouched(t, createPod(t, ns, simplePod("system", map[string]string{inject.InjectKey: "true"}, nil)))
	}
	time.Sleep(time.Second) // a call, had there been one, would be counted by now
	if after, _ := env.main.requests(t); after != before {
		t.Errorf("the webhook was called %v times for excluded namespaces: the namespaceSelector should keep the apiserver away", after-before)
	}

	// A configuration without the namespace exclusion, in its own scope.
	mwc := injectorConfig(t, env.main, "no-exclusion", nil)
	for i := range mwc.Webhooks {
		var keep []metav1.LabelSelectorRequirement
		for _, r := range mwc.Webhooks[i].NamespaceSelector.MatchExpressions {
			if r.Key != "kubernetes.io/metadata.name" {
				keep = append(keep, r)
			}
		}
		mwc.Webhooks[i].NamespaceSelector.MatchExpressions = keep
	}
	register(t, mwc)
	for _, ns := range namespaces {
		labelNamespace(t, ns, map[string]string{scopeLabel: "no-exclusion"})
	}
	// Wait until the apiserver calls the webhook for these namespaces.
	_, reasons0 := env.main.requests(t)
	err := testenv.WaitFor(t.Context(), nil, waitTimeout, func(ctx context.Context) error {
		p := simplePod("probe", nil, nil)
		if _, err := env.cs.CoreV1().Pods("kube-system").Create(ctx, p, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}}); err != nil {
			return err
		}
		if _, r := env.main.requests(t); r[string(inject.ReasonExcludedNamespace)] == reasons0[string(inject.ReasonExcludedNamespace)] {
			return fmt.Errorf("webhook not called for kube-system yet")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second) // the last probe's count lands before the baseline
	_, reasons1 := env.main.requests(t)
	for _, ns := range namespaces {
		assertUntouched(t, createPod(t, ns, simplePod("system", map[string]string{inject.InjectKey: "true"}, nil)))
	}
	_, reasons2 := env.main.requestsReach(t, func(_ float64, r map[string]float64) bool {
		return r[string(inject.ReasonExcludedNamespace)] > reasons1[string(inject.ReasonExcludedNamespace)] &&
			r[string(inject.ReasonInjectorNamespace)] > reasons1[string(inject.ReasonInjectorNamespace)]
	})
	for reason, ns := range map[inject.Reason]string{inject.ReasonExcludedNamespace: "kube-system", inject.ReasonInjectorNamespace: injectorNS} {
		if d := reasons2[string(reason)] - reasons1[string(reason)]; d != 1 {
			t.Errorf("reason %s counted %v times for the pod in %s, want 1", reason, d, ns)
		}
	}
}

// TestPortConflict: a pod whose app uses 10001 is admitted with Envoy moved
// to another port, and the client gets a warning saying so.
func TestPortConflict(t *testing.T) {
	t.Parallel()
	shared(t)
	ns := newNamespace(t, scopeMain, map[string]string{testenv.NamespaceLabel: "enabled"})
	cs, warned := clientWithWarnings(t)
	p := simplePod("port", nil, nil)
	p.Spec.Containers[0].Ports = []corev1.ContainerPort{{Name: "admin", ContainerPort: 10001}}
	pod, err := cs.CoreV1().Pods(ns).Create(t.Context(), p, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("pod using port 10001 refused: %v", err)
	}
	st := assertInjected(t, pod)
	if st.Ports.Inbound == 10001 || st.Ports.Inbound == 0 {
		t.Fatalf("status inbound port %d: want Envoy moved off 10001", st.Ports.Inbound)
	}
	moved := strconv.Itoa(int(st.Ports.Inbound))
	var found string
	for _, w := range warned.get() {
		if strings.Contains(w, "10001") && strings.Contains(w, moved) {
			found = w
		}
	}
	if found == "" {
		t.Errorf("no warning naming 10001 and the new port %s; warnings returned to the client: %q", moved, warned.get())
	} else {
		t.Logf("warning returned to the client: %q", found)
	}

	// kubectl prints the same warning on stderr.
	manifest, err := yaml.Marshal(&corev1.Pod{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{Name: "port-kubectl"},
		Spec:       p.Spec,
	})
	if err != nil {
		t.Fatal(err)
	}
	_, stderr := kubectl(t, manifest, "apply", "-n", ns, "-f", "-")
	if !strings.Contains(stderr, "Warning:") || !strings.Contains(stderr, "10001") {
		t.Errorf("kubectl printed no warning about port 10001; stderr:\n%s", stderr)
	}
}

// kubectl runs the built kubectl against the control plane with stdin.
func kubectl(t *testing.T, stdin []byte, args ...string) (stdout, stderr string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), waitTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, env.cp.Binaries.Kubectl, args...)
	cmd.Env = append(os.Environ(), "KUBECONFIG="+env.cp.Kubeconfig)
	cmd.Stdin = strings.NewReader(string(stdin))
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("kubectl %v: %v\n%s", args, err, errb.String())
	}
	return out.String(), errb.String()
}

// TestReinvocation: with reinvocationPolicy IfNeeded and a second mutating
// webhook that adds a container after ours, the apiserver calls ours again
// and the stored pod has exactly one envoy.
func TestReinvocation(t *testing.T) {
	t.Parallel()
	w, err := env.startWebhook(t.Context(), "reinvoke")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = w.stop() })
	adder := startAdder(t)
	const scope = "reinvoke"
	// Mutating webhooks run in the order of their configurations' names:
	// ours ("sidecar-injector-…") first, then the adder ("zz-…"), whose
	// change makes the apiserver reinvoke ours.
	register(t, injectorConfig(t, w, scope, nil))
	register(t, adder.config(scope))
	ns := newNamespace(t, scope, map[string]string{testenv.NamespaceLabel: "enabled"})
	waitInjecting(t, ns, nil)

	before, _ := w.requests(t)
	pod := createPod(t, ns, simplePod("reinvoke", nil, nil))
	w.requestsReach(t, func(total float64, _ map[string]float64) bool { return total >= before+2 })
	time.Sleep(time.Second) // a third call, if any, has landed too
	after, _ := w.requests(t)
	assertInjected(t, pod)
	if count(containerNames(pod.Spec.Containers), adderContainer) != 1 {
		t.Errorf("the second webhook's container is missing: %v", containerNames(pod.Spec.Containers))
	}
	if after-before != 2 {
		t.Errorf("our webhook was called %v times for one pod, want 2 (the first call and the reinvocation)", after-before)
	}
	stored, err := env.cs.CoreV1().Pods(ns).Get(t.Context(), pod.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	assertInjected(t, stored)
}

// TestServerDryRun: a server-side dry run shows the injected pod and
// creates nothing, through client-go and through kubectl.
func TestServerDryRun(t *testing.T) {
	t.Parallel()
	shared(t)
	ns := newNamespace(t, scopeMain, map[string]string{testenv.NamespaceLabel: "enabled"})
	p := simplePod("dry", nil, nil)
	p.GenerateName, p.Name = "", "dry-client-go"
	got, err := env.cs.CoreV1().Pods(ns).Create(t.Context(), p, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
	if err != nil {
		t.Fatal(err)
	}
	assertInjected(t, got)

	manifest, err := yaml.Marshal(&corev1.Pod{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"}, ObjectMeta: metav1.ObjectMeta{Name: "dry-kubectl"}, Spec: p.Spec})
	if err != nil {
		t.Fatal(err)
	}
	out, _ := kubectl(t, manifest, "apply", "--dry-run=server", "-n", ns, "-o", "yaml", "-f", "-")
	var shown corev1.Pod
	if err := yaml.Unmarshal([]byte(out), &shown); err != nil {
		t.Fatalf("kubectl output is not a pod: %v\n%s", err, out)
	}
	assertInjected(t, &shown)

	l, err := env.cs.CoreV1().Pods(ns).List(t.Context(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(l.Items) != 0 {
		t.Errorf("dry runs created %d pods: %v", len(l.Items), l.Items[0].Name)
	}
}

// TestWebhookDown: with the webhook process stopped, failurePolicy Fail
// refuses the create with the apiserver's error; Ignore creates the pod
// without a sidecar.
func TestWebhookDown(t *testing.T) {
	t.Parallel()
	for _, policy := range []admissionregistrationv1.FailurePolicyType{admissionregistrationv1.Fail, admissionregistrationv1.Ignore} {
		t.Run(string(policy), func(t *testing.T) {
			t.Parallel()
			scope := "down-" + strings.ToLower(string(policy))
			w, err := env.startWebhook(t.Context(), scope)
			if err != nil {
				t.Fatal(err)
			}
			register(t, injectorConfig(t, w, scope, func(o *testenv.WebhookOptions) { o.FailurePolicy = policy }))
			ns := newNamespace(t, scope, map[string]string{testenv.NamespaceLabel: "enabled"})
			waitInjecting(t, ns, nil) // in effect while the webhook is up
			if err := w.stop(); err != nil {
				t.Fatal(err)
			}
			p := simplePod("down", nil, nil)
			pod, err := env.cs.CoreV1().Pods(ns).Create(t.Context(), p, metav1.CreateOptions{})
			switch policy {
			case admissionregistrationv1.Fail:
				if err == nil {
					t.Fatalf("pod %s created with the webhook down and failurePolicy Fail", pod.Name)
				}
				want := fmt.Sprintf("failed calling webhook %q", testenv.EntryName(testenv.GroupEnabled, testenv.DefaultWebhookOptions().Name))
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not contain %q", err, want)
				}
				t.Logf("apiserver error: %v", err)
				if l, err := env.cs.CoreV1().Pods(ns).List(t.Context(), metav1.ListOptions{}); err != nil || len(l.Items) != 0 {
					t.Errorf("pods in %s after a refused create: %v (err %v)", ns, len(l.Items), err)
				}
			case admissionregistrationv1.Ignore:
				if err != nil {
					t.Fatalf("create refused with failurePolicy Ignore: %v", err)
				}
				assertUntouched(t, pod)
			}
		})
	}
}

// TestCertificateRotation: the webhook's certificate is rotated on disk
// (same CA, kubelet-style symlink swap) while pods are being created; no
// create fails, every pod is injected, and the webhook ends up serving the
// last certificate.
func TestCertificateRotation(t *testing.T) {
	t.Parallel()
	const scope = "rotate"
	w, err := env.startWebhook(t.Context(), scope)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = w.stop() })
	register(t, injectorConfig(t, w, scope, nil))
	ns := newNamespace(t, scope, map[string]string{testenv.NamespaceLabel: "enabled"})
	waitInjecting(t, ns, nil)

	const pods, rotations = 40, 8
	done := make(chan struct{})
	var last string
	var rotErr error
	go func() {
		defer close(done)
		for range rotations {
			time.Sleep(150 * time.Millisecond)
			kp, err := w.certs.rotate(w.ca)
			if err != nil {
				rotErr = err
				return
			}
			last = kp.Cert.SerialNumber.String()
		}
	}()
	var failures []string
	for i := range pods {
		pod, err := env.cs.CoreV1().Pods(ns).Create(t.Context(), simplePod(fmt.Sprintf("rot-%02d", i), nil, nil), metav1.CreateOptions{})
		if err != nil {
			failures = append(failures, err.Error())
			continue
		}
		if !injected(pod) {
			failures = append(failures, "pod "+pod.Name+" not injected")
		}
	}
	<-done
	if rotErr != nil {
		t.Fatal(rotErr)
	}
	if len(failures) > 0 {
		t.Errorf("%d of %d creates failed during %d rotations: %v", len(failures), pods, rotations, failures)
	}
	// The rotations took effect: the webhook serves the last certificate.
	err = testenv.WaitFor(t.Context(), nil, 30*time.Second, func(ctx context.Context) error {
		got, err := w.servingSerial(ctx)
		if err != nil {
			return err
		}
		if got != last {
			return fmt.Errorf("serving certificate serial %s, want the last rotated %s", got, last)
		}
		return nil
	})
	if err != nil {
		t.Error(err)
	}
}
