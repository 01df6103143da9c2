package nsview

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/tools/cache"

	"github.com/sidecar-injector/sidecar-injector/pkg/inject"
)

var (
	namespacesResource = schema.GroupVersionResource{Version: "v1", Resource: "namespaces"}
	configMapsResource = schema.GroupVersionResource{Version: "v1", Resource: "configmaps"}
)

// metadataInformer lists and watches the object metadata (names, labels,
// no data) of resource, with opts applied to every list and watch. It is
// client-go's metadata informer without its package, which links every
// typed informer.
func metadataInformer(md metadata.Interface, resource schema.GroupVersionResource, opts func(*metav1.ListOptions)) cache.SharedIndexInformer {
	c := md.Resource(resource)
	lw := cache.ToListWatcherWithWatchListSemantics(&cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			opts(&o)
			return c.List(ctx, o)
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			opts(&o)
			return c.Watch(ctx, o)
		},
	}, md) // a fake client does not stream lists
	return cache.NewSharedIndexInformer(lw, &metav1.PartialObjectMetadata{}, 0, cache.Indexers{})
}

// View is the webhook's read-only view of the cluster: the labels of
// namespaces and of envoy-config ConfigMaps, from two metadata informers
// (list and watch only; no ConfigMap data is held). It answers the
// admission warnings (envoy-config missing or not ours, a Pod Security
// level that rejects iptables-init) and a namespace's sidecar-injection
// label from memory, without an API call. Before its caches sync it knows
// nothing and says nothing.
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

// NewView builds the view on md; Run starts it.
func NewView(md metadata.Interface, log *slog.Logger) (*View, error) {
	v := &View{log: log, states: map[string]*viewEntry{},
		namespaces: metadataInformer(md, namespacesResource, func(*metav1.ListOptions) {}),
		configMaps: metadataInformer(md, configMapsResource, func(o *metav1.ListOptions) {
			o.FieldSelector = fields.OneTermEqualSelector("metadata.name", inject.ConfigMapName).String()
		}),
	}
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

// stripManagedFields drops what the view never reads before it is cached.
func stripManagedFields(obj any) (any, error) {
	if m, ok := obj.(metav1.Object); ok {
		m.SetManagedFields(nil)
	}
	return obj, nil
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
	m, ok := obj.(metav1.Object)
	if !ok {
		v.log.Error("the namespace view got an object without metadata", "type", fmt.Sprintf("%T", obj))
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
	ns := nsObj.(metav1.Object)
	cm, cmExists, _ := v.configMaps.GetIndexer().GetByKey(name + "/" + inject.ConfigMapName)
	var cmLabels map[string]string
	if cmExists {
		cmLabels = cm.(metav1.Object).GetLabels()
	}
	e := &viewEntry{warnings: NamespaceWarnings(name, StateOf(cmExists, cmLabels), PodSecurityBlocks(ns.GetLabels()))}
	e.label, e.labelled = ns.GetLabels()[inject.NamespaceLabel]
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
