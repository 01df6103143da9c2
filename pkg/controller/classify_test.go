package controller

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sidecar-injector/sidecar-injector/pkg/inject"
	"github.com/sidecar-injector/sidecar-injector/pkg/nsview"
)

func TestNamespaceExpectation(t *testing.T) {
	t.Parallel()
	def := inject.DefaultConfig()
	on := inject.DefaultConfig()
	on.Injection.DefaultPolicy = inject.PolicyEnabled
	on.Injection.ExcludedNamespaces = []string{"legacy"}
	for _, tc := range []struct {
		name, ns string
		labels   map[string]string
		cfg      *inject.Config
		want     Expectation
	}{
		{"enabled", "shop", map[string]string{inject.NamespaceLabel: "enabled"}, &def, ExpectInject},
		{"audit", "shop", map[string]string{inject.NamespaceLabel: "audit"}, &def, ExpectAudit},
		{"disabled", "shop", map[string]string{inject.NamespaceLabel: "disabled"}, &def, ExpectNone},
		{"invalid label value", "shop", map[string]string{inject.NamespaceLabel: "yes"}, &def, ExpectNone},
		{"unlabelled, policy disabled", "shop", nil, &def, ExpectOptIn},
		{"unlabelled, policy enabled", "shop", nil, &on, ExpectDefault},
		{"disabled beats policy enabled", "shop", map[string]string{inject.NamespaceLabel: "disabled"}, &on, ExpectNone},
		{"kube-system even if labelled", "kube-system", map[string]string{inject.NamespaceLabel: "enabled"}, &def, ExpectNone},
		{"kube-node-lease", "kube-node-lease", nil, &on, ExpectNone},
		{"injector namespace", "sidecar-injector", map[string]string{inject.NamespaceLabel: "enabled"}, &def, ExpectNone},
		{"configured exclusion", "legacy", map[string]string{inject.NamespaceLabel: "enabled"}, &on, ExpectNone},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := NamespaceExpectation(tc.ns, tc.labels, tc.cfg); got != tc.want {
				t.Errorf("NamespaceExpectation(%s, %v) = %d, want %d", tc.ns, tc.labels, got, tc.want)
			}
		})
	}
}

func TestWantsEnvoyConfig(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		e        Expectation
		injected bool
		want     bool
	}{
		{ExpectInject, false, true},
		{ExpectAudit, false, true},
		{ExpectDefault, false, true},
		{ExpectOptIn, false, false},
		{ExpectOptIn, true, true}, // a pod opted in by its label carries a sidecar: it needs the bootstrap
		{ExpectNone, false, false},
		{ExpectNone, true, false}, // kube-system and the like: never written
	} {
		if got := WantsEnvoyConfig(tc.e, tc.injected); got != tc.want {
			t.Errorf("WantsEnvoyConfig(%d, %v) = %v, want %v", tc.e, tc.injected, got, tc.want)
		}
	}
}

func status(hash string) string {
	return `{"version":"v1","configHash":"` + hash + `","native":true,"ports":{"inbound":10001,"outbound":10002,"stats":10090,"admin":9901},"initContainers":["iptables-init","envoy"],"volumes":["envoy-config"]}`
}

func TestClassifyPod(t *testing.T) {
	t.Parallel()
	const cur = "0123456789abcdef"
	for _, tc := range []struct {
		name        string
		labels, ann map[string]string
		e           Expectation
		want        PodState
	}{
		{"current", nil, map[string]string{inject.StatusAnnotation: status(cur)}, ExpectInject, PodCurrent},
		{"stale", nil, map[string]string{inject.StatusAnnotation: status("fedcba9876543210")}, ExpectInject, PodStale},
		{"stale in an audit namespace", nil, map[string]string{inject.StatusAnnotation: status("fedcba9876543210")}, ExpectAudit, PodStale},
		{"unreadable status is stale", nil, map[string]string{inject.StatusAnnotation: "{"}, ExpectInject, PodStale},
		{"missing", nil, nil, ExpectInject, PodMissing},
		{"missing, label true", map[string]string{inject.InjectKey: "true"}, nil, ExpectInject, PodMissing},
		{"opted out by label", map[string]string{inject.InjectKey: "false"}, nil, ExpectInject, PodIgnored},
		{"opted out by annotation", nil, map[string]string{inject.InjectKey: "false"}, ExpectInject, PodIgnored},
		{"label wins over annotation", map[string]string{inject.InjectKey: "true"}, map[string]string{inject.InjectKey: "false"}, ExpectInject, PodMissing},
		{"mirror pod", nil, map[string]string{inject.MirrorPodAnnotation: "abc"}, ExpectInject, PodIgnored},
		{"audit: not expected", nil, nil, ExpectAudit, PodIgnored},
		{"disabled namespace", nil, nil, ExpectNone, PodIgnored},
		{"opt-in namespace, no label", nil, nil, ExpectOptIn, PodIgnored},
		{"opt-in namespace, annotation only", nil, map[string]string{inject.InjectKey: "true"}, ExpectOptIn, PodIgnored},
		{"opt-in namespace, label true", map[string]string{inject.InjectKey: "true"}, nil, ExpectOptIn, PodMissing},
		{"default-enabled namespace", nil, nil, ExpectDefault, PodMissing},
		{"default-enabled, opted out", nil, map[string]string{inject.InjectKey: "false"}, ExpectDefault, PodIgnored},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := ClassifyPod(FactsOf(tc.labels, tc.ann), tc.e, cur)
			if got != tc.want {
				t.Errorf("ClassifyPod = %q, want %q", got, tc.want)
			}
			// The informer's stripped form classifies the same, and
			// stripping twice changes nothing (the transform must be idempotent).
			p := &metav1.PartialObjectMetadata{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "ns", Labels: tc.labels, Annotations: tc.ann,
				ManagedFields: []metav1.ManagedFieldsEntry{{Manager: "kubectl"}}, OwnerReferences: []metav1.OwnerReference{{Name: "rs"}}}}
			once, _ := stripPod(p.DeepCopy())
			twice, _ := stripPod(once.(*metav1.PartialObjectMetadata).DeepCopy())
			if diff := cmp.Diff(once, twice); diff != "" {
				t.Errorf("stripPod is not idempotent (-once +twice):\n%s", diff)
			}
			s := once.(*metav1.PartialObjectMetadata)
			if got := ClassifyPod(FactsOf(s.Labels, s.Annotations), tc.e, cur); got != tc.want {
				t.Errorf("ClassifyPod(stripped) = %q, want %q (stripped metadata %+v)", got, tc.want, s.ObjectMeta)
			}
			if s.ManagedFields != nil || s.OwnerReferences != nil || s.Annotations[inject.StatusAnnotation] != "" {
				t.Errorf("stripped pod keeps what the controller never reads: %+v", s.ObjectMeta)
			}
		})
	}
}

func TestPodSecurityBlocks(t *testing.T) {
	t.Parallel()
	for v, want := range map[string]string{"baseline": "baseline", "restricted": "restricted", "privileged": "", "": "", "Baseline": ""} {
		if got := nsview.PodSecurityBlocks(map[string]string{nsview.PodSecurityEnforceLabel: v}); got != want {
			t.Errorf("enforce=%q: got %q, want %q", v, got, want)
		}
	}
	if got := nsview.PodSecurityBlocks(nil); got != "" {
		t.Errorf("no labels: got %q", got)
	}
}

func TestNamespaceWarnings(t *testing.T) {
	t.Parallel()
	ns := strings.Repeat("n", 32) // the longest name whose warnings fit in full
	for _, tc := range []struct {
		state nsview.ConfigMapState
		psa   string
		want  []string
	}{
		{nsview.ConfigMapOurs, "", nil},
		{nsview.ConfigMapUnknown, "", nil},
		{nsview.ConfigMapMissing, "", []string{"envoy-config ConfigMap missing in namespace " + ns + ": injected pods cannot start until it exists"}},
		{nsview.ConfigMapForeign, "", []string{"envoy-config ConfigMap in namespace " + ns + " is not managed by sidecar-injector; left untouched"}},
		{nsview.ConfigMapOurs, "restricted", []string{"namespace enforces Pod Security restricted: iptables-init needs NET_ADMIN and NET_RAW, injected pods will be rejected"}},
		{nsview.ConfigMapMissing, "baseline", []string{
			"envoy-config ConfigMap missing in namespace " + ns + ": injected pods cannot start until it exists",
			"namespace enforces Pod Security baseline: iptables-init needs NET_ADMIN and NET_RAW, injected pods will be rejected",
		}},
	} {
		got := nsview.NamespaceWarnings(ns, tc.state, tc.psa)
		if diff := cmp.Diff(tc.want, got); diff != "" {
			t.Errorf("nsview.NamespaceWarnings(%q, %q) (-want +got):\n%s", tc.state, tc.psa, diff)
		}
		for _, w := range got {
			if len(w) > 120 {
				t.Errorf("warning of %d characters, over the 120 of an admission warning: %s", len(w), w)
			}
		}
	}
}

// TestExcludedNamespacesEditKeepsPodsCurrent: adding a namespace to
// excludedNamespaces (or changing who may use which setting) changes no
// injected pod, so every pod injected before the edit stays current.
func TestExcludedNamespacesEditKeepsPodsCurrent(t *testing.T) {
	t.Parallel()
	before := inject.DefaultConfig()
	after := inject.DefaultConfig()
	after.Injection.ExcludedNamespaces = append(after.Injection.ExcludedNamespaces, "legacy")
	after.Injection.AllowedSettings = []string{"log-level"}
	in, err := inject.New(after)
	if err != nil {
		t.Fatal(err)
	}
	for _, ns := range []string{"shop", "legacy"} {
		f := FactsOf(nil, map[string]string{inject.StatusAnnotation: status(before.Hash())})
		if got := ClassifyPod(f, NamespaceExpectation(ns, map[string]string{inject.NamespaceLabel: "enabled"}, &after), in.Hash()); got != PodCurrent {
			t.Errorf("pod in %s injected before the edit: %q, want current", ns, got)
		}
	}
}
