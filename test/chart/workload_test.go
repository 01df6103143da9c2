package chart

import (
	"slices"
	"testing"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	"sigs.k8s.io/yaml"
)

// TestWorkloadWarningsEntry: the validating entries for workloads never
// deny (failurePolicy Ignore), have no side effects, select enabled and
// audit namespaces with the mutating entries' exclusions, cover the six
// workload kinds, and go away with webhook.workloadWarnings=false.
func TestWorkloadWarningsEntry(t *testing.T) {
	t.Parallel()
	var mwc admissionregistrationv1.MutatingWebhookConfiguration
	var vwc *admissionregistrationv1.ValidatingWebhookConfiguration
	for _, o := range split(t, render(t, "", "--set", "injection.excludedNamespaces={legacy}")) {
		switch o.Kind {
		case "MutatingWebhookConfiguration":
			if err := yaml.UnmarshalStrict(o.Raw, &mwc); err != nil {
				t.Fatal(err)
			}
		case "ValidatingWebhookConfiguration":
			vwc = &admissionregistrationv1.ValidatingWebhookConfiguration{}
			if err := yaml.UnmarshalStrict(o.Raw, vwc); err != nil {
				t.Fatal(err)
			}
		}
	}
	if vwc == nil || len(vwc.Webhooks) != 2 {
		t.Fatalf("want a ValidatingWebhookConfiguration with two entries, got %+v", vwc)
	}
	excluded := mwc.Webhooks[0].NamespaceSelector.MatchExpressions[1]
	if !slices.Contains(excluded.Values, "legacy") {
		t.Fatalf("mutating exclusions %v lack the configured namespace", excluded.Values)
	}
	var resources []string
	for i, w := range vwc.Webhooks {
		if *w.FailurePolicy != admissionregistrationv1.Ignore || *w.SideEffects != admissionregistrationv1.SideEffectClassNone {
			t.Errorf("%s: failurePolicy %s, sideEffects %s", w.Name, *w.FailurePolicy, *w.SideEffects)
		}
		sel := w.NamespaceSelector.MatchExpressions
		want := []string{"enabled", "audit"}[i]
		if sel[0].Key != "sidecar-injection" || !slices.Equal(sel[0].Values, []string{want}) {
			t.Errorf("%s: namespace selector %v, want sidecar-injection In [%s]", w.Name, sel[0], want)
		}
		if !slices.Equal(sel[1].Values, excluded.Values) || sel[1].Key != excluded.Key || sel[1].Operator != excluded.Operator {
			t.Errorf("%s: exclusions %v differ from the mutating entries' %v", w.Name, sel[1], excluded)
		}
		if i == 0 {
			for _, r := range w.Rules {
				resources = append(resources, r.Resources...)
				if !slices.Equal(r.Operations, []admissionregistrationv1.OperationType{"CREATE", "UPDATE"}) {
					t.Errorf("%s: operations %v", w.Name, r.Operations)
				}
			}
		}
	}
	slices.Sort(resources)
	if want := []string{"cronjobs", "daemonsets", "deployments", "jobs", "replicasets", "statefulsets"}; !slices.Equal(resources, want) {
		t.Errorf("resources %v, want %v", resources, want)
	}
	for _, o := range split(t, render(t, "", "--set", "webhook.workloadWarnings=false")) {
		if o.Kind == "ValidatingWebhookConfiguration" {
			t.Error("webhook.workloadWarnings=false still renders the ValidatingWebhookConfiguration")
		}
	}
}
