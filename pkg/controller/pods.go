package controller

import (
	"fmt"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sidecar-injector/sidecar-injector/pkg/inject"
)

// The metadata-only pod cache and the current/stale/missing counts.

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

// missingPodEvent records SidecarMissing on a new pod that the rules say
// should carry a sidecar and does not (created while the webhook was
// unreachable with failurePolicy Ignore, say). The webhook, which holds no
// write access, records no Events; this is the one skip a user must act on.
func (c *Controller) missingPodEvent(obj any) {
	p, ok := obj.(*metav1.PartialObjectMetadata)
	if !ok {
		return
	}
	d := c.desired.Load()
	nsObj, exists, err := c.namespaces.GetIndexer().GetByKey(p.Namespace)
	if d == nil || err != nil || !exists {
		return
	}
	ns := nsObj.(*corev1.Namespace)
	if ClassifyPod(FactsOf(p.Labels, p.Annotations), NamespaceExpectation(ns.Name, ns.Labels, &d.cfg), d.hash) != PodMissing {
		return
	}
	c.rec.podEvent(p.Namespace, p.Name, EventSidecarMissing, "Inject", fmt.Sprintf(
		"pod %s has no sidecar although namespace %s expects one (was the webhook unreachable with failurePolicy Ignore?); "+
			"recreate it to inject it, e.g. kubectl rollout restart of its workload", p.Name, p.Namespace))
}
