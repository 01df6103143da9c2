package inject

import (
	"errors"
	"fmt"

	corev1 "k8s.io/api/core/v1"
)

// Decision is what the engine decided for a pod.
type Decision string

const (
	DecisionInject Decision = "inject" // the patch adds (or refreshes) the sidecar
	DecisionSkip   Decision = "skip"   // allowed unchanged, for Reason
	DecisionDeny   Decision = "deny"   // the pod cannot be admitted as it is
)

// Reason says why. The set is small and fixed: the same value labels the
// metrics, the log line, the Event, the warning and the explain output.
type Reason string

const (
	// Inject.
	ReasonNamespaceEnabled Reason = "namespace_enabled" // namespace labelled enabled (or the caller decided the namespace part)
	ReasonPodOptedIn       Reason = "pod_opted_in"      // pod label "true" in an unlabelled namespace
	ReasonDefaultEnabled   Reason = "default_enabled"   // unlabelled namespace, defaultPolicy enabled
	ReasonReinjected       Reason = "reinjected"        // injected before with another config hash; refreshed

	// Skip.
	ReasonOptedOut          Reason = "opted_out"          // sidecar.io/inject "false"
	ReasonNamespaceDisabled Reason = "namespace_disabled" // namespace labelled disabled
	ReasonNotOptedIn        Reason = "not_opted_in"       // unlabelled namespace, defaultPolicy disabled, no pod label
	ReasonHostNetwork       Reason = "host_network"       // hostNetwork pods share the node's network
	ReasonMirrorPod         Reason = "mirror_pod"         // static pods mirrored by the kubelet
	ReasonExcludedNamespace Reason = "excluded_namespace" // kube-system, kube-public, kube-node-lease, configured ones
	ReasonInjectorNamespace Reason = "injector_namespace" // the injector's own namespace (no deadlock)
	ReasonAlreadyInjected   Reason = "already_injected"   // same config hash: nothing to do
	// ReasonNamespaceLabelInvalid: sidecar-injection has a value other than
	// enabled, disabled or audit (a common mistake: "true").
	ReasonNamespaceLabelInvalid Reason = "namespace_label_invalid"

	// Deny.
	ReasonInvalidPod       Reason = "invalid_pod"        // the pod is not one we can inject
	ReasonNameConflict     Reason = "name_conflict"      // a container or volume already has one of our names
	ReasonProxyUIDConflict Reason = "proxy_uid_conflict" // the app runs as the proxy UID
	ReasonInvalidSetting   Reason = "invalid_setting"    // a sidecar.io/* setting annotation is malformed
	ReasonForbiddenSetting Reason = "forbidden_setting"  // a sidecar.io/* setting the config does not allow
	ReasonNoFreePort       Reason = "no_free_port"       // no proxy port left in the configured range
	ReasonOtherMesh        Reason = "other_mesh"         // another mesh's proxy or init container is in the pod
)

// Reasons lists every reason, in a fixed order.
func Reasons() []Reason {
	return []Reason{
		ReasonNamespaceEnabled, ReasonPodOptedIn, ReasonDefaultEnabled, ReasonReinjected,
		ReasonOptedOut, ReasonNamespaceDisabled, ReasonNotOptedIn, ReasonHostNetwork, ReasonMirrorPod,
		ReasonExcludedNamespace, ReasonInjectorNamespace, ReasonAlreadyInjected, ReasonNamespaceLabelInvalid,
		ReasonInvalidPod, ReasonNameConflict, ReasonProxyUIDConflict, ReasonInvalidSetting,
		ReasonForbiddenSetting, ReasonNoFreePort, ReasonOtherMesh,
	}
}

// Decision is the decision a reason comes with (outside audit mode, which
// reports it and changes nothing); "" for a value outside the set.
func (r Reason) Decision() Decision { return reasonTraits[r].decision }

// Expected says the outcome is what the user asked for or a normal
// repetition (opted out, already injected): it warrants no warning and no
// Event. Every other skip and every deny is worth telling the user about.
func (r Reason) Expected() bool { return reasonTraits[r].expected }

// Forbidden says a deny is about what the config does not allow (HTTP
// 403), not about a pod that is wrong (400).
func (r Reason) Forbidden() bool { return r == ReasonForbiddenSetting }

var reasonTraits = map[Reason]struct {
	decision Decision
	expected bool
}{
	ReasonNamespaceEnabled: {DecisionInject, false}, ReasonPodOptedIn: {DecisionInject, false},
	ReasonDefaultEnabled: {DecisionInject, false}, ReasonReinjected: {DecisionInject, false},

	ReasonOptedOut: {DecisionSkip, true}, ReasonAlreadyInjected: {DecisionSkip, true},
	ReasonNamespaceDisabled: {DecisionSkip, false}, ReasonNotOptedIn: {DecisionSkip, false},
	ReasonHostNetwork: {DecisionSkip, false}, ReasonMirrorPod: {DecisionSkip, false},
	ReasonExcludedNamespace: {DecisionSkip, false}, ReasonInjectorNamespace: {DecisionSkip, false},
	ReasonNamespaceLabelInvalid: {DecisionSkip, false},

	ReasonInvalidPod: {DecisionDeny, false}, ReasonNameConflict: {DecisionDeny, false},
	ReasonProxyUIDConflict: {DecisionDeny, false}, ReasonInvalidSetting: {DecisionDeny, false},
	ReasonForbiddenSetting: {DecisionDeny, false}, ReasonNoFreePort: {DecisionDeny, false},
	ReasonOtherMesh: {DecisionDeny, false},
}

// Error is a deny: the pod cannot be injected as it is. Field names what was
// wrong (an annotation, a container), Message how to fix it.
type Error struct {
	Reason  Reason
	Field   string
	Message string
}

func (e *Error) Error() string {
	if e.Field == "" {
		return e.Message
	}
	return e.Field + ": " + e.Message
}

func denyf(reason Reason, field, format string, args ...any) *Error {
	return &Error{Reason: reason, Field: field, Message: fmt.Sprintf(format, args...)}
}

// AsError returns the *Error inside err, if any.
func AsError(err error) (*Error, bool) {
	var e *Error
	ok := errors.As(err, &e)
	return e, ok
}

// PatchOp is one RFC 6902 JSON Patch operation.
type PatchOp struct {
	Op    string `json:"op"` // add, replace, remove
	Path  string `json:"path"`
	Value any    `json:"value,omitempty"`
	// enc, when set, writes Value's JSON with the parts that depend only
	// on the config marshalled once (patchjson.go). Only the engine sets
	// it, for values it built from that config.
	enc valueJSON
}

// Patch is a JSON Patch.
type Patch []PatchOp

// Ports are the proxy ports chosen for a pod.
type Ports struct {
	Inbound  uint16 `json:"inbound"`
	Outbound uint16 `json:"outbound"`
	Stats    uint16 `json:"stats"`
	Admin    uint16 `json:"admin"`
}

// Result is everything the engine decided about one pod.
type Result struct {
	Decision Decision `json:"decision"`
	Reason   Reason   `json:"reason"`
	// Message explains the decision in a sentence a user understands.
	Message string `json:"message"`
	// Warnings are decisions the user would not expect (port moved, setting
	// ignored, ...), returned as admission warnings.
	Warnings []string `json:"warnings,omitempty"`
	// Audit is set when the namespace is in audit mode: the decision is
	// reported, the patch is not applied by the webhook.
	Audit bool `json:"audit,omitempty"`
	// Status is the sidecar.io/status written into the pod (Decision inject),
	// or the one it already carries (already_injected).
	Status *Status `json:"status,omitempty"`
	// Patch turns the incoming pod into Pod. Empty unless Decision is inject.
	Patch Patch `json:"patch"`
	// Pod is the injected pod (typed: fields unknown to our k8s.io/api are not
	// in it; apply Patch to the raw object to keep them).
	Pod *corev1.Pod `json:"-"`
}
