// Package kubeconfig finds the cluster a server talks to: the kubeconfig
// file it was given, else the in-cluster config of its pod.
package kubeconfig

import (
	"errors"
	"fmt"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// ErrNoClusterConfig: no kubeconfig given and not running in a pod.
var ErrNoClusterConfig = errors.New("no cluster config: run in a pod or pass --kubeconfig")

// Load returns a copy of the cluster config of path (a kubeconfig file)
// when path is set, else the in-cluster config; ErrNoClusterConfig when
// there is neither.
func Load(path string) (*rest.Config, error) {
	if path != "" {
		cfg, err := clientcmd.BuildConfigFromFlags("", path)
		if err != nil {
			return nil, fmt.Errorf("read --kubeconfig %q: %w", path, err)
		}
		return cfg, nil
	}
	cfg, err := rest.InClusterConfig()
	if errors.Is(err, rest.ErrNotInCluster) {
		return nil, ErrNoClusterConfig
	}
	if err != nil {
		return nil, fmt.Errorf("in-cluster config: %w", err)
	}
	return cfg, nil
}
