//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/yaml"

	"github.com/sidecar-injector/sidecar-injector/envoy"
	polling "github.com/sidecar-injector/sidecar-injector/internal/poll"
	"github.com/sidecar-injector/sidecar-injector/pkg/controller"
	"github.com/sidecar-injector/sidecar-injector/pkg/inject"
	"github.com/sidecar-injector/sidecar-injector/pkg/nsview"
	"github.com/sidecar-injector/sidecar-injector/test/testenv"
)

// controllerLabel puts a namespace under one test's controllers: they run
// with --namespace-selector=controllerLabel=NAME, so tests (and the
// suite's controller beside the shared webhook, which runs with
// !e2e.sidecar.io/controller) never manage each other's namespaces.
const controllerLabel = "e2e.sidecar.io/controller"

// The bound: labelling a namespace makes envoy-config appear within 5 s.
const appearWithin = 5 * time.Second

// swappableConfig is a controller.ConfigSource the test changes, as the
// webhook's reload of its config file does.
type swappableConfig struct {
	p atomic.Pointer[inject.Injector]
}

func (s *swappableConfig) Injector() *inject.Injector { return s.p.Load() }

func (s *swappableConfig) set(t *testing.T, cfg inject.Config) *inject.Injector {
	t.Helper()
	in, err := inject.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	s.p.Store(in)
	return in
}

// ctl is one controller running in the test process against the real apiserver.
type ctl struct {
	c   *controller.Controller
	reg *prometheus.Registry
}

// startController runs a controller for the namespaces labelled
// controllerLabel=name, as the identity of restCfg, until the test ends.
func startController(t *testing.T, name string, src controller.ConfigSource, restCfg *rest.Config) *ctl {
	t.Helper()
	cfg := controller.DefaultConfig()
	cfg.NamespaceSelector = controllerLabel + "=" + name
	cfg.PodRecount = 200 * time.Millisecond
	cfg.ConfigPoll = 100 * time.Millisecond
	cs, md, err := controller.NewClients(restCfg)
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})).With("controller", name)
	c, err := controller.New(cfg, cs, md, src, envoy.DefaultBootstrapConfig(), reg, log)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("controller %s: %v", name, err)
			}
		case <-time.After(30 * time.Second):
			t.Errorf("controller %s did not stop within 30s", name)
		}
	})
	if err := testenv.WaitFor(t.Context(), nil, waitTimeout, func(context.Context) error {
		if !c.HasSynced() {
			return errors.New("caches not synced (is the controller allowed to list and watch namespaces, envoy-config ConfigMaps and pods?)")
		}
		return nil
	}); err != nil {
		t.Fatalf("controller %s: %v", name, err)
	}
	return &ctl{c: c, reg: reg}
}

// metric reads one series of the controller's registry ("" labels: no labels).
func (c *ctl) metric(t *testing.T, name, label, value string) float64 {
	t.Helper()
	fams, err := c.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			match := label == ""
			for _, l := range m.GetLabel() {
				match = match || (l.GetName() == label && l.GetValue() == value)
			}
			if match {
				if g := m.GetGauge(); g != nil {
					return g.GetValue()
				}
				return m.GetCounter().GetValue()
			}
		}
	}
	t.Fatalf("no series %s{%s=%q}", name, label, value)
	return 0
}

func setNamespaceLabel(t *testing.T, ns, key string, value *string) {
	t.Helper()
	patch, err := json.Marshal(map[string]any{"metadata": map[string]any{"labels": map[string]any{key: value}}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := env.cs.CoreV1().Namespaces().Patch(t.Context(), ns, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
}

func envoyConfig(ctx context.Context, ns string) (*corev1.ConfigMap, error) {
	return env.cs.CoreV1().ConfigMaps(ns).Get(ctx, inject.ConfigMapName, metav1.GetOptions{})
}

// poll calls cond, each call bounded to 5 s, until it returns nil or within
// passes (internal/poll); it returns how long it took.
func poll(t *testing.T, within time.Duration, what string, cond func(ctx context.Context) error) time.Duration {
	t.Helper()
	return polling.Until(t, within, what, func() error {
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		defer cancel()
		return cond(ctx)
	})
}

func wantBootstrap(t *testing.T, cfg inject.Config) string {
	t.Helper()
	b, err := envoy.RenderBootstrap(controller.BootstrapFor(envoy.DefaultBootstrapConfig(), &cfg))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// hasContent checks ns's envoy-config is ours with the given bootstrap.
func hasContent(ns, bootstrap string) func(ctx context.Context) error {
	return func(ctx context.Context) error {
		cm, err := envoyConfig(ctx, ns)
		if err != nil {
			return err
		}
		if cm.Labels[nsview.ManagedByLabel] != nsview.ManagedByValue {
			return fmt.Errorf("labels %v: not ours", cm.Labels)
		}
		if cm.Data[inject.ConfigMapKey] != bootstrap {
			return errors.New("content is not the expected bootstrap yet")
		}
		return nil
	}
}

func gone(ns string) func(ctx context.Context) error {
	return func(ctx context.Context) error {
		_, err := envoyConfig(ctx, ns)
		if apierrors.IsNotFound(err) {
			return nil
		}
		return fmt.Errorf("still there (%v)", err)
	}
}

// waitEvent waits for an events.k8s.io Event of reason in ns.
func waitEvent(t *testing.T, ns, reason string) {
	t.Helper()
	poll(t, waitTimeout, "Event "+reason+" in "+ns, func(ctx context.Context) error {
		l, err := env.cs.EventsV1().Events(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return err
		}
		for _, e := range l.Items {
			if e.Reason == reason && e.ReportingController == controller.ReportingController {
				return nil
			}
		}
		return fmt.Errorf("%d events, none with reason %s", len(l.Items), reason)
	})
}

var enabled = "enabled"

// TestControllerEnvoyConfig: labelling a namespace makes envoy-config
// appear within 5 s with the rendered bootstrap; the content follows the
// bootstrap settings of the injector config; unlabelling removes ours; a
// user's own envoy-config is left untouched, with an Event on the
// namespace and an admission warning.
func TestControllerEnvoyConfig(t *testing.T) {
	t.Parallel()
	const name = "envoy-config"
	src := &swappableConfig{}
	cfg := inject.DefaultConfig()
	src.set(t, cfg)
	c := startController(t, name, src, env.restCfg)

	ns := newNamespace(t, "controller", map[string]string{controllerLabel: name})
	poll(t, appearWithin, "the controller sees the new namespace", func(context.Context) error {
		if s, _ := c.c.NamespaceState(ns); s != nsview.ConfigMapMissing {
			return fmt.Errorf("unlabelled namespace: envoy-config state %q, want %q (none written)", s, nsview.ConfigMapMissing)
		}
		return nil
	})
	setNamespaceLabel(t, ns, inject.NamespaceLabel, &enabled)
	took := poll(t, appearWithin, "envoy-config after labelling "+ns, hasContent(ns, wantBootstrap(t, cfg)))
	t.Logf("envoy-config appeared %s after the label", took.Round(time.Millisecond))
	// The controller records the state once its write returns, a moment
	// after the ConfigMap is visible in the API.
	poll(t, appearWithin, "the controller's state of "+ns, func(context.Context) error {
		if s, psa := c.c.NamespaceState(ns); s != nsview.ConfigMapOurs || psa != "" || len(c.c.Warnings(ns)) != 0 {
			return fmt.Errorf("state %q, Pod Security %q, warnings %q: want ours, none, none", s, psa, c.c.Warnings(ns))
		}
		return nil
	})

	// The bootstrap settings change (the xDS Service moves): the content follows.
	cfg.XDS.Address, cfg.XDS.Port = "xds.elsewhere.svc", 18443
	src.set(t, cfg)
	want := wantBootstrap(t, cfg)
	if !strings.Contains(want, "xds.elsewhere.svc") || !strings.Contains(want, "18443") {
		t.Fatalf("the rendered bootstrap does not carry the new xDS address:\n%s", want)
	}
	took = poll(t, appearWithin, "envoy-config after the config change", hasContent(ns, want))
	t.Logf("envoy-config updated %s after the config change", took.Round(time.Millisecond))

	// Pod Security baseline: a warning at admission.
	baseline := "baseline"
	setNamespaceLabel(t, ns, nsview.PodSecurityEnforceLabel, &baseline)
	poll(t, appearWithin, "Pod Security warning", func(context.Context) error {
		if _, psa := c.c.NamespaceState(ns); psa != "baseline" {
			return fmt.Errorf("Pod Security %q", psa)
		}
		if w := c.c.Warnings(ns); len(w) != 1 || !strings.Contains(w[0], "NET_ADMIN") {
			return fmt.Errorf("warnings %q", w)
		}
		return nil
	})

	// Unlabelling removes ours.
	setNamespaceLabel(t, ns, inject.NamespaceLabel, nil)
	took = poll(t, appearWithin, "envoy-config removed after unlabelling", gone(ns))
	t.Logf("envoy-config removed %s after the label went", took.Round(time.Millisecond))

	// A user's own envoy-config: never overwritten nor deleted.
	userNS := newNamespace(t, "controller", map[string]string{controllerLabel: name})
	own := &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: inject.ConfigMapName},
		Data:       map[string]string{inject.ConfigMapKey: "# my own bootstrap\n"},
	}
	created, err := env.cs.CoreV1().ConfigMaps(userNS).Create(t.Context(), own, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	setNamespaceLabel(t, userNS, inject.NamespaceLabel, &enabled)
	waitEvent(t, userNS, controller.EventEnvoyConfigNotManaged)
	poll(t, appearWithin, "foreign state", func(context.Context) error {
		if s, _ := c.c.NamespaceState(userNS); s != nsview.ConfigMapForeign {
			return fmt.Errorf("state %q", s)
		}
		return nil
	})
	warnings := c.c.Warnings(userNS)
	if len(warnings) != 1 || !strings.Contains(warnings[0], "is not managed by sidecar-injector; left untouched") {
		t.Errorf("admission warnings for the user's envoy-config: %q", warnings)
	}
	setNamespaceLabel(t, userNS, inject.NamespaceLabel, nil)
	time.Sleep(time.Second) // give a wrong delete the time to happen
	got, err := envoyConfig(t.Context(), userNS)
	if err != nil {
		t.Fatalf("the user's envoy-config is gone: %v", err)
	}
	if got.ResourceVersion != created.ResourceVersion || got.Data[inject.ConfigMapKey] != "# my own bootstrap\n" {
		t.Errorf("the user's envoy-config changed: resourceVersion %s -> %s, data %q", created.ResourceVersion, got.ResourceVersion, got.Data)
	}
}

// TestControllerPodStates: a pod injected with another config hash counts
// as stale; a pod created while the webhook was down with failurePolicy
// Ignore counts as missing; explain --cluster lists both with the fix.
func TestControllerPodStates(t *testing.T) {
	t.Parallel()
	const name = "pod-states"
	shared(t)

	// stale: injected by the shared webhook (built-in config)...
	staleNS := newNamespace(t, scopeMain, map[string]string{testenv.NamespaceLabel: "enabled", controllerLabel: name})
	waitInjecting(t, staleNS, nil)
	assertInjected(t, createDeployment(t, staleNS, "shop", nil))

	// missing: a webhook that is down, with failurePolicy Ignore.
	const scope = "controller-down"
	ports, err := testenv.FreePorts(1)
	if err != nil {
		t.Fatal(err)
	}
	down := &webhookProc{url: "https://127.0.0.1:" + strconv.Itoa(ports[0]), ca: env.ca}
	register(t, injectorConfig(t, down, scope, func(o *testenv.WebhookOptions) {
		o.FailurePolicy = admissionregistrationv1.Ignore
	}))
	missingNS := newNamespace(t, scope, map[string]string{testenv.NamespaceLabel: "enabled", controllerLabel: name})
	assertUntouched(t, createDeployment(t, missingNS, "late", nil))

	// ...seen by a controller whose config has changed since (another hash).
	src := &swappableConfig{}
	newer := inject.DefaultConfig()
	newer.Proxy.LogLevel = "debug"
	in := src.set(t, newer)
	c := startController(t, name, src, env.restCfg)
	states := func(current, stale, missing float64) func(context.Context) error {
		return func(context.Context) error {
			got := [3]float64{
				c.metric(t, "sidecar_injector_pods", "state", "current"),
				c.metric(t, "sidecar_injector_pods", "state", "stale"),
				c.metric(t, "sidecar_injector_pods", "state", "missing"),
			}
			if got != [3]float64{current, stale, missing} {
				return fmt.Errorf("pods current/stale/missing %v, want %v", got, [3]float64{current, stale, missing})
			}
			return nil
		}
	}
	poll(t, waitTimeout, "pod states with the newer config", states(0, 1, 1))

	// explain --cluster, as a library...
	md, err := metadata.NewForConfig(env.restCfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ ns, deployment, state string }{{staleNS, "shop", "stale"}, {missingNS, "late", "missing"}} {
		r, err := controller.BuildClusterReport(t.Context(), env.cs, md, in, controller.ReportOptions{Namespace: tc.ns, ConfigSource: "test"})
		if err != nil {
			t.Fatal(err)
		}
		checkReport(t, r, tc.ns, tc.deployment, tc.state)
	}
	// ...and through the binary, with the config as a file.
	cfgFile := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(cfgFile, []byte("apiVersion: sidecar.io/v1alpha1\nkind: InjectorConfig\nproxy:\n  logLevel: debug\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ ns, deployment, state string }{{staleNS, "shop", "stale"}, {missingNS, "late", "missing"}} {
		ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
		cmd := exec.CommandContext(ctx, env.injector, "explain", "--cluster", "--kubeconfig", env.cp.Kubeconfig, "--config", cfgFile, "-n", tc.ns, "-o", "json")
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		cancel()
		if err != nil {
			t.Fatalf("sidecar-injector explain --cluster: %v\n%s\n(is the --cluster hook in runExplain, cmd/sidecar-injector/manifest.go?)", err, stderr.String())
		}
		var r controller.ClusterReport
		if err := json.Unmarshal(out, &r); err != nil {
			t.Fatalf("explain --cluster -o json: %v\n%s", err, out)
		}
		if r.ConfigHash != in.Hash() {
			t.Errorf("explain --cluster --config: hash %s, want %s", r.ConfigHash, in.Hash())
		}
		checkReport(t, &r, tc.ns, tc.deployment, tc.state)
	}

	text, err := exec.CommandContext(t.Context(), env.injector, "explain", "--cluster", "--kubeconfig", env.cp.Kubeconfig, "--config", cfgFile, "-n", staleNS).Output()
	if err != nil || !strings.Contains(string(text), "fix:     kubectl rollout restart deployment/shop -n "+staleNS) {
		t.Errorf("explain --cluster (text): %v\n%s", err, text)
	}
	t.Logf("sidecar-injector explain --cluster -n %s:\n%s", staleNS, text)

	// Back to the config the pod was injected with: it is current again.
	src.set(t, inject.DefaultConfig())
	poll(t, waitTimeout, "pod states with the built-in config", states(1, 0, 1))
}

// checkReport wants exactly one workload in ns: Deployment name, with one
// pod in state and the rollout restart that fixes it.
func checkReport(t *testing.T, r *controller.ClusterReport, ns, name, state string) {
	t.Helper()
	var nr *controller.NamespaceReport
	for i := range r.Namespaces {
		if r.Namespaces[i].Name == ns {
			nr = &r.Namespaces[i]
		}
	}
	if nr == nil || len(nr.Workloads) != 1 {
		t.Fatalf("report for %s: %+v; want one workload", ns, r.Namespaces)
	}
	w := nr.Workloads[0]
	pods := w.Stale
	if state == "missing" {
		pods = w.Missing
	}
	if w.Kind != "Deployment" || w.Name != name || len(pods) != 1 || len(w.Stale)+len(w.Missing) != 1 {
		t.Errorf("workload %+v: want Deployment %s with one %s pod", w, name, state)
	}
	if want := "kubectl rollout restart deployment/" + name + " -n " + ns; w.Fix != want {
		t.Errorf("fix %q, want %q", w.Fix, want)
	}
}

// TestControllerChartRBAC runs the controller as a ServiceAccount bound to
// the chart's own ClusterRole: the RBAC the chart ships is enough to sync,
// create, update and delete envoy-config and record Events, with no write
// errors.
func TestControllerChartRBAC(t *testing.T) {
	t.Parallel()
	const name = "rbac"
	ctx := t.Context()
	manifests, err := testenv.RenderChart(ctx, env.cp.Binaries.Helm, filepath.Join(env.root, "charts", "sidecar-injector"),
		"rbac-e2e", "sidecar-injector", env.cp.Versions.Kubernetes)
	if err != nil {
		t.Fatal(err)
	}
	role := chartClusterRole(t, manifests)
	role.Name = "sidecar-injector-e2e-" + name
	role.Labels = nil
	if _, err := env.cs.RbacV1().ClusterRoles().Create(ctx, role, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = env.cs.RbacV1().ClusterRoles().Delete(context.Background(), role.Name, metav1.DeleteOptions{})
	})

	saNS := newNamespace(t, "controller", nil)
	sa, err := env.cs.CoreV1().ServiceAccounts(saNS).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "webhook"}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	binding := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: role.Name},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role.Name},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: sa.Name, Namespace: saNS}},
	}
	if _, err := env.cs.RbacV1().ClusterRoleBindings().Create(ctx, binding, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = env.cs.RbacV1().ClusterRoleBindings().Delete(context.Background(), binding.Name, metav1.DeleteOptions{})
	})
	tok, err := env.cs.CoreV1().ServiceAccounts(saNS).CreateToken(ctx, sa.Name, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: new(int64(3600))},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	asSA := rest.AnonymousClientConfig(env.restCfg)
	asSA.BearerToken = tok.Status.Token
	// The ServiceAccount cannot do more than the chart grants.
	if cs, err := kubernetes.NewForConfig(asSA); err != nil {
		t.Fatal(err)
	} else if _, err := cs.CoreV1().Secrets(saNS).List(ctx, metav1.ListOptions{}); !apierrors.IsForbidden(err) {
		t.Fatalf("the ServiceAccount lists Secrets (%v): the test identity is broader than the chart's role", err)
	}

	src := &swappableConfig{}
	cfg := inject.DefaultConfig()
	src.set(t, cfg)
	c := startController(t, name, src, asSA)

	ns := newNamespace(t, "controller", map[string]string{controllerLabel: name})
	setNamespaceLabel(t, ns, inject.NamespaceLabel, &enabled)
	poll(t, appearWithin, "create as the chart's role", hasContent(ns, wantBootstrap(t, cfg)))
	cfg.XDS.Port = 18001
	src.set(t, cfg)
	poll(t, appearWithin, "update as the chart's role", hasContent(ns, wantBootstrap(t, cfg)))
	setNamespaceLabel(t, ns, inject.NamespaceLabel, nil)
	poll(t, appearWithin, "delete as the chart's role", gone(ns))

	userNS := newNamespace(t, "controller", map[string]string{controllerLabel: name})
	if _, err := env.cs.CoreV1().ConfigMaps(userNS).Create(ctx, &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: inject.ConfigMapName}, Data: map[string]string{inject.ConfigMapKey: "mine"},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	setNamespaceLabel(t, userNS, inject.NamespaceLabel, &enabled)
	waitEvent(t, userNS, controller.EventEnvoyConfigNotManaged)
	if n := c.metric(t, "sidecar_injector_envoy_config_writes_total", "result", controller.WriteError); n != 0 {
		t.Errorf("%v write errors as the chart's role: the ClusterRole misses a permission", n)
	}
}

func chartClusterRole(t *testing.T, manifests []byte) *rbacv1.ClusterRole {
	t.Helper()
	objs, err := testenv.SplitManifests(manifests)
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range objs {
		if o.Kind != "ClusterRole" || !strings.HasSuffix(o.Name, "-controller") {
			continue
		}
		var role rbacv1.ClusterRole
		if err := yaml.Unmarshal(o.Raw, &role); err != nil {
			t.Fatal(err)
		}
		return &role
	}
	t.Fatal("the chart renders no controller ClusterRole")
	return nil
}
