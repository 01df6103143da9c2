package controller

import (
	"fmt"

	corev1 "k8s.io/api/core/v1"

	"github.com/sidecar-injector/sidecar-injector/pkg/inject"
)

// ConfigMapState is the state of a namespace's envoy-config ConfigMap: the
// state label of sidecar_injector_namespaces.
type ConfigMapState string

const (
	// ConfigMapUnknown: the controller has not seen the namespace (caches
	// not synced yet, or the namespace is outside its selector).
	ConfigMapUnknown ConfigMapState = ""
	// ConfigMapOurs: present and managed by sidecar-injector.
	ConfigMapOurs ConfigMapState = "ours"
	// ConfigMapMissing: absent; injected pods cannot start until it exists.
	ConfigMapMissing ConfigMapState = "missing"
	// ConfigMapForeign: present but not made by sidecar-injector: never
	// overwritten nor deleted.
	ConfigMapForeign ConfigMapState = "foreign"
)

// ConfigMapStates lists the counted states in a fixed order.
func ConfigMapStates() []ConfigMapState {
	return []ConfigMapState{ConfigMapOurs, ConfigMapMissing, ConfigMapForeign}
}

// stateOf classifies a namespace's envoy-config (nil: absent).
func stateOf(cm *corev1.ConfigMap) ConfigMapState {
	switch {
	case cm == nil:
		return ConfigMapMissing
	case cm.Labels[ManagedByLabel] == ManagedByValue:
		return ConfigMapOurs
	}
	return ConfigMapForeign
}

// Warning texts of the admission checks. Each fits the 120 characters of an
// admission warning for namespace names up to 32 characters.
const (
	warnMissingFormat = "%s ConfigMap missing in namespace %s: injected pods cannot start until it exists"
	warnForeignFormat = "%s ConfigMap in namespace %s is not managed by sidecar-injector; left untouched"
	warnPodSecurity   = "namespace enforces Pod Security %s: iptables-init needs NET_ADMIN and NET_RAW, injected pods will be rejected"
)

// NamespaceWarnings are the admission warnings for a pod injected into a
// namespace whose envoy-config is in state s and which enforces Pod
// Security level podSecurity ("" when it admits injected pods).
func NamespaceWarnings(ns string, s ConfigMapState, podSecurity string) []string {
	var ws []string
	switch s {
	case ConfigMapMissing:
		ws = append(ws, fmt.Sprintf(warnMissingFormat, inject.ConfigMapName, ns))
	case ConfigMapForeign:
		ws = append(ws, fmt.Sprintf(warnForeignFormat, inject.ConfigMapName, ns))
	}
	if podSecurity != "" {
		ws = append(ws, fmt.Sprintf(warnPodSecurity, podSecurity))
	}
	return ws
}

// nsEntry is what the admission path reads about one namespace. Entries are
// replaced, never changed, so a reader may keep the warnings slice.
type nsEntry struct {
	envoyConfig ConfigMapState
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
// synced, outside the selector) give ConfigMapUnknown and "".
func (c *Controller) NamespaceState(ns string) (envoyConfig ConfigMapState, podSecurityEnforce string) {
	c.mu.RLock()
	e, ok := c.states[ns]
	c.mu.RUnlock()
	if !ok {
		return ConfigMapUnknown, ""
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
