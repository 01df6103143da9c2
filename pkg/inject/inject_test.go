package inject

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func testPod() *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metaWith("web-1", nil),
		Spec: corev1.PodSpec{Containers: []corev1.Container{{
			Name: "web", Image: "example/web",
			Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}},
		}}},
	}
}

func mustInjector(t testing.TB, mutate func(*Config)) *Injector {
	t.Helper()
	cfg := DefaultConfig()
	if mutate != nil {
		mutate(&cfg)
	}
	in, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return in
}

// TestSettings checks every setting annotation: valid, malformed, forbidden.
func TestSettings(t *testing.T) {
	valid := map[string]string{
		SettingIncludeInboundPorts:     "8080,9000-9001",
		SettingExcludeInboundPorts:     "22",
		SettingExcludeOutboundPorts:    "5432",
		SettingExcludeOutboundIPRanges: "10.0.0.0/8",
		SettingIncludeOutboundIPRanges: "*",
		SettingInboundPort:             "15006",
		SettingOutboundPort:            "15001",
		SettingIPv6:                    "on",
		SettingNativeSidecar:           "false",
		SettingProxyCPU:                "500m",
		SettingProxyMemory:             "256Mi",
		SettingProxyImage:              "example/envoy:v1.32.6",
		SettingLogLevel:                "warning",
	}
	malformed := map[string]string{
		SettingIncludeInboundPorts:     "80,http",
		SettingExcludeInboundPorts:     "0",
		SettingExcludeOutboundPorts:    "70000",
		SettingExcludeOutboundIPRanges: "garbage",
		SettingIncludeOutboundIPRanges: "10.0.0.0/33",
		SettingInboundPort:             "abc",
		SettingOutboundPort:            "-1",
		SettingIPv6:                    "maybe",
		SettingNativeSidecar:           "yes",
		SettingProxyCPU:                "lots",
		SettingProxyMemory:             "-5Mi",
		SettingProxyImage:              "bad image",
		SettingLogLevel:                "loud",
	}
	if len(valid) != len(SettingNames()) || len(malformed) != len(SettingNames()) {
		t.Fatalf("the test must cover every setting: %d valid, %d malformed, %d settings", len(valid), len(malformed), len(SettingNames()))
	}
	all := mustInjector(t, func(c *Config) { c.Injection.AllowedSettings = SettingNames() })
	none := mustInjector(t, func(c *Config) { c.Injection.AllowedSettings = nil })
	for _, name := range SettingNames() {
		key := SettingPrefix + name
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			pod := testPod()
			pod.Annotations = map[string]string{key: valid[name]}
			res, err := all.Inject(pod, Overrides{Namespace: "shop"})
			if err != nil || res.Decision != DecisionInject {
				t.Fatalf("valid %s=%q: %s %v", key, valid[name], res.Decision, err)
			}

			pod.Annotations[key] = malformed[name]
			_, err = all.Inject(pod, Overrides{Namespace: "shop"})
			e, ok := AsError(err)
			if !ok || e.Reason != ReasonInvalidSetting || !strings.Contains(e.Error(), key) {
				t.Fatalf("malformed %s=%q: got %v, want invalid_setting naming the annotation", key, malformed[name], err)
			}

			pod.Annotations[key] = valid[name]
			_, err = none.Inject(pod, Overrides{Namespace: "shop"})
			e, ok = AsError(err)
			if !ok || e.Reason != ReasonForbiddenSetting || !strings.Contains(e.Error(), key) {
				t.Fatalf("forbidden %s: got %v, want forbidden_setting naming the annotation", key, err)
			}
		})
	}
	t.Run("proxy-image-denied-by-default", func(t *testing.T) {
		pod := testPod()
		pod.Annotations = map[string]string{SettingPrefix + SettingProxyImage: "example/envoy:evil"}
		_, err := Inject(pod, DefaultConfig(), Overrides{Namespace: "shop"})
		if e, ok := AsError(err); !ok || e.Reason != ReasonForbiddenSetting {
			t.Fatalf("got %v, want forbidden_setting", err)
		}
	})
}

// TestManyPorts checks RELIABILITY.md row 26: 1,000 containers or ports are
// answered (linear work), or refused with no_free_port.
func TestManyPorts(t *testing.T) {
	pod := testPod()
	pod.Spec.Containers = nil
	for i := range 1000 {
		pod.Spec.Containers = append(pod.Spec.Containers, corev1.Container{
			Name: fmt.Sprintf("c%d", i), Image: "x",
			Ports: []corev1.ContainerPort{{ContainerPort: int32(10001 + i)}},
		})
	}
	in := mustInjector(t, nil)
	res, err := in.Inject(pod, Overrides{Namespace: "shop"})
	if e, ok := AsError(err); !ok || e.Reason != ReasonNoFreePort {
		t.Fatalf("1000 ports covering the range: got %s %v, want no_free_port", res.Decision, err)
	}
	wide := mustInjector(t, func(c *Config) { c.Ports.RangeEnd = 20000 })
	res, err = wide.Inject(pod, Overrides{Namespace: "shop"})
	if err != nil || res.Status.Ports.Inbound != 11001 {
		t.Fatalf("wide range: %v, ports %+v", err, res.Status)
	}
}

func TestConfig(t *testing.T) {
	for _, tc := range []struct {
		name, yaml, wantErr string
	}{
		{"empty file is the default", "", ""},
		{"partial", "apiVersion: sidecar.io/v1alpha1\nkind: InjectorConfig\nproxy:\n  image: example/envoy:1\n", ""},
		{"unknown field", "apiVersion: sidecar.io/v1alpha1\nkind: InjectorConfig\nproxy:\n  imagee: x\n", `unknown field "proxy.imagee"`},
		{"wrong kind", "apiVersion: sidecar.io/v1alpha1\nkind: Other\n", "kind"},
		{"key case", "apiVersion: sidecar.io/v1alpha1\nkind: InjectorConfig\nProxy:\n  image: x\n", `unknown field "Proxy"`},
		{"two unknown fields", "apiVersion: sidecar.io/v1alpha1\nkind: InjectorConfig\ncolour: red\nports:\n  inbund: 1\n", `unknown field "colour"`},
		{"wrong type", "apiVersion: sidecar.io/v1alpha1\nkind: InjectorConfig\nproxy:\n  uid: lots\n", "proxy.uid"},
		{"not a mapping", "- apiVersion: sidecar.io/v1alpha1\n", "want a YAML mapping"},
		{"comments only", "# nothing here\n", "want a YAML mapping"},
		{"bad port range", "apiVersion: sidecar.io/v1alpha1\nkind: InjectorConfig\nports:\n  rangeStart: 20000\n  rangeEnd: 10000\n", "ports.rangeEnd"},
		{"root uid", "apiVersion: sidecar.io/v1alpha1\nkind: InjectorConfig\nproxy:\n  uid: 0\n", "proxy.uid"},
		{"unknown setting", "apiVersion: sidecar.io/v1alpha1\nkind: InjectorConfig\ninjection:\n  allowedSettings: [nope]\n", "injection.allowedSettings[0]"},
		{"bad cidr", "apiVersion: sidecar.io/v1alpha1\nkind: InjectorConfig\nredirect:\n  excludeOutboundIPRanges: 10.0.0.0/99\n", "redirect.excludeOutboundIPRanges"},
		{"same ports", "apiVersion: sidecar.io/v1alpha1\nkind: InjectorConfig\nports:\n  outbound: 10001\n", "four different ports"},
		{"bad policy", "apiVersion: sidecar.io/v1alpha1\nkind: InjectorConfig\ninjection:\n  defaultPolicy: sometimes\n", "injection.defaultPolicy"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := LoadConfig([]byte(tc.yaml))
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("unexpected error: %v", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("error %v, want one containing %q", err, tc.wantErr)
			}
		})
	}
	a, b := DefaultConfig(), DefaultConfig()
	if a.Hash() != b.Hash() {
		t.Fatal("hash is not deterministic")
	}
	b.Proxy.Image = "other"
	if a.Hash() == b.Hash() {
		t.Fatal("hash ignores the proxy image")
	}
}

func TestManifestRoundTrip(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("testdata", "manifests", "workloads.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	in := mustInjector(t, nil)
	ov := Overrides{NamespaceLabels: map[string]string{NamespaceLabel: "enabled"}}
	docs, err := ReadDocuments(data)
	if err != nil {
		t.Fatal(err)
	}
	orig, _ := ReadDocuments(data)
	var kinds []string
	for i := range docs {
		err := EachPod(&docs[i], func(w Workload, pod *corev1.Pod) (Patch, error) {
			kinds = append(kinds, w.Kind)
			res, err := in.Inject(pod, ov)
			return res.Patch, err
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	want := []string{"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job", "CronJob", "Pod", "Pod", "Deployment"}
	if diff := cmp.Diff(want, kinds); diff != "" {
		t.Fatalf("workloads found (-want +got):\n%s", diff)
	}
	// The Service passes through unchanged; every workload got a sidecar.
	for i, d := range docs {
		b, _ := json.Marshal(d.Object)
		ob, _ := json.Marshal(orig[i].Object)
		injected := strings.Contains(string(b), StatusAnnotation)
		if kind := d.Object.(map[string]any)["kind"]; kind == "Service" {
			if string(b) != string(ob) {
				t.Errorf("document %d (Service) changed", d.Index)
			}
		} else if !injected {
			t.Errorf("document %d (%s) not injected", d.Index, kind)
		}
	}
	// Uninject gives every document back.
	for i := range docs {
		err := EachPod(&docs[i], func(_ Workload, pod *corev1.Pod) (Patch, error) {
			res, err := Uninject(pod)
			return res.Patch, err
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if diff := cmp.Diff(orig, docs); diff != "" {
		t.Fatalf("uninject(inject(x)) != x (-x +got):\n%s", diff)
	}
}

func TestReadDocumentsErrors(t *testing.T) {
	for _, tc := range []struct{ name, in, want string }{
		{"bad yaml", "kind: Pod\n---\nkind: [\n", "document 2"},
		{"bad json", `{"kind":"Pod"} {"kind":`, "document 2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ReadDocuments([]byte(tc.in))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want %q", err, tc.want)
			}
		})
	}
	docs, err := ReadDocuments([]byte("apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec:\n  template:\n    spec:\n      containers: [{name: a, ports: [{containerPort: http}]}]\n"))
	if err != nil {
		t.Fatal(err)
	}
	err = EachPod(&docs[0], func(Workload, *corev1.Pod) (Patch, error) { return nil, nil })
	if err == nil || !strings.Contains(err.Error(), "document 1 (Deployment web)") || !strings.Contains(err.Error(), "containerPort") {
		t.Fatalf("error %v, want one naming the document, the object and the field", err)
	}
}

func TestExplain(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("testdata", "manifests", "workloads.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	ex, err := Explain(data, DefaultConfig(), Overrides{NamespaceLabels: map[string]string{NamespaceLabel: "enabled"}})
	if err != nil {
		t.Fatal(err)
	}
	if len(ex) != 9 {
		t.Fatalf("got %d explanations, want 9", len(ex))
	}
	for _, e := range ex {
		if e.Decision != DecisionInject || len(e.Patch) == 0 || e.Status == nil {
			t.Errorf("%s: %s %s, %d ops", e.Workload, e.Decision, e.Reason, len(e.Patch))
		}
	}
	if !slices.ContainsFunc(ex, func(e Explanation) bool { return e.Item != nil }) {
		t.Error("the List's items are not explained")
	}
}

func metaWith(name string, ann map[string]string) metav1.ObjectMeta {
	return metav1.ObjectMeta{Name: name, Namespace: "shop", Annotations: ann}
}

// TestSpecErrorsNameTheAnnotation: a redirect spec problem caused by a pod
// setting names that annotation.
func TestSpecErrorsNameTheAnnotation(t *testing.T) {
	pod := testPod()
	pod.Annotations = map[string]string{
		SettingPrefix + SettingIncludeOutboundIPRanges: "10.1.0.0/16",
		SettingPrefix + SettingExcludeOutboundIPRanges: "10.0.0.0/8",
	}
	_, err := Inject(pod, DefaultConfig(), Overrides{Namespace: "shop"})
	e, ok := AsError(err)
	if !ok || e.Reason != ReasonInvalidSetting || !strings.HasPrefix(e.Field, "annotation sidecar.io/") {
		t.Fatalf("got %v, want invalid_setting naming a sidecar.io/ annotation", err)
	}
	if strings.Contains(e.Error(), "\n") {
		t.Fatalf("message spans lines: %q", e.Error())
	}
}

// Every reason carries its semantics: a decision, and whether it is an
// expected outcome (no warning, no Event). Only opting out and a
// reinvocation of an injected pod are expected.
func TestReasonTraits(t *testing.T) {
	expected := map[Reason]bool{ReasonOptedOut: true, ReasonAlreadyInjected: true}
	for _, r := range Reasons() {
		if r.Decision() == "" {
			t.Errorf("reason %s has no decision", r)
		}
		if r.Expected() != expected[r] {
			t.Errorf("reason %s: Expected() = %v", r, r.Expected())
		}
		if r.Forbidden() != (r == ReasonForbiddenSetting) {
			t.Errorf("reason %s: Forbidden() = %v", r, r.Forbidden())
		}
	}
	if Reason("made_up").Decision() != "" {
		t.Error("a value outside the set has a decision")
	}
}
