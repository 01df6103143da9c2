//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/sidecar-injector/sidecar-injector/pkg/inject"
	"github.com/sidecar-injector/sidecar-injector/test/testenv"
)

// scopeLabel confines a test's webhook configurations to its namespaces.
const scopeLabel = "e2e.sidecar.io/scope"

// Waits are bounded; nothing here runs pods, so everything is fast.
const (
	waitTimeout = 60 * time.Second
	pollEvery   = 100 * time.Millisecond
)

// ---- the webhook under test, as a process ----

// webhookProc is one sidecar-injector-webhook process on 127.0.0.1.
type webhookProc struct {
	name      string
	proc      *testenv.Process
	url       string // https://127.0.0.1:PORT
	healthURL string // http://127.0.0.1:PORT
	certs     *certDir
	ca        *testenv.CA
}

// startWebhook starts a webhook with a fresh serving certificate from the
// suite CA, in a kubelet-style Secret volume directory, and waits for /readyz.
// extraArgs are added to the command line (a --config, say).
func (s *suite) startWebhook(ctx context.Context, name string, extraArgs ...string) (*webhookProc, error) {
	cd := &certDir{dir: filepath.Join(s.dir, "webhook-"+name, "certs")}
	if _, err := cd.rotate(s.ca); err != nil {
		return nil, err
	}
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		ports, err := testenv.FreePorts(2)
		if err != nil {
			return nil, err
		}
		w := &webhookProc{
			name:      name,
			url:       "https://127.0.0.1:" + strconv.Itoa(ports[0]),
			healthURL: "http://127.0.0.1:" + strconv.Itoa(ports[1]),
			certs:     cd,
			ca:        s.ca,
		}
		w.proc, err = testenv.StartProcess(testenv.ProcessSpec{
			Name: "webhook-" + name,
			Path: s.webhook,
			Args: append([]string{
				"--tls-cert-file", cd.certFile(),
				"--tls-key-file", cd.keyFile(),
				"--listen-address", "127.0.0.1:" + strconv.Itoa(ports[0]),
				"--health-address", "127.0.0.1:" + strconv.Itoa(ports[1]),
				"--kubeconfig", s.cp.Kubeconfig,
				"--drain-delay", "0s",
				"--shutdown-grace", "5s",
				"--log-format", "text",
			}, extraArgs...),
			LogFile: filepath.Join(s.dir, "webhook-"+name, "webhook.log"),
		})
		if err != nil {
			return nil, err
		}
		err = testenv.WaitFor(ctx, w.proc, waitTimeout, func(ctx context.Context) error {
			return testenv.GetOK(ctx, w.healthURL+"/readyz")
		})
		if err == nil {
			return w, nil
		}
		_ = w.proc.Stop(5 * time.Second)
		lastErr = fmt.Errorf("webhook %s not ready: %w\n%s", name, err, w.proc.LogTail(20))
		if !strings.Contains(w.proc.LogTail(50), "address already in use") {
			break
		}
	}
	return nil, lastErr
}

func (w *webhookProc) stop() error { return w.proc.Stop(10 * time.Second) }

// requests sums sidecar_injector_admission_requests_total, all labels, and
// per reason.
func (w *webhookProc) requests(t *testing.T) (total float64, byReason map[string]float64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, w.healthURL+"/metrics", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("webhook metrics: %v", err)
	}
	defer resp.Body.Close()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("webhook metrics: %v", err)
	}
	byReason = map[string]float64{}
	if f := fams["sidecar_injector_admission_requests_total"]; f != nil {
		for _, m := range f.GetMetric() {
			v := m.GetCounter().GetValue()
			total += v
			for _, l := range m.GetLabel() {
				if l.GetName() == "reason" {
					byReason[l.GetValue()] += v
				}
			}
		}
	}
	return total, byReason
}

// requestsReach polls the webhook's counters until done says they are
// complete (the webhook counts a request just after answering it, so the
// apiserver's reply can overtake the count), at most 10 s.
func (w *webhookProc) requestsReach(t *testing.T, done func(total float64, byReason map[string]float64) bool) (float64, map[string]float64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		total, byReason := w.requests(t)
		if done(total, byReason) || time.Now().After(deadline) {
			return total, byReason
		}
		time.Sleep(pollEvery)
	}
}

// servingSerial is the serial of the certificate the webhook serves now.
func (w *webhookProc) servingSerial(ctx context.Context) (string, error) {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(w.ca.CertPEM)
	d := tls.Dialer{Config: &tls.Config{RootCAs: pool, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12}}
	conn, err := d.DialContext(ctx, "tcp", strings.TrimPrefix(w.url, "https://"))
	if err != nil {
		return "", err
	}
	defer conn.Close()
	return conn.(*tls.Conn).ConnectionState().PeerCertificates[0].SerialNumber.String(), nil
}

// certDir is a directory laid out like a kubelet Secret volume: the files
// are symlinks through ..data, which is swapped atomically on update.
type certDir struct {
	dir string
	mu  sync.Mutex
	gen int
}

func (c *certDir) certFile() string { return filepath.Join(c.dir, "tls.crt") }
func (c *certDir) keyFile() string  { return filepath.Join(c.dir, "tls.key") }

// rotate issues a new serving certificate for 127.0.0.1 under ca and swaps
// it in the way the kubelet updates a Secret volume.
func (c *certDir) rotate(ca *testenv.CA) (testenv.KeyPair, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	kp, err := ca.Issue(testenv.LoopbackServing("sidecar-injector-webhook", time.Hour))
	if err != nil {
		return kp, err
	}
	c.gen++
	gen := fmt.Sprintf("..gen-%03d", c.gen)
	if err := os.MkdirAll(filepath.Join(c.dir, gen), 0o755); err != nil {
		return kp, err
	}
	if err := kp.WriteFiles(filepath.Join(c.dir, gen, "tls.crt"), filepath.Join(c.dir, gen, "tls.key")); err != nil {
		return kp, err
	}
	tmp := filepath.Join(c.dir, "..data_tmp")
	_ = os.Remove(tmp)
	if err := os.Symlink(gen, tmp); err != nil {
		return kp, err
	}
	old, _ := os.Readlink(filepath.Join(c.dir, "..data"))
	if err := os.Rename(tmp, filepath.Join(c.dir, "..data")); err != nil {
		return kp, err
	}
	for _, f := range []string{"tls.crt", "tls.key"} {
		if _, err := os.Lstat(filepath.Join(c.dir, f)); errors.Is(err, os.ErrNotExist) {
			if err := os.Symlink(filepath.Join("..data", f), filepath.Join(c.dir, f)); err != nil {
				return kp, err
			}
		}
	}
	if old != "" && old != gen {
		_ = os.RemoveAll(filepath.Join(c.dir, old))
	}
	return kp, nil
}

// ---- webhook configurations ----

// scoped confines a configuration to namespaces labelled scopeLabel=scope
// and gives it a name of its own.
func scoped(mwc *admissionregistrationv1.MutatingWebhookConfiguration, scope string) *admissionregistrationv1.MutatingWebhookConfiguration {
	mwc = mwc.DeepCopy()
	mwc.Name = mwc.Name + "-e2e-" + scope
	for i := range mwc.Webhooks {
		ns := mwc.Webhooks[i].NamespaceSelector
		ns.MatchExpressions = append(ns.MatchExpressions, metav1.LabelSelectorRequirement{
			Key: scopeLabel, Operator: metav1.LabelSelectorOpIn, Values: []string{scope},
		})
	}
	return mwc
}

// injectorConfig is the chart's configuration for webhook w, scoped.
func injectorConfig(t *testing.T, w *webhookProc, scope string, change func(*testenv.WebhookOptions)) *admissionregistrationv1.MutatingWebhookConfiguration {
	t.Helper()
	o := testenv.DefaultWebhookOptions()
	o.URL = w.url
	o.CABundle = w.ca.CertPEM
	if change != nil {
		change(&o)
	}
	mwc, err := testenv.MutatingWebhookConfiguration(o)
	if err != nil {
		t.Fatal(err)
	}
	return scoped(mwc, scope)
}

// register creates a webhook configuration (replacing one of the same
// name) and deletes it when the test ends.
func register(t *testing.T, mwc *admissionregistrationv1.MutatingWebhookConfiguration) {
	t.Helper()
	ctx := t.Context()
	api := env.cs.AdmissionregistrationV1().MutatingWebhookConfigurations()
	if err := api.Delete(ctx, mwc.Name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
		t.Fatal(err)
	}
	if _, err := api.Create(ctx, mwc, metav1.CreateOptions{}); err != nil {
		t.Fatalf("register %s: the apiserver refused the webhook configuration: %v", mwc.Name, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := api.Delete(ctx, mwc.Name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			t.Errorf("delete %s: %v", mwc.Name, err)
		}
	})
}

// waitInjecting waits until a dry-run pod created in ns comes back with a
// sidecar: the apiserver has picked up the webhook configuration.
func waitInjecting(t *testing.T, ns string, podLabels map[string]string) {
	t.Helper()
	err := testenv.WaitFor(t.Context(), nil, waitTimeout, func(ctx context.Context) error {
		p := simplePod("probe", podLabels, nil)
		got, err := env.cs.CoreV1().Pods(ns).Create(ctx, p, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		if err != nil {
			return err
		}
		if !injected(got) {
			return errors.New("dry-run pod not injected yet")
		}
		return nil
	})
	if err != nil {
		t.Fatalf("webhook configuration not in effect in namespace %s: %v", ns, err)
	}
}

// ---- namespaces and pods ----

// newNamespace creates a namespace in scope with labels, waits for its
// default ServiceAccount, and deletes it when the test ends.
func newNamespace(t *testing.T, scope string, labels map[string]string) string {
	t.Helper()
	l := map[string]string{scopeLabel: scope}
	for k, v := range labels {
		l[k] = v
	}
	ns, err := env.cs.CoreV1().Namespaces().Create(t.Context(), &corev1.Namespace{
		ObjectMeta: metav1.ObjectMeta{GenerateName: "e2e-" + scope + "-", Labels: l},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = env.cs.CoreV1().Namespaces().Delete(ctx, ns.Name, metav1.DeleteOptions{})
	})
	if err := testenv.WaitForServiceAccount(t.Context(), env.cs, ns.Name, waitTimeout); err != nil {
		t.Fatal(err)
	}
	return ns.Name
}

// labelNamespace merges labels into an existing namespace (kube-system and
// the like) and restores its labels when the test ends.
func labelNamespace(t *testing.T, name string, labels map[string]string) {
	t.Helper()
	ctx := t.Context()
	api := env.cs.CoreV1().Namespaces()
	ns, err := api.Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		ns, err = api.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
		if err == nil {
			t.Cleanup(func() { _ = api.Delete(context.Background(), name, metav1.DeleteOptions{}) })
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	orig := ns.DeepCopy()
	if ns.Labels == nil {
		ns.Labels = map[string]string{}
	}
	for k, v := range labels {
		ns.Labels[k] = v
	}
	if _, err := api.Update(ctx, ns, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		cur, err := api.Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return
		}
		cur.Labels = orig.Labels
		_, _ = api.Update(ctx, cur, metav1.UpdateOptions{})
	})
	if err := testenv.WaitForServiceAccount(ctx, env.cs, name, waitTimeout); err != nil {
		t.Fatal(err)
	}
}

// appContainers are the sample workload's two containers.
func appContainers() []corev1.Container {
	return []corev1.Container{
		{Name: "web", Image: "nginx:1.27", Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}}},
		{Name: "worker", Image: "busybox:1.36", Command: []string{"sleep", "3600"}},
	}
}

func simplePod(name string, labels, annotations map[string]string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{GenerateName: name + "-", Labels: labels, Annotations: annotations},
		Spec:       corev1.PodSpec{Containers: appContainers()},
	}
}

// createPod creates a pod and returns what the apiserver stored.
func createPod(t *testing.T, ns string, p *corev1.Pod) *corev1.Pod {
	t.Helper()
	got, err := env.cs.CoreV1().Pods(ns).Create(t.Context(), p, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create pod in %s: %v", ns, err)
	}
	return got
}

// createDeployment creates a two-container Deployment and waits for the
// controller manager to create its pod.
func createDeployment(t *testing.T, ns, name string, podLabels map[string]string) *corev1.Pod {
	t.Helper()
	labels := map[string]string{"app": name}
	for k, v := range podLabels {
		labels[k] = v
	}
	one := int32(1)
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: appsv1.DeploymentSpec{
			Replicas: &one,
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": name}},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec:       corev1.PodSpec{Containers: appContainers()},
			},
		},
	}
	if _, err := env.cs.AppsV1().Deployments(ns).Create(t.Context(), d, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	return waitPod(t, env.cs, ns, "app="+name)
}

// waitPod waits for the first pod matching selector in ns.
func waitPod(t *testing.T, cs kubernetes.Interface, ns, selector string) *corev1.Pod {
	t.Helper()
	var pod *corev1.Pod
	err := testenv.WaitFor(t.Context(), nil, waitTimeout, func(ctx context.Context) error {
		l, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: selector})
		if err != nil {
			return err
		}
		if len(l.Items) == 0 {
			return fmt.Errorf("no pod %q in %s yet", selector, ns)
		}
		pod = &l.Items[0]
		return nil
	})
	if err != nil {
		t.Fatalf("%v (is kube-controller-manager running? see its log)", err)
	}
	return pod
}

// ---- what injection looks like ----

func containerNames(cs []corev1.Container) []string {
	var n []string
	for _, c := range cs {
		n = append(n, c.Name)
	}
	return n
}

func count(names []string, want string) int {
	n := 0
	for _, s := range names {
		if s == want {
			n++
		}
	}
	return n
}

// injected says whether the pod carries anything of ours.
func injected(p *corev1.Pod) bool {
	all := append(containerNames(p.Spec.InitContainers), containerNames(p.Spec.Containers)...)
	_, status := p.Annotations[inject.StatusAnnotation]
	return status || count(all, inject.ProxyContainerName) > 0 || count(all, inject.InitContainerName) > 0 || hasVolume(p, inject.ConfigVolumeName)
}

func hasVolume(p *corev1.Pod, name string) bool {
	for _, v := range p.Spec.Volumes {
		if v.Name == name {
			return true
		}
	}
	return false
}

// proxyContainer returns the envoy container and whether it is a native
// sidecar (an init container with restartPolicy Always).
func proxyContainer(p *corev1.Pod) (*corev1.Container, bool) {
	for i := range p.Spec.InitContainers {
		if c := &p.Spec.InitContainers[i]; c.Name == inject.ProxyContainerName {
			return c, c.RestartPolicy != nil && *c.RestartPolicy == corev1.ContainerRestartPolicyAlways
		}
	}
	for i := range p.Spec.Containers {
		if c := &p.Spec.Containers[i]; c.Name == inject.ProxyContainerName {
			return c, false
		}
	}
	return nil, false
}

// assertInjected checks the pod has exactly one iptables-init, one envoy,
// the envoy-config volume and a status annotation, and keeps the app's
// containers; it returns the parsed status.
func assertInjected(t *testing.T, p *corev1.Pod) *inject.Status {
	t.Helper()
	inits, ctrs := containerNames(p.Spec.InitContainers), containerNames(p.Spec.Containers)
	all := append(append([]string{}, inits...), ctrs...)
	if n := count(inits, inject.InitContainerName); n != 1 {
		t.Errorf("pod %s: %d %s init containers, want 1 (init containers %v)", p.Name, n, inject.InitContainerName, inits)
	}
	if n := count(all, inject.ProxyContainerName); n != 1 {
		t.Errorf("pod %s: %d %s containers, want 1 (init %v, containers %v)", p.Name, n, inject.ProxyContainerName, inits, ctrs)
	}
	if !hasVolume(p, inject.ConfigVolumeName) {
		t.Errorf("pod %s: no %s volume", p.Name, inject.ConfigVolumeName)
	}
	for _, app := range []string{"web", "worker"} {
		if count(ctrs, app) != 1 {
			t.Errorf("pod %s: app container %s missing or duplicated: %v", p.Name, app, ctrs)
		}
	}
	raw, ok := p.Annotations[inject.StatusAnnotation]
	if !ok {
		t.Fatalf("pod %s: no %s annotation", p.Name, inject.StatusAnnotation)
	}
	st, err := inject.ParseStatus(raw)
	if err != nil {
		t.Fatalf("pod %s: %v", p.Name, err)
	}
	return st
}

// assertUntouched checks the pod has nothing of ours.
func assertUntouched(t *testing.T, p *corev1.Pod) {
	t.Helper()
	if injected(p) {
		b, _ := json.Marshal(map[string]any{"initContainers": containerNames(p.Spec.InitContainers), "containers": containerNames(p.Spec.Containers), "annotations": p.Annotations})
		t.Errorf("pod %s/%s was injected, want it untouched: %s", p.Namespace, p.Name, b)
	}
}

// warnings collects the warnings the apiserver returns to a client, which
// kubectl would print.
type warnings struct {
	mu   sync.Mutex
	list []string
}

func (w *warnings) HandleWarningHeader(code int, agent, text string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.list = append(w.list, text)
}

func (w *warnings) get() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]string(nil), w.list...)
}

// clientWithWarnings is a clientset whose warnings land in the returned list.
func clientWithWarnings(t *testing.T) (kubernetes.Interface, *warnings) {
	t.Helper()
	w := &warnings{}
	cfg := *env.restCfg
	cfg.WarningHandler = w
	cs, err := kubernetes.NewForConfig(&cfg)
	if err != nil {
		t.Fatal(err)
	}
	return cs, w
}

// runHelm runs the helm binary against the control plane; a failure ends
// the test with helm's output. It returns standard output.
func runHelm(t *testing.T, ctx context.Context, args ...string) string {
	t.Helper()
	cmd := exec.CommandContext(ctx, env.cp.Binaries.Helm, append(args, "--kubeconfig", env.cp.Kubeconfig)...)
	var out, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("helm %s: %v\n%s%s", strings.Join(args, " "), err, out.String(), stderr.String())
	}
	return out.String()
}

// scopeSelectorValue is the --set-json value that confines a release's
// webhook entries to the namespaces labelled with scope.
func scopeSelectorValue(scope string) string {
	return `webhook.extraNamespaceSelector=[{"key":"` + scopeLabel + `","operator":"In","values":["` + scope + `"]}]`
}
