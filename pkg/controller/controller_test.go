package controller

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/fake"
	metadatafake "k8s.io/client-go/metadata/fake"

	"github.com/sidecar-injector/sidecar-injector/envoy"
	"github.com/sidecar-injector/sidecar-injector/internal/poll"
	"github.com/sidecar-injector/sidecar-injector/pkg/inject"
	"github.com/sidecar-injector/sidecar-injector/pkg/nsview"
)

func testConfig() Config {
	c := DefaultConfig()
	c.PodRecount = 20 * time.Millisecond
	c.ConfigPoll = 20 * time.Millisecond
	c.PodFieldSelector = "" // the fake metadata client does not filter
	return c
}

func namespace(name string, labels map[string]string) *corev1.Namespace {
	return &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}}
}

func podMeta(ns, name string, labels, annotations map[string]string) *metav1.PartialObjectMetadata {
	return &metav1.PartialObjectMetadata{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: labels, Annotations: annotations},
	}
}

// metaScheme is a scheme for the fake metadata client.
func metaScheme(t *testing.T) *runtime.Scheme {
	s := metadatafake.NewTestScheme()
	if err := metav1.AddMetaToScheme(s); err != nil {
		t.Fatal(err)
	}
	return s
}

// eventually waits up to 10 s for cond (internal/poll).
func eventually(t *testing.T, what string, cond func() error) {
	t.Helper()
	poll.Until(t, 10*time.Second, what, cond)
}

// TestControllerWithFakes runs the whole controller against client-go's
// fake clientset (which implements server-side apply with field ownership)
// and fake metadata client. The same behaviour is checked against a real
// apiserver by test/e2e/controller_test.go.
func TestControllerWithFakes(t *testing.T) {
	t.Parallel()
	enabled := map[string]string{inject.NamespaceLabel: "enabled"}
	mine := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: inject.ConfigMapName, Namespace: "mine"}, Data: map[string]string{inject.ConfigMapKey: "# my own bootstrap\n"}}
	cs := fake.NewClientset(
		namespace("shop", enabled),
		namespace("mine", enabled),
		namespace("strict", map[string]string{inject.NamespaceLabel: "enabled", nsview.PodSecurityEnforceLabel: "baseline"}),
		namespace("plain", nil),
		namespace("kube-system", enabled),
		namespace("typo", map[string]string{inject.NamespaceLabel: "true"}),
		mine,
		&rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: "release-controller", UID: "owner-uid"}},
	)
	in, err := inject.New(inject.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	cur := in.Hash()
	md := metadatafake.NewSimpleMetadataClient(metaScheme(t),
		podMeta("shop", "web-1", nil, map[string]string{inject.StatusAnnotation: status(cur)}),
		podMeta("shop", "web-2", nil, map[string]string{inject.StatusAnnotation: status("0000000000000000")}),
		podMeta("shop", "late", nil, nil),
		podMeta("shop", "out", map[string]string{inject.InjectKey: "false"}, nil),
		podMeta("plain", "app", nil, nil),
	)
	reg := prometheus.NewRegistry()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	cfg := testConfig()
	cfg.OwnerClusterRole = "release-controller"
	c, err := New(cfg, cs, md, StaticConfig(in), envoy.DefaultBootstrapConfig(), reg, log)
	if err != nil {
		t.Fatal(err)
	}
	runSingle(t, c, cs)

	want, err := envoy.RenderBootstrap(BootstrapFor(envoy.DefaultBootstrapConfig(), new(in.Config())))
	if err != nil {
		t.Fatal(err)
	}
	getCM := func(ns string) (*corev1.ConfigMap, error) {
		return cs.CoreV1().ConfigMaps(ns).Get(t.Context(), inject.ConfigMapName, metav1.GetOptions{})
	}
	for _, ns := range []string{"shop", "strict"} {
		eventually(t, "envoy-config in "+ns, func() error {
			cm, err := getCM(ns)
			if err != nil {
				return err
			}
			if cm.Data[inject.ConfigMapKey] != string(want) || cm.Labels[nsview.ManagedByLabel] != nsview.ManagedByValue {
				return fmt.Errorf("content or labels not ours: %v", cm.Labels)
			}
			if r := cm.OwnerReferences; len(r) != 1 || r[0].UID != "owner-uid" || r[0].Kind != "ClusterRole" || r[0].Name != "release-controller" || r[0].APIVersion != "rbac.authorization.k8s.io/v1" {
				return fmt.Errorf("ownerReferences %+v: want the ClusterRole release-controller", r)
			}
			return nil
		})
	}
	for _, ns := range []string{"plain", "kube-system"} {
		if _, err := getCM(ns); !apierrors.IsNotFound(err) {
			t.Errorf("envoy-config in %s: %v, want none", ns, err)
		}
	}
	got, err := getCM("mine")
	if err != nil || got.Data[inject.ConfigMapKey] != "# my own bootstrap\n" || got.Labels[nsview.ManagedByLabel] != "" || len(got.OwnerReferences) != 0 {
		t.Errorf("the user's envoy-config was changed: %+v, %v", got, err)
	}

	eventually(t, "admission state", func() error {
		type st struct {
			State nsview.ConfigMapState
			PSA   string
			Warn  int
		}
		gotStates := map[string]st{}
		for _, ns := range []string{"shop", "mine", "strict", "plain", "nowhere", "typo"} {
			s, psa := c.NamespaceState(ns)
			gotStates[ns] = st{s, psa, len(c.Warnings(ns))}
		}
		wantStates := map[string]st{
			"shop":    {nsview.ConfigMapOurs, "", 0},
			"mine":    {nsview.ConfigMapForeign, "", 1},
			"strict":  {nsview.ConfigMapOurs, "baseline", 1},
			"plain":   {nsview.ConfigMapMissing, "", 1},
			"nowhere": {nsview.ConfigMapUnknown, "", 0},
			"typo":    {nsview.ConfigMapMissing, "", 1},
		}
		if diff := cmp.Diff(wantStates, gotStates); diff != "" {
			return fmt.Errorf("(-want +got):\n%s", diff)
		}
		return nil
	})
	if w := c.Warnings("mine"); !strings.Contains(w[0], "not managed by sidecar-injector") {
		t.Errorf("warning for a foreign envoy-config: %q", w)
	}

	eventually(t, "metrics", func() error {
		want := map[string]float64{
			`sidecar_injector_pods{state="current"}`:       1,
			`sidecar_injector_pods{state="stale"}`:         1,
			`sidecar_injector_pods{state="missing"}`:       1, // late; out opted out; app in an unlabelled namespace
			`sidecar_injector_namespaces{state="ours"}`:    2,
			`sidecar_injector_namespaces{state="foreign"}`: 1,
			`sidecar_injector_namespaces{state="missing"}`: 0,
			`sidecar_injector_controller_synced`:           1,
			`sidecar_injector_controller_leader`:           1,
			`sidecar_injector_namespaces_label_invalid`:    1,
		}
		return compareMetrics(reg, want)
	})
	if n := metricValue(c.metrics.events.WithLabelValues(EventEnvoyConfigNotManaged, EventRecorded)); n < 1 {
		t.Errorf("no %s Event recorded for the user's envoy-config", EventEnvoyConfigNotManaged)
	}
	eventually(t, "the Event reaches the API", func() error {
		l, err := cs.EventsV1().Events("mine").List(t.Context(), metav1.ListOptions{})
		if err != nil {
			return err
		}
		for _, e := range l.Items {
			if e.Reason == EventEnvoyConfigNotManaged && e.Regarding.Kind == "Namespace" && e.Regarding.Name == "mine" {
				return nil
			}
		}
		return fmt.Errorf("%d events, none %s on namespace mine", len(l.Items), EventEnvoyConfigNotManaged)
	})

	eventually(t, "the invalid label's Event", func() error {
		l, err := cs.EventsV1().Events("typo").List(t.Context(), metav1.ListOptions{})
		if err != nil {
			return err
		}
		for _, e := range l.Items {
			if e.Reason == EventNamespaceLabelInvalid && strings.Contains(e.Note, `sidecar-injection="true"`) && strings.Contains(e.Note, "enabled, disabled, audit") {
				return nil
			}
		}
		return fmt.Errorf("%d events, none %s on namespace typo", len(l.Items), EventNamespaceLabelInvalid)
	})

	// Unlabelling removes ours, and only ours, once no pod needs it.
	for _, name := range []string{"shop", "mine"} {
		ns, err := cs.CoreV1().Namespaces().Get(t.Context(), name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		delete(ns.Labels, inject.NamespaceLabel)
		if _, err := cs.CoreV1().Namespaces().Update(t.Context(), ns, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	// shop still holds pods with a sidecar: they need the bootstrap to
	// restart, so it stays until they are gone.
	time.Sleep(300 * time.Millisecond)
	if _, err := getCM("shop"); err != nil {
		t.Fatalf("envoy-config removed while injected pods remain: %v", err)
	}
	for _, p := range []string{"web-1", "web-2"} {
		if err := md.Resource(podsResource).Namespace("shop").Delete(t.Context(), p, metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, "envoy-config removed from shop", func() error {
		if _, err := getCM("shop"); !apierrors.IsNotFound(err) {
			return fmt.Errorf("still there (%v)", err)
		}
		return nil
	})
	if got, err := getCM("mine"); err != nil || got.Data[inject.ConfigMapKey] != "# my own bootstrap\n" {
		t.Errorf("the user's envoy-config was touched on unlabel: %+v, %v", got, err)
	}
	if n := metricValue(c.metrics.writes.WithLabelValues(WriteDeleted)); n != 1 {
		t.Errorf("writes{deleted} = %v, want 1", n)
	}
}

// compareMetrics checks the listed series of reg.
func compareMetrics(reg *prometheus.Registry, want map[string]float64) error {
	fams, err := reg.Gather()
	if err != nil {
		return err
	}
	got := map[string]float64{}
	for _, f := range fams {
		for _, m := range f.GetMetric() {
			name := f.GetName()
			if len(m.GetLabel()) > 0 {
				var ls []string
				for _, l := range m.GetLabel() {
					ls = append(ls, fmt.Sprintf("%s=%q", l.GetName(), l.GetValue()))
				}
				name += "{" + strings.Join(ls, ",") + "}"
			}
			if _, ok := want[name]; ok {
				switch {
				case m.GetGauge() != nil:
					got[name] = m.GetGauge().GetValue()
				case m.GetCounter() != nil:
					got[name] = m.GetCounter().GetValue()
				}
			}
		}
	}
	if diff := cmp.Diff(want, got); diff != "" {
		return fmt.Errorf("metrics (-want +got):\n%s", diff)
	}
	return nil
}

// TestFieldConflict reads the owner out of a real apiserver's conflict.
func TestFieldConflict(t *testing.T) {
	t.Parallel()
	err := apierrors.NewApplyConflict([]metav1.StatusCause{{
		Type:    metav1.CauseTypeFieldManagerConflict,
		Message: `conflict with "kubectl-create" using v1: .data.envoy.yaml`,
		Field:   ".data.envoy.yaml",
	}}, `Apply failed with 1 conflict: conflict with "kubectl-create" using v1: .data.envoy.yaml`)
	owner, ok := fieldConflict(fmt.Errorf("apply: %w", err))
	if !ok || owner != "kubectl-create" {
		t.Errorf("fieldConflict = %q, %v; want kubectl-create, true", owner, ok)
	}
	if _, ok := fieldConflict(apierrors.NewConflict(corev1.Resource("configmaps"), "envoy-config", fmt.Errorf("the object has been modified"))); ok {
		t.Error("a resourceVersion conflict is not a field conflict")
	}
}

// TestAdmissionLookupAllocs: the admission hot path reads the state
// without allocating.
func TestAdmissionLookupAllocs(t *testing.T) {
	c := &Controller{states: map[string]*nsEntry{
		"shop": {envoyConfig: nsview.ConfigMapMissing, podSecurity: "baseline", wanted: true, warnings: nsview.NamespaceWarnings("shop", nsview.ConfigMapMissing, "baseline")},
	}}
	var n int
	allocs := testing.AllocsPerRun(1000, func() {
		s, psa := c.NamespaceState("shop")
		n += len(s) + len(psa) + len(c.Warnings("shop")) + len(c.Warnings("elsewhere"))
	})
	if allocs != 0 {
		t.Errorf("NamespaceState + Warnings allocate %v times per call, want 0", allocs)
	}
	if n == 0 {
		t.Fatal("nothing read")
	}
}

// runSingle runs c as a single replica (no Lease) until the test ends,
// and fails the test if Run returns an error.
func runSingle(t *testing.T, c *Controller, cs kubernetes.Interface) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	single := DefaultLeaderConfig()
	single.Enabled = false
	go func() { done <- c.RunElected(ctx, single, cs, nil) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
}
