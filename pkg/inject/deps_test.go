package inject

import (
	"strings"
	"testing"

	"github.com/sidecar-injector/sidecar-injector/internal/need"
)

// The engine links no protobuf and no go-control-plane: the node-metadata
// contract it renders lives in envoy/nodemeta, apart from the Envoy protos,
// so the webhook that embeds the engine stays lean.
func TestEngineLinksNoProtos(t *testing.T) {
	t.Parallel()
	for _, pkg := range need.GoDeps(t, ".") {
		if strings.Contains(pkg, "go-control-plane") || strings.Contains(pkg, "protobuf") {
			t.Errorf("pkg/inject depends on %s; keep protos out of the engine (the node contract is envoy/nodemeta)", pkg)
		}
	}
}
