package controller

import (
	"fmt"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/rest"

	"github.com/sidecar-injector/sidecar-injector/internal/kubeconfig"
)

// ErrNoClusterConfig: no --kubeconfig and not running in a pod. The
// controller needs cluster access: run it in a pod or pass --kubeconfig.
var ErrNoClusterConfig = kubeconfig.ErrNoClusterConfig

// RESTConfig is the cluster config of the controller: the kubeconfig file
// when given, else the in-cluster config. Client rate limits are raised
// from client-go's 5 QPS so that a new config reaches thousands of
// namespaces in minutes, not hours.
func RESTConfig(path string) (*rest.Config, error) {
	cfg, err := kubeconfig.Load(path)
	if err != nil {
		return nil, err
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
