package inject

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/sidecar-injector/sidecar-injector/internal/need"
)

// The engine links no protobuf and no go-control-plane: the node-metadata
// contract it renders lives in envoy/nodemeta, apart from the Envoy protos,
// so the webhook that embeds the engine stays lean.
func TestEngineLinksNoProtos(t *testing.T) {
	t.Parallel()
	goTool := need.Tools(t, "install Go", "go")[0]
	out, err := exec.Command(goTool, "list", "-deps", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps: %v\n%s", err, out)
	}
	for _, pkg := range strings.Fields(string(out)) {
		if strings.Contains(pkg, "go-control-plane") || strings.Contains(pkg, "protobuf") {
			t.Errorf("pkg/inject depends on %s; keep protos out of the engine (the node contract is envoy/nodemeta)", pkg)
		}
	}
}
