package controller

import (
	"time"

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
