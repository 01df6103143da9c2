// Package controller is the cluster side of the injector, run inside
// `sidecar-injector webhook`:
//
//   - it keeps the envoy-config ConfigMap (the Envoy bootstrap, rendered by
//     package envoy) present and current in every namespace that needs it,
//     with server-side apply, and removes the ones it made when they are no
//     longer needed; a ConfigMap of that name it did not make is never
//     changed or deleted (an Event and an admission warning say so);
//   - it serves the admission path, from its caches and without API calls,
//     the state of a namespace's envoy-config and the Pod Security level the
//     namespace enforces (NamespaceState, Warnings);
//   - it records Events (events.k8s.io/v1), rate-limited, when a pod is
//     skipped for a reason the user may not expect (Recorder.SkipEvent) and
//     when a namespace's envoy-config cannot be written;
//   - it counts running pods as current, stale or missing their sidecar
//     (sidecar_injector_pods), watching pod metadata only.
//
// ClusterReport, used by `sidecar-injector explain --cluster`, lists the
// stale and missing pods per workload with the command that fixes each.
package controller

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	coreinformers "k8s.io/client-go/informers/core/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/metadata/metadatainformer"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/util/workqueue"

	"github.com/sidecar-injector/sidecar-injector/envoy"
	"github.com/sidecar-injector/sidecar-injector/pkg/inject"
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
	writes  *limiter

	namespaces cache.SharedIndexInformer
	configMaps cache.SharedIndexInformer
	pods       cache.SharedIndexInformer
	queue      workqueue.TypedRateLimitingInterface[string]

	desired   atomic.Pointer[desired]
	badConfig atomic.Pointer[inject.Injector] // last config that failed to render (logged once)
	podsDirty atomic.Bool
	synced    atomic.Bool

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
	if !cfg.Enabled {
		return nil, errors.New("controller.New: the controller is disabled (--controller=false)")
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
		writes:  newLimiter(cfg.WriteBurst, cfg.WriteEvery, maxLimiterKeys, time.Now),
		queue: workqueue.NewTypedRateLimitingQueue(workqueue.NewTypedMaxOfRateLimiter(
			workqueue.NewTypedItemExponentialFailureRateLimiter[string](200*time.Millisecond, 2*time.Minute),
		)),
		states: map[string]*nsEntry{},
	}
	c.namespaces = coreinformers.NewFilteredNamespaceInformer(cs, cfg.Resync, cache.Indexers{}, func(o *metav1.ListOptions) {
		o.LabelSelector = cfg.NamespaceSelector
	})
	c.configMaps = coreinformers.NewFilteredConfigMapInformer(cs, metav1.NamespaceAll, 0, cache.Indexers{}, func(o *metav1.ListOptions) {
		o.FieldSelector = fields.OneTermEqualSelector("metadata.name", inject.ConfigMapName).String()
	})
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

// Recorder is the controller's Event recorder, for the webhook's SkipEvent.
func (c *Controller) Recorder() *Recorder { return c.rec }

// HasSynced says whether the caches have synced; before that NamespaceState
// answers ConfigMapUnknown.
func (c *Controller) HasSynced() bool { return c.synced.Load() }

// Run starts the informers, waits for their caches, then reconciles
// namespaces until ctx is done. It returns nil on cancellation.
func (c *Controller) Run(ctx context.Context) error {
	if c.waitConfig(ctx) != nil {
		return nil // cancelled while waiting: a normal stop
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
	cur := c.desired.Load()
	if cur != nil && cur.injector == in {
		return false
	}
	if c.badConfig.Load() == in {
		return false
	}
	d, err := newDesired(in, c.base)
	if err != nil {
		c.badConfig.Store(in)
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
		podSecurity: PodSecurityBlocks(ns.Labels),
		wanted:      WantsEnvoyConfig(NamespaceExpectation(name, ns.Labels, &d.cfg), len(keys) > 0),
	}
	state := stateOf(cm)
	switch {
	case ns.DeletionTimestamp != nil:
		// Terminating: everything in it goes away; writes would be refused.
	case !e.wanted && state == ConfigMapOurs:
		if err = c.deleteOurs(ctx, cm); err == nil {
			state = ConfigMapMissing
		}
	case !e.wanted:
	case state == ConfigMapForeign:
		c.rec.namespaceEvent(name, related(cm), EventEnvoyConfigNotManaged, foreignNote(name, ""))
	case state == ConfigMapOurs && d.upToDate(cm):
	default:
		state, err = c.apply(ctx, name, cm, d)
	}
	e.envoyConfig = state
	e.warnings = NamespaceWarnings(name, state, e.podSecurity)
	c.setEntry(name, e)
	return err
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
		"delete it: kubectl delete configmap %s -n %s", inject.ConfigMapName, ManagedByLabel, ManagedByValue, by, inject.ConfigMapName, ns)
}

func (c *Controller) cachedConfigMap(ns string) *corev1.ConfigMap {
	obj, ok, err := c.configMaps.GetIndexer().GetByKey(ns + "/" + inject.ConfigMapName)
	if err != nil || !ok {
		return nil
	}
	return obj.(*corev1.ConfigMap)
}

// apply writes ns's envoy-config with server-side apply, never forcing:
// fields another manager owns make it fail instead of being overwritten.
func (c *Controller) apply(ctx context.Context, ns string, cm *corev1.ConfigMap, d *desired) (ConfigMapState, error) {
	state := stateOf(cm)
	if ok, wait := c.writes.take(ns); !ok {
		c.metrics.writes.WithLabelValues(WriteThrottled).Inc()
		c.log.Warn("controller: envoy-config written often lately; is another injector replica running a different config? postponed",
			"namespace", ns, "retry_in", wait.Round(time.Second))
		c.queue.AddAfter(ns, wait)
		return state, nil
	}
	rv := ""
	if cm != nil {
		rv = cm.ResourceVersion
	}
	ctx, cancel := context.WithTimeout(ctx, apiTimeout)
	defer cancel()
	got, err := c.cs.CoreV1().ConfigMaps(ns).Apply(ctx, d.applyConfig(ns, rv), metav1.ApplyOptions{FieldManager: c.cfg.FieldManager, Force: false})
	if err == nil {
		result := WriteApplied
		if cm != nil && got.ResourceVersion == cm.ResourceVersion {
			result = WriteUnchanged
		}
		c.metrics.writes.WithLabelValues(result).Inc()
		if result == WriteApplied {
			c.log.Info("controller: envoy-config applied", "namespace", ns, "config_hash", d.hash, "resource_version", got.ResourceVersion)
		}
		return ConfigMapOurs, nil
	}
	if owner, ok := fieldConflict(err); ok {
		c.metrics.writes.WithLabelValues(WriteConflict).Inc()
		c.rec.namespaceEvent(ns, related(cm), EventEnvoyConfigNotManaged, foreignNote(ns, owner))
		return ConfigMapForeign, nil
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

func (c *Controller) setEntry(ns string, e *nsEntry) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e == nil {
		delete(c.states, ns)
		return
	}
	c.states[ns] = e
}

// countNamespaces sets sidecar_injector_namespaces from the entries.
func (c *Controller) countNamespaces() {
	var ours, missing, foreign int
	c.mu.RLock()
	for _, e := range c.states {
		if !e.wanted {
			continue
		}
		switch e.envoyConfig {
		case ConfigMapOurs:
			ours++
		case ConfigMapMissing:
			missing++
		case ConfigMapForeign:
			foreign++
		}
	}
	c.mu.RUnlock()
	c.metrics.namespaces.WithLabelValues(string(ConfigMapOurs)).Set(float64(ours))
	c.metrics.namespaces.WithLabelValues(string(ConfigMapMissing)).Set(float64(missing))
	c.metrics.namespaces.WithLabelValues(string(ConfigMapForeign)).Set(float64(foreign))
}

// recountPods sets sidecar_injector_pods from the pod cache: O(pods).
func (c *Controller) recountPods() {
	c.podsDirty.Store(false)
	d := c.desired.Load()
	exp := map[string]Expectation{}
	for _, obj := range c.namespaces.GetStore().List() {
		ns := obj.(*corev1.Namespace)
		exp[ns.Name] = NamespaceExpectation(ns.Name, ns.Labels, &d.cfg)
	}
	var counts [3]int
	for _, obj := range c.pods.GetStore().List() {
		p, ok := obj.(*metav1.PartialObjectMetadata)
		if !ok {
			continue
		}
		e, ok := exp[p.Namespace]
		if !ok {
			continue // outside the namespace selector
		}
		switch ClassifyPod(FactsOf(p.Labels, p.Annotations), e, d.hash) {
		case PodCurrent:
			counts[0]++
		case PodStale:
			counts[1]++
		case PodMissing:
			counts[2]++
		}
	}
	for i, s := range PodStates() {
		c.metrics.pods.WithLabelValues(string(s)).Set(float64(counts[i]))
	}
}

func injected(obj any) bool {
	keys, _ := indexInjected(obj)
	return len(keys) > 0
}

// indexInjected indexes pods that carry a sidecar by namespace.
func indexInjected(obj any) ([]string, error) {
	p, ok := obj.(*metav1.PartialObjectMetadata)
	if !ok {
		return nil, nil
	}
	if _, ok := p.Annotations[hashAnnotation]; ok {
		return []string{p.Namespace}, nil
	}
	return nil, nil
}

// stripPod keeps of a pod's metadata only what the controller reads, so the
// cache of 100,000 pods stays small: name, namespace, uid, the
// sidecar.io/inject label and annotation, the mirror annotation, and the
// config hash of sidecar.io/status (not the status itself). Idempotent.
func stripPod(obj any) (any, error) {
	p, ok := obj.(*metav1.PartialObjectMetadata)
	if !ok {
		return obj, nil
	}
	f := FactsOf(p.Labels, p.Annotations)
	keep := metav1.ObjectMeta{Name: p.Name, Namespace: p.Namespace, UID: p.UID, ResourceVersion: p.ResourceVersion}
	if f.SwitchIsLabel {
		keep.Labels = map[string]string{inject.InjectKey: f.Switch}
	}
	if (!f.SwitchIsLabel && f.Switch != "") || f.Injected || f.Mirror {
		keep.Annotations = make(map[string]string, 3)
	}
	if !f.SwitchIsLabel && f.Switch != "" {
		keep.Annotations[inject.InjectKey] = f.Switch
	}
	if f.Injected {
		keep.Annotations[hashAnnotation] = f.ConfigHash
	}
	if f.Mirror {
		keep.Annotations[inject.MirrorPodAnnotation] = ""
	}
	p.ObjectMeta = keep
	return p, nil
}

// stripManagedFields drops managedFields from cached objects: never read,
// often the biggest part of the metadata.
func stripManagedFields(obj any) (any, error) {
	if m, err := metaOf(obj); err == nil {
		m.SetManagedFields(nil)
	}
	return obj, nil
}

func metaOf(obj any) (metav1.Object, error) {
	m, ok := obj.(metav1.Object)
	if !ok {
		return nil, fmt.Errorf("%T has no object metadata", obj)
	}
	return m, nil
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

// ErrNoClusterConfig: no --kubeconfig and not running in a pod. The
// controller needs cluster access: run in a pod, pass --kubeconfig, or turn
// it off with --controller=false.
var ErrNoClusterConfig = errors.New("no cluster config: run in a pod, pass --kubeconfig, or turn the controller off with --controller=false")

// RESTConfig is the cluster config of the controller: the kubeconfig file
// when given, else the in-cluster config. Client rate limits are raised
// from client-go's 5 QPS so that a new config reaches thousands of
// namespaces in minutes, not hours.
func RESTConfig(kubeconfig string) (*rest.Config, error) {
	var cfg *rest.Config
	var err error
	if kubeconfig != "" {
		if cfg, err = clientcmd.BuildConfigFromFlags("", kubeconfig); err != nil {
			return nil, fmt.Errorf("read --kubeconfig %q: %w", kubeconfig, err)
		}
	} else if cfg, err = rest.InClusterConfig(); err != nil {
		if errors.Is(err, rest.ErrNotInCluster) {
			return nil, ErrNoClusterConfig
		}
		return nil, fmt.Errorf("in-cluster config: %w", err)
	}
	cfg = rest.CopyConfig(cfg)
	cfg.QPS, cfg.Burst = 50, 100
	cfg.UserAgent = "sidecar-injector-controller"
	return cfg, nil
}

// NewClients builds the typed and the metadata-only clients.
func NewClients(cfg *rest.Config) (kubernetes.Interface, metadata.Interface, error) {
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, nil, fmt.Errorf("kubernetes client for %s: %w", cfg.Host, err)
	}
	md, err := metadata.NewForConfig(cfg)
	if err != nil {
		return nil, nil, fmt.Errorf("metadata client for %s: %w", cfg.Host, err)
	}
	return cs, md, nil
}
