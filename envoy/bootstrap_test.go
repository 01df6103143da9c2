package envoy

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/proto"

	"github.com/sidecar-injector/sidecar-injector/envoy/nodemeta"
	"github.com/sidecar-injector/sidecar-injector/internal/golden"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

func testBootstrapConfigs() map[string]BootstrapConfig {
	tlsIP := DefaultBootstrapConfig()
	tlsIP.XDSAddress = "10.96.0.18"
	tlsIP.XDSPort = 18443
	tlsIP.AdminPort = 19901
	tlsIP.XDSConnectTimeout = 2 * time.Second
	tlsIP.XDSKeepaliveInterval = 20 * time.Second
	tlsIP.XDSKeepaliveTimeout = 5 * time.Second
	tlsIP.XDSTLS = &XDSTLS{CAFile: "/etc/envoy-xds-ca/ca.crt", ServerName: "sidecar-injector-xds.sidecar-injector.svc"}
	return map[string]BootstrapConfig{
		"bootstrap-default": DefaultBootstrapConfig(),
		"bootstrap-tls-ip":  tlsIP,
	}
}

func TestRenderBootstrapGolden(t *testing.T) {
	var outputs []string
	for name := range testBootstrapConfigs() {
		outputs = append(outputs, filepath.Join("testdata", name+".yaml"))
	}
	golden.Orphans(t, *update, filepath.Join("testdata", "bootstrap-*.yaml"), outputs)
	for name, cfg := range testBootstrapConfigs() {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			got, err := RenderBootstrap(cfg)
			if err != nil {
				t.Fatal(err)
			}
			again, err := RenderBootstrap(cfg)
			if err != nil || string(again) != string(got) {
				t.Fatalf("second render differs (err %v)", err)
			}
			golden := filepath.Join("testdata", name+".yaml")
			if *update {
				if err := os.WriteFile(golden, got, 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test ./envoy -update)", err)
			}
			if diff := cmp.Diff(string(want), string(got)); diff != "" {
				t.Errorf("bootstrap differs from %s (-want +got; go test ./envoy -update rewrites it):\n%s", golden, diff)
			}
		})
	}
}

// expand does what the kubelet does with $(VAR) references in args.
func expand(s string, env map[string]string) string {
	for k, v := range env {
		s = strings.ReplaceAll(s, "$("+k+")", v)
	}
	return s
}

// mergeLikeEnvoy loads the bootstrap file and the --config-yaml overlay the
// way Envoy does: both strictly into Bootstrap, then the overlay merged into
// the file (proto merge: scalars replaced, messages merged, lists appended).
func mergeLikeEnvoy(t *testing.T, bootstrapYAML []byte, overlay string) *bootstrapv3.Bootstrap {
	t.Helper()
	base, err := ParseBootstrap(bootstrapYAML)
	if err != nil {
		t.Fatalf("bootstrap: %v", err)
	}
	over, err := ParseBootstrap([]byte(overlay))
	if err != nil {
		t.Fatalf("overlay: %v", err)
	}
	proto.Merge(base, over)
	return base
}

func TestBootstrapWithOverlay(t *testing.T) {
	md := nodemeta.Metadata{
		Version: nodemeta.Version, InboundPort: 10003, OutboundPort: 10002, StatsPort: 10090, AdminPort: DefaultAdminPort,
		AppPorts:            []nodemeta.AppPort{{Port: 8080, Name: "http", Protocol: nodemeta.ProtocolTCP}, {Port: 10001, Name: "legacy"}, {Port: 53, Protocol: nodemeta.ProtocolUDP}},
		ExcludeInboundPorts: []uint32{9000},
		PodIP:               nodemeta.PodIPRef,
		IPv6:                nodemeta.IPv6Auto,
		ConfigHash:          "0123456789abcdef",
		InjectorVersion:     "v0.1.0",
	}
	overlay, err := nodemeta.RenderOverlay(md)
	if err != nil {
		t.Fatal(err)
	}
	env := map[string]string{nodemeta.EnvPodName: "web-7d9f-abcde", nodemeta.EnvPodNamespace: "shop", nodemeta.EnvPodIP: "10.244.1.17"}
	for name, cfg := range testBootstrapConfigs() {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			y, err := RenderBootstrap(cfg)
			if err != nil {
				t.Fatal(err)
			}
			merged := mergeLikeEnvoy(t, y, expand(overlay, env))
			if err := ValidateDeep(merged); err != nil {
				t.Fatalf("merged bootstrap: %v", err)
			}
			if got := merged.GetNode().GetId(); got != "web-7d9f-abcde.shop" {
				t.Errorf("node id %q", got)
			}
			if got := merged.GetNode().GetCluster(); got != "shop" {
				t.Errorf("node cluster %q", got)
			}
			gotMD, err := ParseNodeMetadata(merged.GetNode().GetMetadata())
			if err != nil {
				t.Fatalf("metadata as Envoy reports it: %v", err)
			}
			wantMD := md
			wantMD.PodIP = "10.244.1.17"
			if diff := cmp.Diff(wantMD, gotMD); diff != "" {
				t.Errorf("metadata round trip (-want +got):\n%s", diff)
			}
			// The overlay adds the node and nothing else.
			base, err := ParseBootstrap(y)
			if err != nil {
				t.Fatal(err)
			}
			merged.Node = nil
			if !proto.Equal(base, merged) {
				t.Error("the overlay changed more than the node")
			}
			// The stats listener of the xDS server routes to this cluster.
			var admin *clusterv3.Cluster
			for _, c := range base.GetStaticResources().GetClusters() {
				if c.GetName() == AdminCluster {
					admin = c
				}
			}
			if admin == nil || endpointAddress(admin).GetPortValue() != cfg.AdminPort || base.GetAdmin().GetAddress().GetSocketAddress().GetPortValue() != cfg.AdminPort {
				t.Errorf("admin cluster %v does not point at the admin port %d", admin, cfg.AdminPort)
			}
			if got := base.GetAdmin().GetAddress().GetSocketAddress().GetAddress(); got != "127.0.0.1" {
				t.Errorf("admin bound to %s, want 127.0.0.1 only", got)
			}
		})
	}
}

// The loader is as strict as Envoy's: an unknown field anywhere, also inside
// a typed config, is an error naming it.
func TestParseBootstrapStrict(t *testing.T) {
	t.Parallel()
	for name, tc := range map[string]struct{ doc, want string }{
		"unknown top-level": {`{"node": {"id": "a"}, "nodes": 1}`, "nodes"},
		"unknown in node":   {`{"node": {"id": "a", "metadat": {}}}`, "metadat"},
		"unknown in Any": {`static_resources: {clusters: [{name: x, typed_extension_protocol_options: {o: {"@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions", bogus: 1}}}]}`,
			"bogus"},
		"unknown type": {`static_resources: {clusters: [{name: x, typed_extension_protocol_options: {o: {"@type": "type.googleapis.com/no.such.Type"}}}]}`, "no.such.Type"},
		"not YAML":     {"a: [", "YAML"},
	} {
		if _, err := ParseBootstrap([]byte(tc.doc)); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want one naming %q", name, err, tc.want)
		}
	}
}

func TestBootstrapConfigValidate(t *testing.T) {
	t.Parallel()
	for name, tc := range map[string]struct {
		change func(*BootstrapConfig)
		want   string
	}{
		"empty address":    {func(c *BootstrapConfig) { c.XDSAddress = "" }, "xDS address empty"},
		"bad address":      {func(c *BootstrapConfig) { c.XDSAddress = "not a host" }, `xDS address "not a host"`},
		"port 0":           {func(c *BootstrapConfig) { c.XDSPort = 0 }, "xDS port 0"},
		"port 70000":       {func(c *BootstrapConfig) { c.AdminPort = 70000 }, "admin port 70000"},
		"zero timeout":     {func(c *BootstrapConfig) { c.XDSConnectTimeout = 0 }, "xDS connect timeout"},
		"huge keepalive":   {func(c *BootstrapConfig) { c.XDSKeepaliveInterval = 2 * time.Hour }, "xDS keepalive interval"},
		"TLS without a CA": {func(c *BootstrapConfig) { c.XDSTLS = &XDSTLS{} }, "CA file"},
	} {
		cfg := DefaultBootstrapConfig()
		tc.change(&cfg)
		err := cfg.Validate()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error containing %q", name, err, tc.want)
		}
		if _, err := RenderBootstrap(cfg); err == nil {
			t.Errorf("%s: rendered anyway", name)
		}
	}
	if err := DefaultBootstrapConfig().Validate(); err != nil {
		t.Errorf("default: %v", err)
	}
}
