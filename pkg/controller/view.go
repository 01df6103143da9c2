package controller

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	coreinformers "k8s.io/client-go/informers/core/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	"github.com/sidecar-injector/sidecar-injector/pkg/inject"
)

// newNamespaceInformer watches the namespaces matching selector.
func newNamespaceInformer(cs kubernetes.Interface, selector string, resync time.Duration) cache.SharedIndexInformer {
	return coreinformers.NewFilteredNamespaceInformer(cs, resync, cache.Indexers{}, func(o *metav1.ListOptions) {
		o.LabelSelector = selector
	})
}

// newEnvoyConfigInformer watches the envoy-config ConfigMaps of every
// namespace, and nothing else (a field selector on the name).
func newEnvoyConfigInformer(cs kubernetes.Interface) cache.SharedIndexInformer {
	return coreinformers.NewFilteredConfigMapInformer(cs, metav1.NamespaceAll, 0, cache.Indexers{}, func(o *metav1.ListOptions) {
		o.FieldSelector = fields.OneTermEqualSelector("metadata.name", inject.ConfigMapName).String()
	})
}

// View is the webhook's read-only view of the cluster: namespace labels
// and envoy-config ConfigMaps from two informers (list and watch only). It
// answers the admission warnings (envoy-config missing or not ours, a Pod
// Security level that rejects iptables-init) and a namespace's
// sidecar-injection label from memory, without an API call. Before its
// caches sync it knows nothing and says nothing.
type View struct {
	log        *slog.Logger
	namespaces cache.SharedIndexInformer
	configMaps cache.SharedIndexInformer
	synced     atomic.Bool

	mu     sync.RWMutex
	states map[string]*viewEntry
}

// viewEntry is replaced, never changed: readers may keep its slices.
type viewEntry struct {
	warnings []string
	label    string
	labelled bool
}

// NewView builds the view on cs; Run starts it.
func NewView(cs kubernetes.Interface, log *slog.Logger) (*View, error) {
	v := &View{log: log, states: map[string]*viewEntry{},
		namespaces: newNamespaceInformer(cs, "", 0), configMaps: newEnvoyConfigInformer(cs)}
	for name, inf := range map[string]cache.SharedIndexInformer{"namespaces": v.namespaces, "configmaps": v.configMaps} {
		if err := inf.SetTransform(stripManagedFields); err != nil {
			return nil, err
		}
		if err := inf.SetWatchErrorHandler(func(_ *cache.Reflector, err error) {
			log.Error("watch failed; retrying with backoff (check the webhook's RBAC: get, list, watch on namespaces and configmaps)", "resource", name, "error", err)
		}); err != nil {
			return nil, err
		}
		if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
			AddFunc:    v.update,
			UpdateFunc: func(_, cur any) { v.update(cur) },
			DeleteFunc: v.update,
		}); err != nil {
			return nil, err
		}
	}
	return v, nil
}

// Run runs the informers until ctx is done.
func (v *View) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	for _, inf := range []cache.SharedIndexInformer{v.namespaces, v.configMaps} {
		wg.Go(func() { inf.RunWithContext(ctx) })
	}
	if cache.WaitForCacheSync(ctx.Done(), v.namespaces.HasSynced, v.configMaps.HasSynced) {
		v.synced.Store(true)
		v.log.Info("namespace view synced", "namespaces", len(v.namespaces.GetStore().ListKeys()))
	}
	wg.Wait()
	return nil
}

// HasSynced says whether both caches have synced.
func (v *View) HasSynced() bool { return v.synced.Load() }

// update recomputes the entry of the namespace obj belongs to.
func (v *View) update(obj any) {
	if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = t.Obj
	}
	m, err := metaOf(obj)
	if err != nil {
		return
	}
	name := m.GetNamespace()
	if name == "" {
		name = m.GetName()
	}
	nsObj, exists, _ := v.namespaces.GetIndexer().GetByKey(name)
	if !exists {
		v.mu.Lock()
		delete(v.states, name)
		v.mu.Unlock()
		return
	}
	ns := nsObj.(*corev1.Namespace)
	var cm *corev1.ConfigMap
	if o, ok, _ := v.configMaps.GetIndexer().GetByKey(name + "/" + inject.ConfigMapName); ok {
		cm = o.(*corev1.ConfigMap)
	}
	e := &viewEntry{warnings: NamespaceWarnings(name, stateOf(cm), PodSecurityBlocks(ns.Labels))}
	e.label, e.labelled = ns.Labels[inject.NamespaceLabel]
	v.mu.Lock()
	v.states[name] = e
	v.mu.Unlock()
}

// Warnings returns the admission warnings for a pod injected into ns. The
// slice is shared: read only. No allocation.
func (v *View) Warnings(ns string) []string {
	v.mu.RLock()
	e, ok := v.states[ns]
	v.mu.RUnlock()
	if !ok || !v.synced.Load() {
		return nil
	}
	return e.warnings
}

// NamespaceLabel returns ns's sidecar-injection label as last seen.
func (v *View) NamespaceLabel(ns string) (value string, ok bool) {
	v.mu.RLock()
	defer v.mu.RUnlock()
	e, found := v.states[ns]
	if !found || !e.labelled {
		return "", false
	}
	return e.label, true
}
