package controller

import (
	"fmt"
	"runtime"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sidecar-injector/sidecar-injector/pkg/inject"
)

// realisticPod is the metadata of a Deployment's injected pod as the
// apiserver sends it to a metadata-only watch.
func realisticPod(i int) *metav1.PartialObjectMetadata {
	return &metav1.PartialObjectMetadata{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{
			Name: fmt.Sprintf("web-5d8f9c7b6d-%05d", i), GenerateName: "web-5d8f9c7b6d-", Namespace: "shop",
			UID: "0b7c8a52-3f1e-4f0e-9a53-6d1c2b3a4f5e", ResourceVersion: "123456789",
			Labels: map[string]string{"app": "web", "pod-template-hash": "5d8f9c7b6d", "app.kubernetes.io/name": "web",
				"app.kubernetes.io/part-of": "shop", "app.kubernetes.io/version": "1.4.2"},
			Annotations: map[string]string{
				inject.StatusAnnotation: status("0123456789abcdef"),
				"prometheus.io/scrape":  "true", "prometheus.io/port": "10090", "prometheus.io/path": "/stats/prometheus",
				"kubectl.kubernetes.io/restartedAt": "2026-11-25T10:00:00Z",
			},
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "web-5d8f9c7b6d", UID: "8d7e6f5a-4b3c-2d1e-0f9a-8b7c6d5e4f3a", Controller: new(true), BlockOwnerDeletion: new(true)}},
			ManagedFields: []metav1.ManagedFieldsEntry{
				{Manager: "kube-controller-manager", Operation: metav1.ManagedFieldsOperationUpdate, APIVersion: "v1", FieldsType: "FieldsV1",
					FieldsV1: metav1.NewFieldsV1(strings.Repeat("x", 1500))},
				{Manager: "kubelet", Operation: metav1.ManagedFieldsOperationUpdate, APIVersion: "v1", FieldsType: "FieldsV1", Subresource: "status",
					FieldsV1: metav1.NewFieldsV1(strings.Repeat("x", 2500))},
			},
		},
	}
}

func heapAfter(keep func() any) (uint64, any) {
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	kept := keep()
	runtime.GC()
	runtime.ReadMemStats(&after)
	return after.HeapAlloc - min(after.HeapAlloc, before.HeapAlloc), kept
}

// TestPodCacheMemory reports what one cached pod costs after stripPod, and
// holds it well under a kilobyte: 100,000 pods stay around tens of MiB.
func TestPodCacheMemory(t *testing.T) {
	const n = 20000
	full, keptFull := heapAfter(func() any {
		pods := make([]*metav1.PartialObjectMetadata, n)
		for i := range pods {
			pods[i] = realisticPod(i)
		}
		return pods
	})
	stripped, keptStripped := heapAfter(func() any {
		pods := make([]any, n)
		for i := range pods {
			pods[i], _ = stripPod(realisticPod(i))
		}
		return pods
	})
	runtime.KeepAlive(keptFull)
	runtime.KeepAlive(keptStripped)
	perFull, perStripped := full/n, stripped/n
	t.Logf("heap per cached pod: %d bytes as received, %d bytes stripped (%.0f MiB for 100,000 pods)",
		perFull, perStripped, float64(perStripped)*100000/(1<<20))
	if perStripped > 1024 || perStripped*4 > perFull {
		t.Errorf("a stripped pod costs %d bytes (as received %d): want under 1 KiB and under a quarter", perStripped, perFull)
	}
}
