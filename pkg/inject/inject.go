// Package inject is the injection engine: given a pod, the injector config
// and what the caller knows about the namespace, it decides whether the pod
// gets a sidecar and returns the JSON patch that adds it. It is pure: no
// network, no clock, no globals; the webhook and the CLI call the same code.
package inject

import (
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"

	"github.com/sidecar-injector/sidecar-injector/pkg/redirect"
)

// Overrides is what the caller knows beyond the pod and the config.
type Overrides struct {
	// Namespace is the namespace the pod is created in. Empty means unknown
	// (offline manifests without one): namespace-based skips do not apply.
	Namespace string
	// NamespaceLabels are the namespace's labels. Nil means the caller has
	// already decided the namespace part of the policy (the webhook: the
	// apiserver's namespaceSelector chose the webhook entry), which then
	// counts as sidecar-injection=enabled.
	NamespaceLabels map[string]string
	// NativeSidecarSupported says whether the cluster runs native sidecars
	// (Kubernetes 1.29+); it decides proxy.nativeSidecar "auto". Nil: assume yes.
	NativeSidecarSupported *bool
	// InjectorVersion is recorded in the status annotation.
	InjectorVersion string
}

// Injector is a config made ready for many pods: its hash and parsed
// defaults are computed once. It is immutable and safe for concurrent use.
type Injector struct {
	cfg  Config
	hash string
	// defaults of the redirect spec, before pod settings.
	excludeOutboundCIDRs redirect.CIDRList
	excludeOutboundPorts redirect.PortList
	excludeInboundPorts  redirect.PortList
	// enc writes the JSON of what the injector adds (patchjson.go).
	enc encoders
}

// New validates cfg and prepares an Injector.
func New(cfg Config) (*Injector, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	in := &Injector{cfg: cfg, hash: cfg.Hash()}
	// Validate has parsed these already; errors cannot happen here.
	in.excludeOutboundCIDRs, _ = redirect.ParseCIDRList(cfg.Redirect.ExcludeOutboundIPRanges)
	in.excludeOutboundPorts, _ = redirect.ParsePortList(cfg.Redirect.ExcludeOutboundPorts)
	in.excludeInboundPorts, _ = redirect.ParsePortList(cfg.Redirect.ExcludeInboundPorts)
	in.enc = in.newEncoders()
	return in, nil
}

// Config returns the injector's config.
func (in *Injector) Config() Config { return in.cfg }

// Hash returns the config hash written into injected pods.
func (in *Injector) Hash() string { return in.hash }

// Inject is New(cfg) followed by Injector.Inject, for one-off callers.
func Inject(pod *corev1.Pod, cfg Config, ov Overrides) (Result, error) {
	in, err := New(cfg)
	if err != nil {
		return Result{}, err
	}
	return in.Inject(pod, ov)
}

// Inject decides and builds. A deny returns the Result (for explain) and an
// *Error naming the field; no other error is returned.
func (in *Injector) Inject(pod *corev1.Pod, ov Overrides) (Result, error) {
	if pod == nil {
		return deny(denyf(ReasonInvalidPod, "object", "no pod"))
	}
	d, err := in.decide(pod, ov)
	if err != nil {
		return deny(err)
	}
	if d.decision == DecisionSkip {
		return Result{Decision: DecisionSkip, Reason: d.reason, Message: d.message, Warnings: d.warnings, Audit: d.audit, Status: d.status, Patch: Patch{}, Pod: pod}, nil
	}
	res, err := in.build(pod, d, ov)
	if err != nil {
		r, e := deny(err)
		r.Audit = d.audit
		r.Warnings = d.warnings
		return r, e
	}
	return res, nil
}

func deny(err *Error) (Result, error) {
	return Result{Decision: DecisionDeny, Reason: err.Reason, Message: err.Error(), Patch: Patch{}}, err
}

// decision is the outcome of the policy step.
type decision struct {
	decision Decision
	reason   Reason
	message  string
	audit    bool
	status   *Status  // the pod's existing status, if any and trusted
	warnings []string // a status ignored
}

// decide applies DESIGN.md "Who gets a sidecar" and the skip rules.
func (in *Injector) decide(pod *corev1.Pod, ov Overrides) (decision, *Error) {
	var status *Status
	var warnings []string
	if s, ok := pod.Annotations[StatusAnnotation]; ok {
		st, err := ParseStatus(s)
		if err != nil {
			return decision{}, denyf(ReasonInvalidPod, "annotation "+StatusAnnotation, "%q: %s; remove the annotation (it is written by the injector)", truncate(s), statusProblem(err))
		}
		// A status that does not describe the pod is ignored: the pod is
		// injected as if it had none (the name checks apply).
		var warn string
		if status, warn = st.trusted(pod); warn != "" {
			warnings = append(warnings, warn)
		}
	}
	skip := func(r Reason, format string, args ...any) (decision, *Error) {
		return decision{decision: DecisionSkip, reason: r, message: fmt.Sprintf(format, args...), status: status, warnings: warnings}, nil
	}

	ns := ov.Namespace
	switch {
	case ns != "" && ns == in.cfg.Injection.InjectorNamespace:
		return skip(ReasonInjectorNamespace, "namespace %q is the injector's own namespace; it is never injected", ns)
	case ns != "" && in.cfg.excludedNamespace(ns):
		return skip(ReasonExcludedNamespace, "namespace %q is excluded from injection", ns)
	}
	if _, ok := pod.Annotations[MirrorPodAnnotation]; ok {
		return skip(ReasonMirrorPod, "mirror (static) pods cannot be changed by admission")
	}
	if pod.Spec.HostNetwork {
		return skip(ReasonHostNetwork, "hostNetwork pods share the node's network; redirecting it would capture the node's traffic")
	}

	podSwitch, switchField, err := podInjectSwitch(pod)
	if err != nil {
		return decision{}, err
	}
	var d decision
	d, err = in.namespacePolicy(pod, ov.NamespaceLabels, podSwitch, switchField)
	d.warnings = warnings
	if err != nil || d.decision == DecisionSkip {
		d.status = status
		return d, err
	}
	d.status = status
	if status != nil && status.ConfigHash == in.hash {
		return decision{decision: DecisionSkip, reason: ReasonAlreadyInjected, audit: d.audit, status: status, warnings: warnings,
			message: fmt.Sprintf("already injected with the current config (hash %s)", in.hash)}, nil
	}
	if status != nil {
		d.reason = ReasonReinjected
		d.message = fmt.Sprintf("injected before with config hash %s; refreshed to %s", status.ConfigHash, in.hash)
	}
	return d, nil
}

// podInjectSwitch reads sidecar.io/inject: the label wins over the annotation.
// It returns "" when neither is set.
func podInjectSwitch(pod *corev1.Pod) (value, field string, err *Error) {
	if v, ok := pod.Labels[InjectKey]; ok {
		value, field = v, "label "+InjectKey
	} else if v, ok := pod.Annotations[InjectKey]; ok {
		value, field = v, "annotation "+InjectKey
	} else {
		return "", "", nil
	}
	if value != "true" && value != "false" {
		return "", field, denyf(ReasonInvalidSetting, field, "%q: want \"true\" or \"false\"", truncate(value))
	}
	return value, field, nil
}

func (in *Injector) namespacePolicy(pod *corev1.Pod, labels map[string]string, podSwitch, switchField string) (decision, *Error) {
	nsValue, labelled := "enabled", true // nil labels: the caller decided the namespace part
	if labels != nil {
		nsValue, labelled = labels[NamespaceLabel]
	}
	if podSwitch == "false" {
		return decision{decision: DecisionSkip, reason: ReasonOptedOut, message: fmt.Sprintf("the pod opted out (%s=\"false\")", switchField)}, nil
	}
	switch {
	case labelled && nsValue == "enabled":
		return decision{decision: DecisionInject, reason: ReasonNamespaceEnabled, message: "the namespace has " + NamespaceLabel + "=enabled"}, nil
	case labelled && nsValue == "audit":
		return decision{decision: DecisionInject, reason: ReasonNamespaceEnabled, audit: true, message: "the namespace has " + NamespaceLabel + "=audit: decision reported, pod not changed"}, nil
	case labelled && nsValue == "disabled":
		return decision{decision: DecisionSkip, reason: ReasonNamespaceDisabled, message: "the namespace has " + NamespaceLabel + "=disabled"}, nil
	case labelled:
		// No webhook entry matches such a namespace but the chart's catch-all,
		// which answers "allowed, no patch" with this message as a warning.
		return decision{decision: DecisionSkip, reason: ReasonNamespaceLabelInvalid, message: InvalidNamespaceLabel(nsValue)}, nil
	}
	// Unlabelled namespace: only the pod label opts in (the apiserver's
	// objectSelector can see labels, not annotations).
	if v, ok := pod.Labels[InjectKey]; ok && v == "true" {
		return decision{decision: DecisionInject, reason: ReasonPodOptedIn, message: "the pod has label " + InjectKey + "=\"true\""}, nil
	}
	if in.cfg.Injection.DefaultPolicy == PolicyEnabled {
		return decision{decision: DecisionInject, reason: ReasonDefaultEnabled, message: "the namespace is unlabelled and injection.defaultPolicy is enabled"}, nil
	}
	msg := "the namespace is not labelled " + NamespaceLabel + "=enabled and the pod has no label " + InjectKey + "=\"true\""
	if podSwitch == "true" {
		msg += " (the annotation alone does not opt in from an unlabelled namespace: use the label)"
	}
	return decision{decision: DecisionSkip, reason: ReasonNotOptedIn, message: msg}, nil
}

// InvalidNamespaceLabel says that a namespace's sidecar-injection label has
// a value outside enabled|disabled|audit (say "true"), which injects
// nothing. Behind "no sidecar: " it fits an admission warning (120
// characters) for any value: longer ones are cut at 24.
func InvalidNamespaceLabel(value string) string {
	if len(value) > 24 {
		value = strings.ToValidUTF8(value[:24], "") + "…"
	}
	return fmt.Sprintf("namespace label %s=%q is invalid (valid: enabled, disabled, audit)", NamespaceLabel, value)
}

// statusProblem is what is wrong with a status annotation, without the
// annotation's name (the Error's Field carries it).
func statusProblem(err error) string {
	return strings.TrimPrefix(err.Error(), "annotation "+StatusAnnotation+": ")
}

func truncate(s string) string {
	const limit = 64
	if len(s) <= limit {
		return s
	}
	return strings.ToValidUTF8(s[:limit], "") + "…"
}
