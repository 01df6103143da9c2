package serving

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/sidecar-injector/sidecar-injector/internal/need"
)

// The foundation links the standard library, client_golang (with what it
// links itself, protobuf's runtime among it), fsnotify and golang.org/x
// only: the webhook's lean binary stands on it, so no Kubernetes client,
// no go-control-plane, no gRPC, no generated protos may creep in here.
func TestFoundationStaysLean(t *testing.T) {
	t.Parallel()
	goTool := need.Tools(t, "install Go", "go")[0]
	list := func(pkgs ...string) []string {
		t.Helper()
		args := append([]string{"list", "-deps", "-f", "{{if not .Standard}}{{.ImportPath}}{{end}}"}, pkgs...)
		out, err := exec.Command(goTool, args...).CombinedOutput()
		if err != nil {
			t.Fatalf("go list -deps %s: %v\n%s", strings.Join(pkgs, " "), err, out)
		}
		return strings.Fields(string(out))
	}
	allowed := map[string]bool{}
	for _, p := range list("github.com/prometheus/client_golang/prometheus", "github.com/prometheus/client_golang/prometheus/promhttp") {
		allowed[p] = true
	}
	deps := list(".")
	if len(deps) < 2 {
		t.Fatalf("go list -deps . listed %q: the check would pass on nothing", deps)
	}
	for _, p := range deps {
		switch {
		case strings.HasPrefix(p, "k8s.io/"), strings.HasPrefix(p, "sigs.k8s.io/"),
			strings.Contains(p, "go-control-plane"), strings.HasPrefix(p, "google.golang.org/grpc"):
			t.Errorf("internal/serving depends on %s; keep Kubernetes, go-control-plane and gRPC out of the servers' foundation (the webhook binary links it)", p)
		case allowed[p], p == "github.com/sidecar-injector/sidecar-injector/internal/serving",
			strings.HasPrefix(p, "github.com/fsnotify/fsnotify"), strings.HasPrefix(p, "golang.org/x/"):
		default:
			t.Errorf("internal/serving depends on %s: only the standard library, client_golang, fsnotify and golang.org/x belong here", p)
		}
	}
}
