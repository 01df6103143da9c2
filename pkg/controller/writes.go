package controller

import (
	"context"
	"errors"
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/sidecar-injector/sidecar-injector/pkg/inject"
	"github.com/sidecar-injector/sidecar-injector/pkg/nsview"
)

// Writes of the envoy-config ConfigMap: server-side apply that never
// takes fields over, and deletion of exactly the one we own.

// apply writes ns's envoy-config with server-side apply, never forcing:
// fields another manager owns make it fail instead of being overwritten.
func (c *Controller) apply(ctx context.Context, ns string, cm *corev1.ConfigMap, d *desired) (nsview.ConfigMapState, error) {
	// No per-namespace write limit: only the Lease holder writes, so two
	// replicas with different configs (a rollout) never take turns.
	state := stateOf(cm)
	rv := ""
	if cm != nil {
		rv = cm.ResourceVersion
	}
	ctx, cancel := context.WithTimeout(ctx, apiTimeout)
	defer cancel()
	got, err := c.cs.CoreV1().ConfigMaps(ns).Apply(ctx, d.applyConfig(ns, rv, c.owner), metav1.ApplyOptions{FieldManager: c.cfg.FieldManager, Force: false})
	if err == nil {
		result := WriteApplied
		if cm != nil && got.ResourceVersion == cm.ResourceVersion {
			result = WriteUnchanged
		}
		c.metrics.writes.WithLabelValues(result).Inc()
		if result == WriteApplied {
			c.log.Info("controller: envoy-config applied", "namespace", ns, "config_hash", d.hash, "resource_version", got.ResourceVersion)
		}
		return nsview.ConfigMapOurs, nil
	}
	if owner, ok := fieldConflict(err); ok {
		c.metrics.writes.WithLabelValues(WriteConflict).Inc()
		c.rec.namespaceEvent(ns, related(cm), EventEnvoyConfigNotManaged, foreignNote(ns, owner))
		return nsview.ConfigMapForeign, nil
	}
	switch {
	case apierrors.IsConflict(err):
		// Changed since our cache saw it (resourceVersion precondition):
		// the informer brings the new version and we look again.
		return state, fmt.Errorf("apply %s/%s: %w", ns, inject.ConfigMapName, err)
	case apierrors.IsNotFound(err):
		return state, nil // the namespace is gone
	}
	c.metrics.writes.WithLabelValues(WriteError).Inc()
	c.rec.namespaceEvent(ns, nil, EventEnvoyConfigWriteFailed, fmt.Sprintf(
		"cannot write ConfigMap %s: %v; injected pods cannot start until it exists. Check the injector's RBAC (configmaps create/patch) and quotas; retrying",
		inject.ConfigMapName, err))
	c.log.Error("controller: envoy-config write failed; retrying", "namespace", ns, "error", err)
	return state, fmt.Errorf("apply %s/%s: %w", ns, inject.ConfigMapName, err)
}

// fieldConflict says whether err is a server-side apply conflict with
// another field manager, and names the manager.
func fieldConflict(err error) (string, bool) {
	var st apierrors.APIStatus
	if !errors.As(err, &st) {
		return "", false
	}
	s := st.Status()
	if s.Details == nil {
		return "", false
	}
	for _, cause := range s.Details.Causes {
		if cause.Type == metav1.CauseTypeFieldManagerConflict {
			owner := ""
			if _, rest, ok := strings.Cut(cause.Message, `conflict with "`); ok {
				owner, _, _ = strings.Cut(rest, `"`)
			}
			return owner, true
		}
	}
	return "", false
}

// resolveOwner reads the UID of --owner-cluster-role: every envoy-config
// written is owned by it, so the garbage collector deletes them all when
// the release (and the ClusterRole with it) is uninstalled.
func (c *Controller) resolveOwner(ctx context.Context) error {
	name := c.cfg.OwnerClusterRole
	if name == "" {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, apiTimeout)
	defer cancel()
	role, err := c.cs.RbacV1().ClusterRoles().Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("read the owner of our envoy-configs, ClusterRole %q (--owner-cluster-role): %w; "+
			"it must exist and the controller may get it (the chart grants exactly that)", name, err)
	}
	c.owner = &metav1.OwnerReference{APIVersion: rbacv1.SchemeGroupVersion.String(), Kind: "ClusterRole", Name: role.Name, UID: role.UID}
	c.log.Info("controller: envoy-configs are owned by ClusterRole "+name+" (garbage-collected with it)", "uid", role.UID)
	return nil
}

// deleteOurs deletes exactly the ConfigMap the cache saw as ours.
func (c *Controller) deleteOurs(ctx context.Context, cm *corev1.ConfigMap) error {
	ctx, cancel := context.WithTimeout(ctx, apiTimeout)
	defer cancel()
	uid, rv := cm.UID, cm.ResourceVersion
	err := c.cs.CoreV1().ConfigMaps(cm.Namespace).Delete(ctx, cm.Name, metav1.DeleteOptions{
		Preconditions: &metav1.Preconditions{UID: &uid, ResourceVersion: &rv},
	})
	switch {
	case err == nil:
		c.metrics.writes.WithLabelValues(WriteDeleted).Inc()
		c.log.Info("controller: envoy-config deleted: the namespace no longer needs it", "namespace", cm.Namespace)
		return nil
	case apierrors.IsNotFound(err):
		return nil
	case apierrors.IsConflict(err):
		return fmt.Errorf("delete %s/%s: changed since seen: %w", cm.Namespace, cm.Name, err)
	}
	c.metrics.writes.WithLabelValues(WriteError).Inc()
	return fmt.Errorf("delete %s/%s: %w", cm.Namespace, cm.Name, err)
}

// related is cm as an Event's related object; a nil cm must be an untyped
// nil for the recorder.
func related(cm *corev1.ConfigMap) runtime.Object {
	if cm == nil {
		return nil
	}
	return cm
}

func foreignNote(ns, owner string) string {
	by := ""
	if owner != "" {
		by = " (its content is owned by " + owner + ")"
	}
	return fmt.Sprintf("ConfigMap %s was not made by sidecar-injector (no label %s=%s)%s: it is left untouched, "+
		"and injected pods in this namespace use it as their Envoy bootstrap. To let sidecar-injector manage it, "+
		"delete it: kubectl delete configmap %s -n %s", inject.ConfigMapName, nsview.ManagedByLabel, nsview.ManagedByValue, by, inject.ConfigMapName, ns)
}
