package envoy

import (
	"testing"

	"github.com/sidecar-injector/sidecar-injector/envoy/nodemeta"
)

// A pod whose app uses the admin port gets its admin interface moved by
// the overlay; merged like Envoy merges it, the bootstrap is valid and
// binds the moved port on 127.0.0.1. Without a move the overlay carries the
// node only.
func TestOverlayMovesAdmin(t *testing.T) {
	t.Parallel()
	md := nodemeta.Metadata{
		Version: nodemeta.Version, InboundPort: 10001, OutboundPort: 10002, StatsPort: 10090, AdminPort: 10003,
		AppPorts: []nodemeta.AppPort{{Port: DefaultAdminPort, Protocol: nodemeta.ProtocolTCP}}, PodIP: nodemeta.PodIPRef, ConfigHash: "0123456789abcdef", InjectorVersion: "v0.1.0",
	}
	env := map[string]string{nodemeta.EnvPodName: "p", nodemeta.EnvPodNamespace: "ns", nodemeta.EnvPodIP: "10.0.0.1"}
	y, err := RenderBootstrap(DefaultBootstrapConfig())
	if err != nil {
		t.Fatal(err)
	}
	moved, err := nodemeta.RenderOverlayMovedAdmin(md, DefaultAdminPort)
	if err != nil {
		t.Fatal(err)
	}
	merged := mergeLikeEnvoy(t, y, expand(moved, env))
	if err := ValidateDeep(merged); err != nil {
		t.Fatalf("merged bootstrap: %v", err)
	}
	sa := merged.GetAdmin().GetAddress().GetSocketAddress()
	if sa.GetAddress() != "127.0.0.1" || sa.GetPortValue() != 10003 {
		t.Errorf("admin %s:%d, want 127.0.0.1:10003", sa.GetAddress(), sa.GetPortValue())
	}

	md.AdminPort = DefaultAdminPort
	md.AppPorts = nil
	plain, err := nodemeta.RenderOverlayMovedAdmin(md, DefaultAdminPort)
	if err != nil {
		t.Fatal(err)
	}
	if same, _ := nodemeta.RenderOverlay(md); plain != same {
		t.Errorf("overlay without a move:\n%s\nwant the node-only overlay:\n%s", plain, same)
	}
}
