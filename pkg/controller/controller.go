// Package controller is the cluster side of the injector, run as
// `sidecar-injector controller` (RunApp), the only process of the product
// with write access to the cluster. Its replicas elect a leader with a
// coordination.k8s.io Lease (RunElected); only the leader reconciles:
//
//   - it keeps the envoy-config ConfigMap (the Envoy bootstrap, rendered by
//     package envoy) present and current in every namespace that needs it,
//     with server-side apply, each owned by a cluster-scoped object of the
//     release (--owner-cluster-role) so that the garbage collector removes
//     them on helm uninstall, and removes the ones it made when they are no
//     longer needed; a ConfigMap of that name it did not make is never
//     changed or deleted (an Event and an admission warning say so);
//   - it records Events (events.k8s.io/v1), rate-limited: a namespace whose
//     sidecar-injection label has an invalid value, an envoy-config it may
//     not manage or cannot write, a new pod that should have a sidecar and
//     has none (the webhook holds no write access, so it records nothing);
//   - it counts running pods as current, stale or missing their sidecar
//     (sidecar_injector_pods), watching pod metadata only, and namespaces
//     by envoy-config state and invalid label; standbys export zeros, so a
//     sum over replicas is right.
//
// View is the webhook's read-only part: from namespace and envoy-config
// informers it answers the admission warnings without an API call.
// ClusterReport, used by `sidecar-injector explain --cluster`, lists the
// stale and missing pods per workload with the command that fixes each.
package controller

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/metadata/metadatainformer"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"

	"github.com/sidecar-injector/sidecar-injector/envoy"
	"github.com/sidecar-injector/sidecar-injector/pkg/inject"
	"github.com/sidecar-injector/sidecar-injector/pkg/nsview"
)

// podsResource is the pods resource, watched through the metadata API.
var podsResource = schema.GroupVersionResource{Version: "v1", Resource: "pods"}

// injectedIndex indexes cached pods that carry a sidecar by namespace.
const injectedIndex = "injected"

// apiTimeout bounds one write.
const apiTimeout = 30 * time.Second

// Controller distributes envoy-config, serves the admission checks, records
// Events and counts pods. Build it with New, run it with Run.
type Controller struct {
	cfg     Config
	cs      kubernetes.Interface
	src     ConfigSource
	base    envoy.BootstrapConfig
	metrics *Metrics
	log     *slog.Logger
	rec     *Recorder

	namespaces cache.SharedIndexInformer
	configMaps cache.SharedIndexInformer
	pods       cache.SharedIndexInformer
	queue      workqueue.TypedRateLimitingInterface[string]

	desired   atomic.Pointer[desired]
	badConfig atomic.Pointer[desiredKey] // last config and CA that failed to render (logged once)
	// xdsCA reads --xds-ca-file when it changes; nil without the flag.
	xdsCA     *caFile
	podsDirty atomic.Bool
	synced    atomic.Bool
	leading   atomic.Bool
	// owner is the ownerReference of every envoy-config we write (nil:
	// none), resolved from cfg.OwnerClusterRole when Run starts.
	owner *metav1.OwnerReference

	mu     sync.RWMutex
	states map[string]*nsEntry
}

// New builds a controller from validated flags, the clients, the injector
// config source and the base bootstrap (timeouts, TLS; the xDS address and
// ports come from the injector config). Its metrics go to reg.
func New(cfg Config, cs kubernetes.Interface, md metadata.Interface, src ConfigSource, base envoy.BootstrapConfig, reg prometheus.Registerer, log *slog.Logger) (*Controller, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cs == nil || md == nil || src == nil || reg == nil || log == nil {
		return nil, errors.New("controller.New: clientset, metadata client, config source, registerer and logger are required")
	}
	m := NewMetrics(reg)
	c := &Controller{
		cfg:     cfg,
		cs:      cs,
		src:     src,
		base:    base,
		metrics: m,
		log:     log,
		rec:     NewRecorder(cs, cfg.EventBurst, cfg.EventEvery, m, log),
		queue: workqueue.NewTypedRateLimitingQueue(workqueue.NewTypedMaxOfRateLimiter(
			workqueue.NewTypedItemExponentialFailureRateLimiter[string](200*time.Millisecond, 2*time.Minute),
		)),
		states: map[string]*nsEntry{},
	}
	if cfg.XDSCAFile != "" {
		c.xdsCA = &caFile{path: cfg.XDSCAFile}
	}
	c.namespaces = newNamespaceInformer(cs, cfg.NamespaceSelector, cfg.Resync)
	c.configMaps = newEnvoyConfigInformer(cs)
	c.pods = metadatainformer.NewFilteredMetadataInformer(md, podsResource, metav1.NamespaceAll, 0,
		cache.Indexers{injectedIndex: indexInjected}, func(o *metav1.ListOptions) {
			o.FieldSelector = cfg.PodFieldSelector
		}).Informer()
	for _, s := range []struct {
		inf       cache.SharedIndexInformer
		name      string
		transform cache.TransformFunc
	}{{c.namespaces, "namespaces", stripManagedFields}, {c.configMaps, "configmaps", stripManagedFields}, {c.pods, "pods", stripPod}} {
		if err := s.inf.SetTransform(s.transform); err != nil {
			return nil, fmt.Errorf("%s informer: %w", s.name, err)
		}
		name := s.name
		if err := s.inf.SetWatchErrorHandler(func(_ *cache.Reflector, err error) {
			c.log.Error("watch failed; retrying with backoff (check the injector's RBAC and the apiserver)", "resource", name, "error", err)
		}); err != nil {
			return nil, fmt.Errorf("%s informer: %w", name, err)
		}
	}
	if _, err := c.namespaces.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: func(obj any) { c.enqueue(obj); c.podsDirty.Store(true) },
		UpdateFunc: func(old, cur any) {
			c.enqueue(cur)
			if o, n := old.(*corev1.Namespace), cur.(*corev1.Namespace); !mapsEqual(o.Labels, n.Labels) {
				c.podsDirty.Store(true)
			}
		},
		DeleteFunc: func(obj any) { c.enqueue(obj); c.podsDirty.Store(true) },
	}); err != nil {
		return nil, err
	}
	if _, err := c.configMaps.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    c.enqueue,
		UpdateFunc: func(_, cur any) { c.enqueue(cur) },
		DeleteFunc: c.enqueue,
	}); err != nil {
		return nil, err
	}
	if _, err := c.pods.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: func(obj any) {
			c.podsDirty.Store(true)
			if injected(obj) {
				c.enqueue(obj)
			}
			if c.synced.Load() { // not the initial list: a restart would repeat them all
				c.missingPodEvent(obj)
			}
		},
		UpdateFunc: func(_, _ any) { c.podsDirty.Store(true) },
		DeleteFunc: func(obj any) {
			c.podsDirty.Store(true)
			if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				obj = t.Obj
			}
			if injected(obj) {
				c.enqueue(obj)
			}
		},
	}); err != nil {
		return nil, err
	}
	return c, nil
}

// Leading says whether this replica holds the Lease and reconciles.
func (c *Controller) Leading() bool { return c.leading.Load() }

func (c *Controller) setLeading(on bool) {
	c.leading.Store(on)
	c.metrics.leader.Set(map[bool]float64{false: 0, true: 1}[on])
}

// HasSynced says whether the caches have synced; before that NamespaceState
// answers nsview.ConfigMapUnknown.
func (c *Controller) HasSynced() bool { return c.synced.Load() }

// Run starts the informers, waits for their caches, then reconciles
// namespaces until ctx is done. It returns nil on cancellation.
func (c *Controller) Run(ctx context.Context) error {
	if c.waitConfig(ctx) != nil {
		return nil // cancelled while waiting: a normal stop
	}
	if err := c.resolveOwner(ctx); err != nil {
		return err
	}
	if err := c.rec.Start(ctx); err != nil {
		return fmt.Errorf("start the event recorder: %w", err)
	}
	var wg sync.WaitGroup
	for _, inf := range []cache.SharedIndexInformer{c.namespaces, c.configMaps, c.pods} {
		wg.Go(func() { inf.RunWithContext(ctx) })
	}
	defer wg.Wait()
	defer c.queue.ShutDown()

	start := time.Now()
	c.log.Info("controller: waiting for the namespace, ConfigMap and pod caches")
	if !cache.WaitForCacheSync(ctx.Done(), c.namespaces.HasSynced, c.configMaps.HasSynced, c.pods.HasSynced) {
		return nil // cancelled
	}
	c.synced.Store(true)
	c.metrics.synced.Set(1)
	c.log.Info("controller: caches synced", "took", time.Since(start).Round(time.Millisecond),
		"namespaces", len(c.namespaces.GetStore().ListKeys()), "envoy_configs", len(c.configMaps.GetStore().ListKeys()),
		"pods", len(c.pods.GetStore().ListKeys()))

	for range c.cfg.Workers {
		wg.Go(func() {
			for c.processNext(ctx) {
			}
		})
	}
	c.recountPods()
	tick := time.NewTicker(min(c.cfg.ConfigPoll, c.cfg.PodRecount))
	defer tick.Stop()
	lastRecount := time.Now()
	for {
		select {
		case <-ctx.Done():
			return nil
		case now := <-tick.C:
			if c.refreshConfig() {
				c.enqueueAll()
				c.podsDirty.Store(true)
			}
			if now.Sub(lastRecount) >= c.cfg.PodRecount && c.podsDirty.Load() {
				c.recountPods()
				lastRecount = now
			}
			c.countNamespaces()
		}
	}
}

// waitConfig waits for the config source's first config.
func (c *Controller) waitConfig(ctx context.Context) error {
	for i := 0; ; i++ {
		if c.refreshConfig() || c.desired.Load() != nil {
			return nil
		}
		if i == 10 {
			c.log.Warn("controller: no injector config loaded yet; envoy-config distribution waits for one")
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(c.cfg.ConfigPoll):
		}
	}
}

// refreshConfig takes a new config from the source; it says whether the
// desired state changed.
func (c *Controller) refreshConfig() bool {
	in := c.src.Injector()
	if in == nil {
		return false
	}
	fileCA := ""
	if c.xdsCA != nil {
		ca, err := c.xdsCA.read()
		if err != nil {
			c.log.Error("controller: xDS CA file not read; keeping the CA in use", "error", err)
		}
		fileCA = ca
	}
	cur := c.desired.Load()
	if cur != nil && cur.injector == in && cur.fileCA == fileCA {
		return false
	}
	key := desiredKey{in, fileCA}
	if b := c.badConfig.Load(); b != nil && *b == key {
		return false
	}
	d, err := newDesired(in, c.base, fileCA)
	if err != nil {
		c.badConfig.Store(&key)
		c.log.Error("controller: keeping the previous envoy-config content", "error", err)
		return false
	}
	c.desired.Store(d)
	prev := ""
	if cur != nil {
		prev = cur.hash
	}
	c.log.Info("controller: injector config in use", "config_hash", d.hash, "previous_hash", prev,
		"xds_address", d.cfg.XDS.Address, "xds_port", d.cfg.XDS.Port)
	return true
}

func (c *Controller) enqueue(obj any) {
	if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = t.Obj
	}
	m, err := metaOf(obj)
	if err != nil {
		return
	}
	ns := m.GetNamespace()
	if ns == "" { // a Namespace
		ns = m.GetName()
	}
	c.queue.Add(ns)
}

func (c *Controller) enqueueAll() {
	for _, k := range c.namespaces.GetStore().ListKeys() {
		c.queue.Add(k)
	}
}

func (c *Controller) processNext(ctx context.Context) bool {
	ns, quit := c.queue.Get()
	if quit {
		return false
	}
	defer c.queue.Done(ns)
	if err := c.sync(ctx, ns); err != nil {
		if ctx.Err() != nil {
			return false
		}
		c.log.Debug("controller: namespace requeued", "namespace", ns, "error", err)
		c.queue.AddRateLimited(ns)
		return true
	}
	c.queue.Forget(ns)
	return true
}

// sync brings one namespace's envoy-config where it should be and records
// what the admission path reads about the namespace.
func (c *Controller) sync(ctx context.Context, name string) error {
	// The source's newest config first: another replica that already took
	// it may be what changed this namespace's ConfigMap, and writing the
	// content of the config we had would undo its write (and it ours).
	if c.refreshConfig() {
		c.enqueueAll()
		c.podsDirty.Store(true)
	}
	d := c.desired.Load()
	obj, exists, err := c.namespaces.GetIndexer().GetByKey(name)
	if err != nil {
		return err
	}
	if !exists {
		c.setEntry(name, nil)
		return nil
	}
	ns := obj.(*corev1.Namespace)
	cm := c.cachedConfigMap(name)
	keys, _ := c.pods.GetIndexer().IndexKeys(injectedIndex, name)
	e := &nsEntry{
		podSecurity: nsview.PodSecurityBlocks(ns.Labels),
		wanted:      WantsEnvoyConfig(NamespaceExpectation(name, ns.Labels, &d.cfg), len(keys) > 0),
	}
	if v, ok := ns.Labels[inject.NamespaceLabel]; ok && !ValidNamespaceLabel(v) {
		e.labelInvalid, e.labelValue = true, v
		if prev := c.entry(name); prev == nil || !prev.labelInvalid || prev.labelValue != v {
			c.rec.namespaceEvent(name, nil, EventNamespaceLabelInvalid, InvalidLabelNote(name, v))
		}
	}
	state := stateOf(cm)
	switch {
	case ns.DeletionTimestamp != nil:
		// Terminating: everything in it goes away; writes would be refused.
	case !e.wanted && state == nsview.ConfigMapOurs:
		if err = c.deleteOurs(ctx, cm); err == nil {
			state = nsview.ConfigMapMissing
		}
	case !e.wanted:
	case state == nsview.ConfigMapForeign:
		c.rec.namespaceEvent(name, related(cm), EventEnvoyConfigNotManaged, foreignNote(name, ""))
	case state == nsview.ConfigMapOurs && d.upToDate(cm, c.owner):
	default:
		state, err = c.apply(ctx, name, cm, d)
	}
	e.envoyConfig = state
	e.warnings = nsview.NamespaceWarnings(name, state, e.podSecurity)
	c.setEntry(name, e)
	return err
}

func (c *Controller) cachedConfigMap(ns string) *corev1.ConfigMap {
	obj, ok, err := c.configMaps.GetIndexer().GetByKey(ns + "/" + inject.ConfigMapName)
	if err != nil || !ok {
		return nil
	}
	return obj.(*corev1.ConfigMap)
}

func (c *Controller) entry(ns string) *nsEntry {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.states[ns]
}

func (c *Controller) setEntry(ns string, e *nsEntry) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e == nil {
		delete(c.states, ns)
		return
	}
	c.states[ns] = e
}

// countNamespaces sets sidecar_injector_namespaces and
// sidecar_injector_namespaces_label_invalid from the entries.
func (c *Controller) countNamespaces() {
	var ours, missing, foreign, invalid int
	c.mu.RLock()
	for _, e := range c.states {
		if e.labelInvalid {
			invalid++
		}
		if !e.wanted {
			continue
		}
		switch e.envoyConfig {
		case nsview.ConfigMapOurs:
			ours++
		case nsview.ConfigMapMissing:
			missing++
		case nsview.ConfigMapForeign:
			foreign++
		}
	}
	c.mu.RUnlock()
	c.metrics.namespaces.WithLabelValues(string(nsview.ConfigMapOurs)).Set(float64(ours))
	c.metrics.namespaces.WithLabelValues(string(nsview.ConfigMapMissing)).Set(float64(missing))
	c.metrics.namespaces.WithLabelValues(string(nsview.ConfigMapForeign)).Set(float64(foreign))
	c.metrics.labelInvalid.Set(float64(invalid))
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}
