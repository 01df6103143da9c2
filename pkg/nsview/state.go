// Package nsview is what the webhook and the controller both know about a
// namespace: the state of its envoy-config ConfigMap, the Pod Security level
// it enforces, the admission warnings those give; and View, the webhook's
// read-only watch of them. It uses client-go's metadata client only (labels
// are all it reads), not the typed clientset, so the webhook binary that
// links it stays lean.
package nsview

import (
	"fmt"

	"github.com/sidecar-injector/sidecar-injector/pkg/inject"
)

// Labels read on namespaces and envoy-config ConfigMaps.
const (
	// PodSecurityEnforceLabel is the Pod Security admission level a
	// namespace enforces.
	PodSecurityEnforceLabel = "pod-security.kubernetes.io/enforce"
	// ManagedByLabel marks the envoy-config ConfigMaps the controller made;
	// one without it is never changed or deleted.
	ManagedByLabel = "app.kubernetes.io/managed-by"
	// ManagedByValue is ManagedByLabel's value.
	ManagedByValue = "sidecar-injector"
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

// StateOf classifies a namespace's envoy-config from whether it exists and
// its labels.
func StateOf(exists bool, labels map[string]string) ConfigMapState {
	switch {
	case !exists:
		return ConfigMapMissing
	case labels[ManagedByLabel] == ManagedByValue:
		return ConfigMapOurs
	}
	return ConfigMapForeign
}

// PodSecurityBlocks says whether a namespace's enforced Pod Security level
// rejects iptables-init (NET_ADMIN and NET_RAW): baseline and restricted do.
// It returns the level, or "" when injected pods are admitted.
func PodSecurityBlocks(labels map[string]string) string {
	switch v := labels[PodSecurityEnforceLabel]; v {
	case "baseline", "restricted":
		return v
	}
	return ""
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
