package main

import (
	"strings"
	"testing"

	"github.com/sidecar-injector/sidecar-injector/internal/need"
)

// The webhook binary links the webhook and nothing it does not use: not the
// controller, the xDS server, the Envoy protos, gRPC, the typed Kubernetes
// clientset (its scheme alone registers every API group at start) nor the
// CLI. Each of these cost the webhook process resident memory when it was
// a subcommand of the one binary.
func TestWebhookBinaryIsLean(t *testing.T) {
	t.Parallel()
	const module = "github.com/sidecar-injector/sidecar-injector/"
	forbidden := []string{
		"github.com/envoyproxy/go-control-plane",
		"google.golang.org/grpc",
		"k8s.io/client-go/kubernetes",
		"k8s.io/client-go/informers",
		"github.com/spf13/cobra",
		module + "pkg/controller",
		module + "pkg/xds",
		module + "envoy", // the bootstrap protos (envoy/nodemeta is proto-free)
	}
	pkgs := need.GoDeps(t, ".")
	for _, pkg := range pkgs {
		for _, f := range forbidden {
			if (pkg == f || strings.HasPrefix(pkg, f+"/")) && pkg != module+"envoy/nodemeta" {
				t.Errorf("sidecar-injector-webhook links %s (forbidden: %s)", pkg, f)
			}
		}
	}
	t.Logf("%d packages", len(pkgs))
}
