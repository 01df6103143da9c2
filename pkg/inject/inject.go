// Package inject is the injection engine: given a pod, the injector config
// and what the caller knows about the namespace, it decides whether the pod
// gets a sidecar and returns the JSON patch that adds it. It is pure: no
// network, no clock, no globals; the webhook and the CLI call the same code.
package inject

import (
	"errors"

	corev1 "k8s.io/api/core/v1"
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

// Inject decides and builds. A deny returns the Result (for explain) and an
// *Error naming the field; other errors do not happen for decodable pods.
func Inject(pod *corev1.Pod, cfg Config, ov Overrides) (Result, error) {
	return Result{}, errors.New("inject: engine not yet implemented")
}
