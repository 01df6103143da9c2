package testenv

import (
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
)

// Names of DESIGN.md "Public names" that the webhook configuration selects on.
const (
	NamespaceLabel     = "sidecar-injection" // enabled | disabled | audit
	InjectLabel        = "sidecar.io/inject" // "true" | "false"
	namespaceNameLabel = "kubernetes.io/metadata.name"
)

// Webhook entry groups, one per row group of DESIGN.md "Who gets a sidecar";
// an entry is named <group>.<configuration name>.sidecar.io (EntryName).
const (
	GroupEnabled = "enabled" // namespaces labelled enabled -> /mutate
	GroupAudit   = "audit"   // namespaces labelled audit -> /audit
	GroupOptIn   = "opt-in"  // unlabelled namespaces, pods labelled "true" -> /mutate
	GroupDefault = "default" // unlabelled namespaces, unlabelled pods, with defaultPolicy enabled -> /mutate
	// GroupInvalidLabel: namespaces whose label is none of enabled,
	// disabled, audit -> /invalid-namespace-label (a warning, never a patch).
	GroupInvalidLabel = "invalid-label"
)

// EntryName is the name of a group's webhook entry in configuration name.
func EntryName(group, name string) string { return group + "." + name + ".sidecar.io" }

// HTTP paths of the webhook (DESIGN.md "Command line").
const (
	PathMutate       = "/mutate"
	PathAudit        = "/audit"
	PathInvalidLabel = "/invalid-namespace-label"
)

// AlwaysExcludedNamespaces are never selected, whatever the options say.
var AlwaysExcludedNamespaces = []string{"kube-system", "kube-public", "kube-node-lease"}

// WebhookOptions describe the injector's MutatingWebhookConfiguration as the
// Helm chart installs it; only the client config differs (a URL here, a
// Service in the cluster).
type WebhookOptions struct {
	// Name is the MutatingWebhookConfiguration's name.
	Name string
	// InjectorNamespace is the injector's own namespace: never selected.
	InjectorNamespace string
	// ExcludedNamespaces are never selected either (chart value
	// injection.excludedNamespaces).
	ExcludedNamespaces []string
	// URL is the webhook's base URL (https://127.0.0.1:PORT); paths are
	// appended per entry. Exactly one of URL and Service is set.
	URL string
	// Service is the in-cluster Service; its Path is set per entry.
	Service *admissionregistrationv1.ServiceReference
	// CABundle is the PEM CA the apiserver verifies the webhook with.
	CABundle []byte
	// FailurePolicy is Fail (default) or Ignore.
	FailurePolicy admissionregistrationv1.FailurePolicyType
	// DefaultPolicy is the chart's injection.defaultPolicy for unlabelled
	// namespaces: "disabled" (only pods labelled sidecar.io/inject=true) or
	// "enabled" (every pod not labelled "false").
	DefaultPolicy string
	// TimeoutSeconds is 1-30.
	TimeoutSeconds int32
	// SideEffects is None (the chart's: the webhook writes nothing), or
	// NoneOnDryRun.
	SideEffects admissionregistrationv1.SideEffectClass
	// MatchConditions skips hostNetwork and mirror pods in the apiserver
	// (Kubernetes 1.30+).
	MatchConditions bool
}

// DefaultWebhookOptions are the chart's defaults (RELIABILITY.md "Webhook
// configuration"); URL or Service and CABundle remain to be set.
func DefaultWebhookOptions() WebhookOptions {
	return WebhookOptions{
		Name:              "sidecar-injector",
		InjectorNamespace: "sidecar-injector",
		FailurePolicy:     admissionregistrationv1.Fail,
		DefaultPolicy:     "disabled",
		TimeoutSeconds:    5,
		SideEffects:       admissionregistrationv1.SideEffectClassNone,
		MatchConditions:   true,
	}
}

// Validate names every wrong field.
func (o WebhookOptions) Validate() error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("webhook configuration: "+format, args...))
	}
	if len(validation.IsDNS1123Subdomain(o.Name)) > 0 {
		bad("name %q: want a DNS subdomain such as sidecar-injector", o.Name)
	}
	if len(validation.IsDNS1123Label(o.InjectorNamespace)) > 0 {
		bad("injector namespace %q: want a namespace name such as sidecar-injector", o.InjectorNamespace)
	}
	for _, ns := range o.ExcludedNamespaces {
		if len(validation.IsDNS1123Label(ns)) > 0 {
			bad("excluded namespace %q: want a namespace name", ns)
		}
	}
	switch {
	case o.URL == "" && o.Service == nil:
		bad("neither a URL nor a Service: set one")
	case o.URL != "" && o.Service != nil:
		bad("both a URL and a Service: set one")
	case o.URL != "":
		u, err := url.Parse(o.URL)
		if err != nil || u.Scheme != "https" || u.Host == "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil || strings.TrimSuffix(u.Path, "/") != "" {
			bad("URL %q: want https://HOST:PORT with no path, query or user (the apiserver only calls webhooks over TLS)", o.URL)
		}
	case o.Service != nil:
		if o.Service.Name == "" || o.Service.Namespace == "" {
			bad("service %s/%s: want both a namespace and a name", o.Service.Namespace, o.Service.Name)
		}
	}
	if len(o.CABundle) == 0 {
		bad("empty caBundle: set the PEM CA that signed the webhook's serving certificate")
	}
	switch o.FailurePolicy {
	case admissionregistrationv1.Fail, admissionregistrationv1.Ignore:
	default:
		bad("failurePolicy %q: want Fail or Ignore", o.FailurePolicy)
	}
	switch o.DefaultPolicy {
	case "disabled", "enabled":
	default:
		bad("defaultPolicy %q: want disabled or enabled", o.DefaultPolicy)
	}
	if o.TimeoutSeconds < 1 || o.TimeoutSeconds > 30 {
		bad("timeoutSeconds %d: want 1-30", o.TimeoutSeconds)
	}
	switch o.SideEffects {
	case admissionregistrationv1.SideEffectClassNone, admissionregistrationv1.SideEffectClassNoneOnDryRun:
	default:
		bad("sideEffects %q: want None or NoneOnDryRun (dry-run requests must stay free of side effects)", o.SideEffects)
	}
	return errors.Join(errs...)
}

// MutatingWebhookConfiguration builds the injector's webhook configuration
// as the Helm chart renders it: one entry per row group of DESIGN.md "Who gets
// a sidecar", each excluding kube-system, kube-public, kube-node-lease, the
// injector's namespace and the excluded ones, and skipping pods labelled
// sidecar.io/inject=false (the webhook honours the annotation itself).
func MutatingWebhookConfiguration(o WebhookOptions) (*admissionregistrationv1.MutatingWebhookConfiguration, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	var excluded []string
	for _, ns := range append(append(slices.Clone(AlwaysExcludedNamespaces), o.InjectorNamespace), o.ExcludedNamespaces...) {
		if !slices.Contains(excluded, ns) {
			excluded = append(excluded, ns)
		}
	}
	req := func(key string, op metav1.LabelSelectorOperator, values ...string) metav1.LabelSelectorRequirement {
		return metav1.LabelSelectorRequirement{Key: key, Operator: op, Values: values}
	}
	entry := func(group, path string, nsReq, podReq metav1.LabelSelectorRequirement) admissionregistrationv1.MutatingWebhook {
		var cc admissionregistrationv1.WebhookClientConfig
		if o.URL != "" {
			u := strings.TrimSuffix(o.URL, "/") + path
			cc.URL = &u
		} else {
			svc := o.Service.DeepCopy()
			svc.Path = &path
			cc.Service = svc
		}
		cc.CABundle = slices.Clone(o.CABundle)
		w := admissionregistrationv1.MutatingWebhook{
			Name:                    EntryName(group, o.Name),
			ClientConfig:            cc,
			AdmissionReviewVersions: []string{"v1"},
			Rules: []admissionregistrationv1.RuleWithOperations{{
				Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create},
				Rule: admissionregistrationv1.Rule{
					APIGroups:   []string{""},
					APIVersions: []string{"v1"},
					Resources:   []string{"pods"},
					Scope:       ptr(admissionregistrationv1.NamespacedScope),
				},
			}},
			FailurePolicy: ptr(o.FailurePolicy),
			MatchPolicy:   ptr(admissionregistrationv1.Equivalent),
			NamespaceSelector: &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
				nsReq, req(namespaceNameLabel, metav1.LabelSelectorOpNotIn, slices.Clone(excluded)...),
			}},
			ObjectSelector:     &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{podReq}},
			SideEffects:        ptr(o.SideEffects),
			TimeoutSeconds:     ptr(o.TimeoutSeconds),
			ReinvocationPolicy: ptr(admissionregistrationv1.IfNeededReinvocationPolicy),
		}
		if o.MatchConditions {
			w.MatchConditions = []admissionregistrationv1.MatchCondition{
				{Name: "not-host-network", Expression: "!has(object.spec.hostNetwork) || !object.spec.hostNetwork"},
				{Name: "not-mirror-pod", Expression: "!has(object.metadata.annotations) || !('kubernetes.io/config.mirror' in object.metadata.annotations)"},
			}
		}
		return w
	}
	notOptedOut := req(InjectLabel, metav1.LabelSelectorOpNotIn, "false")
	unlabelledNS := req(NamespaceLabel, metav1.LabelSelectorOpDoesNotExist)
	webhooks := []admissionregistrationv1.MutatingWebhook{
		entry(GroupEnabled, PathMutate, req(NamespaceLabel, metav1.LabelSelectorOpIn, "enabled"), notOptedOut),
		entry(GroupAudit, PathAudit, req(NamespaceLabel, metav1.LabelSelectorOpIn, "audit"), notOptedOut),
		entry(GroupOptIn, PathMutate, unlabelledNS, req(InjectLabel, metav1.LabelSelectorOpIn, "true")),
	}
	if o.DefaultPolicy == "enabled" {
		webhooks = append(webhooks, entry(GroupDefault, PathMutate, unlabelledNS, req(InjectLabel, metav1.LabelSelectorOpDoesNotExist)))
	}
	// A value outside enabled|disabled|audit: NotIn alone would also match
	// unlabelled namespaces, hence Exists. A warning never refuses a pod.
	invalid := entry(GroupInvalidLabel, PathInvalidLabel, req(NamespaceLabel, metav1.LabelSelectorOpNotIn, "enabled", "disabled", "audit"), notOptedOut)
	invalid.NamespaceSelector.MatchExpressions = slices.Insert(invalid.NamespaceSelector.MatchExpressions, 1, req(NamespaceLabel, metav1.LabelSelectorOpExists))
	invalid.FailurePolicy = ptr(admissionregistrationv1.Ignore)
	invalid.ReinvocationPolicy = ptr(admissionregistrationv1.NeverReinvocationPolicy)
	webhooks = append(webhooks, invalid)
	return &admissionregistrationv1.MutatingWebhookConfiguration{
		TypeMeta:   metav1.TypeMeta{APIVersion: "admissionregistration.k8s.io/v1", Kind: "MutatingWebhookConfiguration"},
		ObjectMeta: metav1.ObjectMeta{Name: o.Name, Labels: map[string]string{"app.kubernetes.io/name": "sidecar-injector"}},
		Webhooks:   webhooks,
	}, nil
}

func ptr[T any](v T) *T { return &v }
