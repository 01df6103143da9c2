package testenv

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
)

func testOptions() WebhookOptions {
	o := DefaultWebhookOptions()
	o.URL = "https://127.0.0.1:9443"
	o.CABundle = []byte("-----BEGIN CERTIFICATE-----\n")
	return o
}

// selected returns the names of the entries whose selectors match a pod
// with podLabels in namespace ns with nsLabels, as the apiserver decides.
func selected(t *testing.T, mwc *admissionregistrationv1.MutatingWebhookConfiguration, ns string, nsLabels, podLabels map[string]string) []string {
	t.Helper()
	nl := labels.Set{namespaceNameLabel: ns}
	for k, v := range nsLabels {
		nl[k] = v
	}
	var names []string
	for _, w := range mwc.Webhooks {
		nsSel, err := metav1.LabelSelectorAsSelector(w.NamespaceSelector)
		if err != nil {
			t.Fatalf("%s: namespaceSelector: %v", w.Name, err)
		}
		objSel, err := metav1.LabelSelectorAsSelector(w.ObjectSelector)
		if err != nil {
			t.Fatalf("%s: objectSelector: %v", w.Name, err)
		}
		if nsSel.Matches(nl) && objSel.Matches(labels.Set(podLabels)) {
			names = append(names, w.Name)
		}
	}
	return names
}

// TestSelectorsFollowThePrecedenceTable checks the selectors against every
// row of DESIGN.md "Who gets a sidecar" (the namespace part is the
// apiserver's; the annotation part is the webhook's, so pods here carry
// labels only).
func TestSelectorsFollowThePrecedenceTable(t *testing.T) {
	t.Parallel()
	enabled := map[string]string{NamespaceLabel: "enabled"}
	disabled := map[string]string{NamespaceLabel: "disabled"}
	audit := map[string]string{NamespaceLabel: "audit"}
	podTrue := map[string]string{InjectLabel: "true", "app": "x"}
	podFalse := map[string]string{InjectLabel: "false", "app": "x"}
	podNone := map[string]string{"app": "x"}
	en, au := EntryName(GroupEnabled, "sidecar-injector"), EntryName(GroupAudit, "sidecar-injector")
	oi, de := EntryName(GroupOptIn, "sidecar-injector"), EntryName(GroupDefault, "sidecar-injector")
	il := EntryName(GroupInvalidLabel, "sidecar-injector")
	typo := map[string]string{NamespaceLabel: "true"}
	tests := []struct {
		name          string
		defaultPolicy string
		ns            string
		nsLabels      map[string]string
		podLabels     map[string]string
		want          []string
	}{
		{"disabled namespace, pod true", "disabled", "apps", disabled, podTrue, nil},
		{"disabled namespace, pod unlabelled", "disabled", "apps", disabled, podNone, nil},
		{"disabled namespace wins over default enabled", "enabled", "apps", disabled, podNone, nil},
		{"disabled namespace wins over default enabled, pod true", "enabled", "apps", disabled, podTrue, nil},
		{"enabled namespace, pod unlabelled", "disabled", "apps", enabled, podNone, []string{en}},
		{"enabled namespace, pod true", "disabled", "apps", enabled, podTrue, []string{en}},
		{"enabled namespace, pod false", "disabled", "apps", enabled, podFalse, nil},
		{"audit namespace, pod unlabelled", "disabled", "apps", audit, podNone, []string{au}},
		{"audit namespace, pod false", "disabled", "apps", audit, podFalse, nil},
		{"unlabelled namespace, pod true", "disabled", "apps", nil, podTrue, []string{oi}},
		{"unlabelled namespace, pod unlabelled, default disabled", "disabled", "apps", nil, podNone, nil},
		{"unlabelled namespace, pod unlabelled, default enabled", "enabled", "apps", nil, podNone, []string{de}},
		{"unlabelled namespace, pod true, default enabled", "enabled", "apps", nil, podTrue, []string{oi}},
		{"unlabelled namespace, pod false, default enabled", "enabled", "apps", nil, podFalse, nil},
		{"invalid label, pod unlabelled", "disabled", "apps", typo, podNone, []string{il}},
		{"invalid label, pod true, default enabled", "enabled", "apps", typo, podTrue, []string{il}},
		{"invalid label, pod false", "disabled", "apps", typo, podFalse, nil},
		{"kube-system labelled enabled", "disabled", "kube-system", enabled, podNone, nil},
		{"kube-public, pod true", "disabled", "kube-public", nil, podTrue, nil},
		{"kube-node-lease, default enabled", "enabled", "kube-node-lease", nil, podNone, nil},
		{"injector namespace labelled enabled", "disabled", "sidecar-injector", enabled, podTrue, nil},
		{"injector namespace, default enabled", "enabled", "sidecar-injector", nil, podNone, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			o := testOptions()
			o.DefaultPolicy = tt.defaultPolicy
			mwc, err := MutatingWebhookConfiguration(o)
			if err != nil {
				t.Fatal(err)
			}
			got := selected(t, mwc, tt.ns, tt.nsLabels, tt.podLabels)
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("selected entries (-want +got):\n%s", diff)
			}
		})
	}
}

// TestEntrySettings pins the settings of RELIABILITY.md "Webhook
// configuration" on the enabled-namespace entry.
func TestEntrySettings(t *testing.T) {
	t.Parallel()
	o := testOptions()
	o.InjectorNamespace = "mesh"
	o.ExcludedNamespaces = []string{"kube-system", "legacy"}
	mwc, err := MutatingWebhookConfiguration(o)
	if err != nil {
		t.Fatal(err)
	}
	if len(mwc.Webhooks) != 4 {
		t.Fatalf("got %d entries, want 4", len(mwc.Webhooks))
	}
	url := "https://127.0.0.1:9443/mutate"
	want := admissionregistrationv1.MutatingWebhook{
		Name:                    "enabled.sidecar-injector.sidecar.io",
		ClientConfig:            admissionregistrationv1.WebhookClientConfig{URL: &url, CABundle: o.CABundle},
		AdmissionReviewVersions: []string{"v1"},
		Rules: []admissionregistrationv1.RuleWithOperations{{
			Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create},
			Rule:       admissionregistrationv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"pods"}, Scope: ptr(admissionregistrationv1.NamespacedScope)},
		}},
		FailurePolicy: ptr(admissionregistrationv1.Fail),
		MatchPolicy:   ptr(admissionregistrationv1.Equivalent),
		NamespaceSelector: &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
			{Key: "sidecar-injection", Operator: metav1.LabelSelectorOpIn, Values: []string{"enabled"}},
			{Key: "kubernetes.io/metadata.name", Operator: metav1.LabelSelectorOpNotIn, Values: []string{"kube-system", "kube-public", "kube-node-lease", "mesh", "legacy"}},
		}},
		ObjectSelector: &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
			{Key: "sidecar.io/inject", Operator: metav1.LabelSelectorOpNotIn, Values: []string{"false"}},
		}},
		SideEffects:        ptr(admissionregistrationv1.SideEffectClassNone),
		TimeoutSeconds:     ptr(int32(5)),
		ReinvocationPolicy: ptr(admissionregistrationv1.IfNeededReinvocationPolicy),
		MatchConditions: []admissionregistrationv1.MatchCondition{
			{Name: "not-host-network", Expression: "!has(object.spec.hostNetwork) || !object.spec.hostNetwork"},
			{Name: "not-mirror-pod", Expression: "!has(object.metadata.annotations) || !('kubernetes.io/config.mirror' in object.metadata.annotations)"},
		},
	}
	if diff := cmp.Diff(want, mwc.Webhooks[0]); diff != "" {
		t.Errorf("enabled-namespace entry (-want +got):\n%s", diff)
	}
	if got := *mwc.Webhooks[1].ClientConfig.URL; got != "https://127.0.0.1:9443/audit" {
		t.Errorf("audit entry URL = %s, want https://127.0.0.1:9443/audit", got)
	}
}

func TestServiceClientConfig(t *testing.T) {
	t.Parallel()
	o := testOptions()
	o.URL = ""
	o.Service = &admissionregistrationv1.ServiceReference{Namespace: "mesh", Name: "sidecar-injector-webhook", Port: ptr(int32(443))}
	o.DefaultPolicy = "enabled"
	mwc, err := MutatingWebhookConfiguration(o)
	if err != nil {
		t.Fatal(err)
	}
	var paths []string
	for _, w := range mwc.Webhooks {
		if w.ClientConfig.URL != nil {
			t.Errorf("%s: URL set with a Service", w.Name)
		}
		paths = append(paths, *w.ClientConfig.Service.Path)
	}
	if diff := cmp.Diff([]string{"/mutate", "/audit", "/mutate", "/mutate", "/invalid-namespace-label"}, paths); diff != "" {
		t.Errorf("paths (-want +got):\n%s", diff)
	}
	if o.Service.Path != nil {
		t.Error("the options' Service was modified")
	}
}

func TestWebhookOptionsValidate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		change func(*WebhookOptions)
		want   string // substring of the error; empty: valid
	}{
		{"defaults", func(*WebhookOptions) {}, ""},
		{"no client", func(o *WebhookOptions) { o.URL = "" }, "neither a URL nor a Service"},
		{"both clients", func(o *WebhookOptions) {
			o.Service = &admissionregistrationv1.ServiceReference{Namespace: "a", Name: "b"}
		}, "both a URL and a Service"},
		{"plain http", func(o *WebhookOptions) { o.URL = "http://127.0.0.1:9443" }, "want https://HOST:PORT"},
		{"URL with path", func(o *WebhookOptions) { o.URL = "https://127.0.0.1:9443/mutate" }, "want https://HOST:PORT"},
		{"no CA", func(o *WebhookOptions) { o.CABundle = nil }, "empty caBundle"},
		{"failure policy", func(o *WebhookOptions) { o.FailurePolicy = "Sometimes" }, `failurePolicy "Sometimes"`},
		{"default policy", func(o *WebhookOptions) { o.DefaultPolicy = "on" }, `defaultPolicy "on"`},
		{"timeout", func(o *WebhookOptions) { o.TimeoutSeconds = 31 }, "timeoutSeconds 31: want 1-30"},
		{"side effects", func(o *WebhookOptions) { o.SideEffects = admissionregistrationv1.SideEffectClassSome }, `sideEffects "Some"`},
		{"namespace", func(o *WebhookOptions) { o.InjectorNamespace = "Bad_NS" }, `injector namespace "Bad_NS"`},
		{"excluded namespace", func(o *WebhookOptions) { o.ExcludedNamespaces = []string{"ok", "no way"} }, `excluded namespace "no way"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			o := testOptions()
			tt.change(&o)
			_, err := MutatingWebhookConfiguration(o)
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("unexpected error: %v", err)
			case tt.want != "" && err == nil:
				t.Fatalf("no error, want one containing %q", tt.want)
			case tt.want != "" && !strings.Contains(err.Error(), tt.want):
				t.Fatalf("error %q does not contain %q", err, tt.want)
			}
		})
	}
}
