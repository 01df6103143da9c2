package controller

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"
	metadatafake "k8s.io/client-go/metadata/fake"

	"github.com/sidecar-injector/sidecar-injector/pkg/inject"
	"github.com/sidecar-injector/sidecar-injector/pkg/nsview"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

func owned(p *metav1.PartialObjectMetadata, apiVersion, kind, name string) *metav1.PartialObjectMetadata {
	p.OwnerReferences = []metav1.OwnerReference{{APIVersion: apiVersion, Kind: kind, Name: name, UID: types.UID("uid-" + name), Controller: new(true)}}
	return p
}

func TestClusterReport(t *testing.T) {
	t.Parallel()
	in, err := inject.New(inject.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	cur, old := in.Hash(), "00000000deadbeef"
	enabled := map[string]string{inject.NamespaceLabel: "enabled"}
	cs := fake.NewClientset(
		namespace("shop", enabled),
		namespace("strict", map[string]string{inject.NamespaceLabel: "enabled", nsview.PodSecurityEnforceLabel: "restricted"}),
		namespace("quiet", enabled),
		namespace("plain", nil),
		namespace("typo", map[string]string{inject.NamespaceLabel: "yes"}),
		&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: inject.ConfigMapName, Namespace: "shop", Labels: ourLabels()}},
		&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: inject.ConfigMapName, Namespace: "quiet", Labels: ourLabels()}},
		&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: inject.ConfigMapName, Namespace: "strict"}},
	)
	stale := map[string]string{inject.StatusAnnotation: status(old)}
	current := map[string]string{inject.StatusAnnotation: status(cur)}
	rs := owned(&metav1.PartialObjectMetadata{
		TypeMeta:   metav1.TypeMeta{APIVersion: "apps/v1", Kind: "ReplicaSet"},
		ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "web-5d8f"},
	}, "apps/v1", "Deployment", "web")
	orphanRS := &metav1.PartialObjectMetadata{
		TypeMeta:   metav1.TypeMeta{APIVersion: "apps/v1", Kind: "ReplicaSet"},
		ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "lonely"},
	}
	md := metadatafake.NewSimpleMetadataClient(metaScheme(t), rs, orphanRS,
		owned(podMeta("shop", "web-5d8f-aaaaa", nil, stale), "apps/v1", "ReplicaSet", "web-5d8f"),
		owned(podMeta("shop", "web-5d8f-bbbbb", nil, stale), "apps/v1", "ReplicaSet", "web-5d8f"),
		owned(podMeta("shop", "web-5d8f-ccccc", nil, current), "apps/v1", "ReplicaSet", "web-5d8f"),
		owned(podMeta("shop", "db-0", nil, nil), "apps/v1", "StatefulSet", "db"),
		owned(podMeta("shop", "agent-x1", nil, map[string]string{inject.StatusAnnotation: "{broken"}), "apps/v1", "DaemonSet", "agent"),
		owned(podMeta("shop", "lonely-q", nil, nil), "apps/v1", "ReplicaSet", "lonely"),
		owned(podMeta("shop", "gone-q", nil, nil), "apps/v1", "ReplicaSet", "gone"), // its ReplicaSet was deleted
		owned(podMeta("shop", "migrate-7", nil, stale), "batch/v1", "Job", "migrate"),
		podMeta("shop", "debug", nil, nil),
		podMeta("shop", "tools", map[string]string{inject.InjectKey: "false"}, nil),
		podMeta("quiet", "ok", nil, current),
		podMeta("plain", "app", nil, nil),
		podMeta("strict", "api", nil, current),
	)
	r, err := BuildClusterReport(t.Context(), cs, md, in, ReportOptions{PodFieldSelector: "", ConfigSource: "test"})
	if err != nil {
		t.Fatal(err)
	}
	r.ConfigHash = "CURRENT" // the default config's hash changes with the engine; the golden file must not
	var got bytes.Buffer
	if err := r.WriteText(&got); err != nil {
		t.Fatal(err)
	}
	golden := filepath.Join("testdata", "report.golden")
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(golden, got.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (go test ./pkg/controller -update)", err)
	}
	if diff := cmp.Diff(string(want), got.String()); diff != "" {
		t.Errorf("report changed (-want +got); go test ./pkg/controller -update if intended:\n%s", diff)
	}
	if r.Current != 3 || r.Stale != 4 || r.Missing != 4 {
		t.Errorf("counts current %d, stale %d, missing %d; want 3, 4, 4", r.Current, r.Stale, r.Missing)
	}

	one, err := BuildClusterReport(t.Context(), cs, md, in, ReportOptions{Namespace: "quiet", PodFieldSelector: "", ConfigSource: "test"})
	if err != nil {
		t.Fatal(err)
	}
	if len(one.Namespaces) != 0 || one.Current != 1 || one.Stale+one.Missing != 0 {
		t.Errorf("--namespace quiet: %+v; want one current pod and nothing to report", one)
	}
}

func TestFindInjectorConfig(t *testing.T) {
	t.Parallel()
	chartLabels := map[string]string{"app.kubernetes.io/part-of": "sidecar-injector", "app.kubernetes.io/component": "webhook"}
	cm := func(ns, name string, labels map[string]string, data map[string]string) *corev1.ConfigMap {
		return &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: labels}, Data: data}
	}
	one := fake.NewClientset(
		cm("mesh", "mesh-sidecar-injector-injector", chartLabels, map[string]string{"config.yaml": "kind: InjectorConfig\n"}),
		cm("mesh", "mesh-sidecar-injector-mesh", chartLabels, map[string]string{"mesh.yaml": "x"}), // no config.yaml: not it
	)
	data, src, found, err := FindInjectorConfig(t.Context(), one, "")
	if err != nil || !found || string(data) != "kind: InjectorConfig\n" || src != "ConfigMap mesh/mesh-sidecar-injector-injector" {
		t.Errorf("one install: %q, %q, %v, %v", data, src, found, err)
	}
	if _, _, found, err := FindInjectorConfig(t.Context(), fake.NewClientset(), ""); found || err != nil {
		t.Errorf("no install: found %v, err %v; want the defaults", found, err)
	}
	two := fake.NewClientset(
		cm("a", "x", chartLabels, map[string]string{"config.yaml": "a"}),
		cm("b", "y", chartLabels, map[string]string{"config.yaml": "b"}),
	)
	if _, _, _, err := FindInjectorConfig(t.Context(), two, ""); err == nil {
		t.Error("two installs: want an error asking for --injector-configmap")
	}
	if data, _, _, err := FindInjectorConfig(t.Context(), two, "b/y"); err != nil || string(data) != "b" {
		t.Errorf("explicit b/y: %q, %v", data, err)
	}
	if _, _, _, err := FindInjectorConfig(t.Context(), two, "b"); err == nil {
		t.Error("a reference without a slash: want an error")
	}
}
