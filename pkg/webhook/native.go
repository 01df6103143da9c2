package webhook

import "k8s.io/apimachinery/pkg/version"

// SupportsNativeSidecar says whether a cluster of this version runs native
// sidecars (Kubernetes 1.29+), the way the webhook decides it at start-up;
// offline tools reading the cluster use it to agree with the webhook.
func SupportsNativeSidecar(info version.Info) (bool, error) {
	return supportsNativeSidecar(info)
}
