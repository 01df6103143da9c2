package controller

import (
	corev1 "k8s.io/api/core/v1"

	"github.com/sidecar-injector/sidecar-injector/pkg/nsview"
)

// stateOf classifies a namespace's envoy-config (nil: absent).
func stateOf(cm *corev1.ConfigMap) nsview.ConfigMapState {
	if cm == nil {
		return nsview.ConfigMapMissing
	}
	return nsview.StateOf(true, cm.Labels)
}

// nsEntry is what the admission path reads about one namespace. Entries are
// replaced, never changed, so a reader may keep the warnings slice.
type nsEntry struct {
	envoyConfig nsview.ConfigMapState
	podSecurity string
	wanted      bool
	warnings    []string
	// labelInvalid: sidecar-injection is set to labelValue, which is not
	// enabled, disabled or audit.
	labelInvalid bool
	labelValue   string
}

// NamespaceState returns, from the controller's caches and without an API
// call or an allocation, the state of a namespace's envoy-config and the
// Pod Security level it enforces when that level rejects injected pods
// ("baseline" or "restricted", else ""). Unknown namespaces (caches not
// synced, outside the selector) give nsview.ConfigMapUnknown and "".
func (c *Controller) NamespaceState(ns string) (envoyConfig nsview.ConfigMapState, podSecurityEnforce string) {
	c.mu.RLock()
	e, ok := c.states[ns]
	c.mu.RUnlock()
	if !ok {
		return nsview.ConfigMapUnknown, ""
	}
	return e.envoyConfig, e.podSecurity
}

// Warnings returns the admission warnings for a pod injected into ns: the
// envoy-config is missing or not ours, or the namespace enforces a Pod
// Security level that rejects iptables-init. The slice is shared: callers
// append it to their own and never modify it. No allocation.
func (c *Controller) Warnings(ns string) []string {
	c.mu.RLock()
	e, ok := c.states[ns]
	c.mu.RUnlock()
	if !ok {
		return nil
	}
	return e.warnings
}
