package controller

import (
	"slices"

	"github.com/sidecar-injector/sidecar-injector/pkg/inject"
)

// PodState is what the controller says about a running pod: the state
// label of sidecar_injector_pods.
type PodState string

const (
	// PodCurrent: injected with the config in use.
	PodCurrent PodState = "current"
	// PodStale: injected with another config (its status carries another
	// hash, or a status we cannot read); a restart refreshes it.
	PodStale PodState = "stale"
	// PodMissing: the rules say it should have a sidecar but it has none
	// (created while the webhook was unreachable with failurePolicy Ignore,
	// or before its namespace was labelled); a restart injects it.
	PodMissing PodState = "missing"
	// PodIgnored: neither injected nor expected to be: not counted.
	PodIgnored PodState = ""
)

// PodStates lists the counted states in a fixed order.
func PodStates() []PodState { return []PodState{PodCurrent, PodStale, PodMissing} }

// alwaysExcluded are never injected (DESIGN.md "Who gets a sidecar").
var alwaysExcluded = []string{"kube-system", "kube-public", "kube-node-lease"}

// Expectation is what the injection rules expect of a namespace's pods.
type Expectation uint8

const (
	// ExpectNone: pods are never injected (excluded, labelled disabled, or
	// an invalid label the webhook refuses).
	ExpectNone Expectation = iota
	// ExpectInject: labelled enabled: every pod not opted out.
	ExpectInject
	// ExpectAudit: labelled audit: decisions are reported, nothing injected.
	ExpectAudit
	// ExpectOptIn: unlabelled, defaultPolicy disabled: pods labelled
	// sidecar.io/inject=true only.
	ExpectOptIn
	// ExpectDefault: unlabelled, defaultPolicy enabled: every pod not opted out.
	ExpectDefault
)

// NamespaceExpectation applies DESIGN.md "Who gets a sidecar" to a namespace.
func NamespaceExpectation(name string, labels map[string]string, cfg *inject.Config) Expectation {
	if Excluded(name, cfg) {
		return ExpectNone
	}
	v, ok := labels[inject.NamespaceLabel]
	switch {
	case !ok && cfg.Injection.DefaultPolicy == inject.PolicyEnabled:
		return ExpectDefault
	case !ok:
		return ExpectOptIn
	case v == "enabled":
		return ExpectInject
	case v == "audit":
		return ExpectAudit
	}
	return ExpectNone // disabled, or a value the webhook refuses
}

// ValidNamespaceLabel says whether v is a value of the sidecar-injection
// namespace label: enabled, disabled or audit. Any other value (true, yes,
// Enabled, "") matches no webhook entry but the chart's catch-all, which
// warns: the pods get no sidecar.
func ValidNamespaceLabel(v string) bool {
	return v == "enabled" || v == "disabled" || v == "audit"
}

// Excluded says whether a namespace is never injected: kube-system,
// kube-public, kube-node-lease, the injector's own and the configured ones.
func Excluded(name string, cfg *inject.Config) bool {
	return name == cfg.Injection.InjectorNamespace || slices.Contains(alwaysExcluded, name) || slices.Contains(cfg.Injection.ExcludedNamespaces, name)
}

// WantsEnvoyConfig says whether a namespace needs the envoy-config
// ConfigMap: labelled enabled or audit, unlabelled with defaultPolicy
// enabled, or holding a pod that carries a sidecar (opted in by its label).
func WantsEnvoyConfig(e Expectation, injectedPods bool) bool {
	switch e {
	case ExpectInject, ExpectAudit, ExpectDefault:
		return true
	case ExpectOptIn:
		return injectedPods
	}
	return false
}

// PodFacts are what the classification needs of a pod; all of it is in
// the pod's metadata, so a metadata-only watch suffices.
type PodFacts struct {
	// Switch is sidecar.io/inject: the label, else the annotation; "" when
	// neither is set. SwitchIsLabel says which.
	Switch        string
	SwitchIsLabel bool
	// Injected says the pod carries sidecar.io/status; ConfigHash is its
	// config hash ("" when the status cannot be read).
	Injected   bool
	ConfigHash string
	// Mirror is a static pod mirrored by the kubelet: never injected.
	Mirror bool
}

// hashAnnotation is where the controller's pod cache keeps the config hash
// of sidecar.io/status (the full status is dropped to save memory).
const hashAnnotation = "controller.sidecar.io/config-hash"

// FactsOf reads the facts from a pod's labels and annotations.
func FactsOf(labels, annotations map[string]string) PodFacts {
	var f PodFacts
	if v, ok := labels[inject.InjectKey]; ok {
		f.Switch, f.SwitchIsLabel = v, true
	} else if v, ok := annotations[inject.InjectKey]; ok {
		f.Switch = v
	}
	if h, ok := annotations[hashAnnotation]; ok {
		f.Injected, f.ConfigHash = true, h
	} else if s, ok := annotations[inject.StatusAnnotation]; ok {
		f.Injected = true
		if st, err := inject.ParseStatus(s); err == nil {
			f.ConfigHash = st.ConfigHash
		}
	}
	_, f.Mirror = annotations[inject.MirrorPodAnnotation]
	return f
}

// ClassifyPod says whether a pod is current, stale, missing its sidecar, or
// none of these, given what its namespace expects and the current config hash.
func ClassifyPod(f PodFacts, e Expectation, currentHash string) PodState {
	if f.Injected {
		if f.ConfigHash != "" && f.ConfigHash == currentHash {
			return PodCurrent
		}
		return PodStale
	}
	if f.Mirror || f.Switch == "false" {
		return PodIgnored
	}
	switch e {
	case ExpectInject, ExpectDefault:
		if f.Switch == "" || f.Switch == "true" {
			return PodMissing
		}
	case ExpectOptIn:
		if f.SwitchIsLabel && f.Switch == "true" {
			return PodMissing
		}
	}
	return PodIgnored
}
