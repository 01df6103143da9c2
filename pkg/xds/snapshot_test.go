package xds

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	tcpproxyv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/testing/protocmp"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/structpb"
	"sigs.k8s.io/yaml"

	"github.com/sidecar-injector/sidecar-injector/envoy"
	"github.com/sidecar-injector/sidecar-injector/envoy/nodemeta"
	"github.com/sidecar-injector/sidecar-injector/internal/golden"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

// snapshotCase is an input file of testdata/snapshots: node metadata as
// Envoy would send it, and an optional mesh settings file.
type snapshotCase struct {
	Metadata json.RawMessage `json:"metadata"`
	Mesh     *string         `json:"mesh"`
}

// loadCase resolves a case the way the server does: metadata through the
// strict parser (falling back to the default node), mesh through the loader.
func loadCase(t *testing.T, path string) (*corev3.Node, NodeInfo, string, MeshSettings) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var c snapshotCase
	if err := yaml.UnmarshalStrict(data, &c); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	node := &corev3.Node{Id: "pod-" + filepath.Base(path) + ".default"}
	if len(c.Metadata) > 0 && string(c.Metadata) != "null" {
		node.Metadata = &structpb.Struct{}
		if err := protojson.Unmarshal(c.Metadata, node.Metadata); err != nil {
			t.Fatalf("%s: metadata: %v", path, err)
		}
	}
	info, reason, _ := ResolveNode(node)
	mesh := DefaultMeshSettings()
	if c.Mesh != nil {
		if mesh, err = LoadMeshSettings([]byte(*c.Mesh)); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
	}
	return node, info, reason, mesh
}

// renderSnapshot is the golden form of a snapshot: normalised JSON (sorted
// keys, two-space indent) with every Any expanded.
func renderSnapshot(t *testing.T, info NodeInfo, reason string, snap *cache.Snapshot) []byte {
	t.Helper()
	doc := map[string]any{"key": info.Key(), "defaultReason": reason}
	for _, typ := range []struct {
		name string
		url  string
	}{{"clusters", resource.ClusterType}, {"listeners", resource.ListenerType}} {
		doc[typ.name+"Version"] = snap.GetVersion(typ.url)
		var items []any
		for _, name := range sortedNames(snap.GetResources(typ.url)) {
			j, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(snap.GetResources(typ.url)[name])
			if err != nil {
				t.Fatal(err)
			}
			var v any
			if err := json.Unmarshal(j, &v); err != nil {
				t.Fatal(err)
			}
			items = append(items, v)
		}
		doc[typ.name] = items
	}
	out, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	return append(out, '\n')
}

func sortedNames(m map[string]types.Resource) []string {
	names := make([]string, 0, len(m))
	for n := range m {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

func TestBuildSnapshotGolden(t *testing.T) {
	inputs, err := filepath.Glob(filepath.Join("testdata", "snapshots", "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if len(inputs) < 8 {
		t.Fatalf("want at least 8 golden cases, found %d", len(inputs))
	}
	var outputs []string
	for _, in := range inputs {
		outputs = append(outputs, strings.TrimSuffix(in, ".yaml")+".golden.json")
	}
	golden.Orphans(t, *update, filepath.Join("testdata", "snapshots", "*.golden.json"), outputs)
	for _, in := range inputs {
		name := strings.TrimSuffix(filepath.Base(in), ".yaml")
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			_, info, reason, mesh := loadCase(t, in)
			if strings.HasPrefix(name, "metadata-") != (reason != "") {
				t.Fatalf("default reason %q for case %s", reason, name)
			}
			snap, err := BuildSnapshot(info, mesh)
			if err != nil {
				t.Fatalf("BuildSnapshot: %v", err)
			}
			if err := snap.Consistent(); err != nil {
				t.Errorf("Consistent: %v", err)
			}
			for _, url := range []string{resource.ClusterType, resource.ListenerType} {
				for name, r := range snap.GetResources(url) {
					if err := envoy.ValidateDeep(r); err != nil {
						t.Errorf("%s %s: %v", TypeName(url), name, err)
					}
				}
			}
			got := renderSnapshot(t, info, reason, snap)
			golden := filepath.Join("testdata", "snapshots", name+".golden.json")
			if *update {
				if err := os.WriteFile(golden, got, 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test ./pkg/xds -update)", err)
			}
			var gotDoc, wantDoc any
			if err := json.Unmarshal(got, &gotDoc); err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal(want, &wantDoc); err != nil {
				t.Fatalf("%s: %v", golden, err)
			}
			if diff := cmp.Diff(wantDoc, gotDoc); diff != "" {
				t.Errorf("snapshot differs from %s (-want +got; go test ./pkg/xds -update rewrites it):\n%s", golden, diff)
			}
		})
	}
}

func TestBuildSnapshotDeterministic(t *testing.T) {
	t.Parallel()
	_, info, _, mesh := loadCase(t, filepath.Join("testdata", "snapshots", "many-ports.yaml"))
	a, err := BuildSnapshot(info, mesh)
	if err != nil {
		t.Fatal(err)
	}
	for range 5 {
		b, err := BuildSnapshot(info, mesh)
		if err != nil {
			t.Fatal(err)
		}
		for _, url := range []string{resource.ClusterType, resource.ListenerType} {
			if a.GetVersion(url) != b.GetVersion(url) {
				t.Errorf("%s version %s then %s", TypeName(url), a.GetVersion(url), b.GetVersion(url))
			}
			if diff := cmp.Diff(a.GetResources(url), b.GetResources(url), protocmp.Transform()); diff != "" {
				t.Errorf("%s resources differ:\n%s", TypeName(url), diff)
			}
		}
	}
}

// Pods that differ only in what does not shape the config (name, IP, config
// hash, port names, order, duplicates) share a key and a snapshot; any port
// change gives another.
func TestNodeKeyGroups(t *testing.T) {
	t.Parallel()
	base := nodemeta.Metadata{
		Version: nodemeta.Version, InboundPort: 10001, OutboundPort: 10002, StatsPort: 10090, AdminPort: 9901,
		AppPorts: []nodemeta.AppPort{{Port: 8080, Name: "http"}, {Port: 9090}}, PodIP: "10.0.0.1", ConfigHash: "aaaa", InjectorVersion: "v1",
	}
	same := base
	same.AppPorts = []nodemeta.AppPort{{Port: 9090, Name: "m"}, {Port: 8080}, {Port: 8080, Name: "dup"}, {Port: 53, Protocol: "UDP"}}
	same.PodIP, same.ConfigHash, same.InjectorVersion = "10.9.9.9", "bbbb", "v2"
	same.ExcludeInboundPorts = []uint32{22}
	key := func(md nodemeta.Metadata) string {
		s, err := envoy.MetadataStruct(md)
		if err != nil {
			t.Fatal(err)
		}
		return (NodeHash{}).ID(&corev3.Node{Id: "x", Metadata: s})
	}
	if key(base) != key(same) {
		t.Errorf("config-equal nodes got keys %s and %s", key(base), key(same))
	}
	for name, change := range map[string]func(*nodemeta.Metadata){
		"inbound":  func(m *nodemeta.Metadata) { m.InboundPort = 10003 },
		"outbound": func(m *nodemeta.Metadata) { m.OutboundPort = 10004 },
		"stats":    func(m *nodemeta.Metadata) { m.StatsPort = 10091 },
		"admin":    func(m *nodemeta.Metadata) { m.AdminPort = 9902 },
		"app port": func(m *nodemeta.Metadata) { m.AppPorts = []nodemeta.AppPort{{Port: 8081}, {Port: 9090}} },
		"excluded": func(m *nodemeta.Metadata) { m.ExcludeInboundPorts = []uint32{9090} },
		"ipv6 off": func(m *nodemeta.Metadata) { m.IPv6 = nodemeta.IPv6Off },
	} {
		md := base
		change(&md)
		if key(md) == key(base) {
			t.Errorf("%s change kept key %s", name, key(base))
		}
	}
	noMetadata := &corev3.Node{Id: "no-metadata"}
	if got, want := (NodeHash{}).ID(noMetadata), DefaultNodeInfo().Key(); got != want {
		t.Errorf("node without metadata: key %s, want the default %s", got, want)
	}
}

// ValidateDeep must reach into Any: a tcp_proxy without a stat_prefix
// packed inside a listener passes the listener's own ValidateAll but not
// ValidateDeep.
func TestValidateDeepReachesIntoAny(t *testing.T) {
	t.Parallel()
	bad, err := anypb.New(&tcpproxyv3.TcpProxy{ClusterSpecifier: &tcpproxyv3.TcpProxy_Cluster{Cluster: "x"}})
	if err != nil {
		t.Fatal(err)
	}
	l := &listenerv3.Listener{
		Name:    "l",
		Address: socketAddress("0.0.0.0", 1),
		FilterChains: []*listenerv3.FilterChain{{Filters: []*listenerv3.Filter{{
			Name: nameTCPProxy, ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: bad},
		}}}},
	}
	if err := l.ValidateAll(); err != nil {
		t.Fatalf("listener ValidateAll: %v (the test needs it to pass)", err)
	}
	err = envoy.ValidateDeep(l)
	if err == nil || !strings.Contains(err.Error(), "StatPrefix") {
		t.Fatalf("ValidateDeep = %v, want the tcp_proxy stat_prefix error", err)
	}
	// An Any of a type this binary does not know is an error too.
	l.FilterChains[0].Filters[0].ConfigType = &listenerv3.Filter_TypedConfig{TypedConfig: &anypb.Any{TypeUrl: "type.googleapis.com/no.such.Type"}}
	if err := envoy.ValidateDeep(l); err == nil {
		t.Fatal("ValidateDeep accepted an unknown packed type")
	}
}

// Every mesh setting reaches both redirected listeners and every upstream cluster.
func TestMeshSettingsAppliedEverywhere(t *testing.T) {
	t.Parallel()
	_, info, _, _ := loadCase(t, filepath.Join("testdata", "snapshots", "many-ports.yaml"))
	mesh, err := LoadMeshSettings([]byte("connectTimeout: 750ms\nidleTimeout: 90s\naccessLog: {enabled: true}\ncircuitBreakers: {maxConnections: 7}\n"))
	if err != nil {
		t.Fatal(err)
	}
	snap, err := BuildSnapshot(info, mesh)
	if err != nil {
		t.Fatal(err)
	}
	for name, r := range snap.GetResources(resource.ClusterType) {
		c := r.(*clusterv3.Cluster)
		if got := c.GetConnectTimeout().AsDuration(); got != mesh.ConnectTimeout.Duration {
			t.Errorf("cluster %s connect timeout %v", name, got)
		}
		if name != ClusterBlackhole && c.GetCircuitBreakers().GetThresholds()[0].GetMaxConnections().GetValue() != 7 {
			t.Errorf("cluster %s circuit breakers %v", name, c.GetCircuitBreakers())
		}
	}
	proxies := 0
	for name, r := range snap.GetResources(resource.ListenerType) {
		l := r.(*listenerv3.Listener)
		chains := append(slices.Clone(l.GetFilterChains()), l.GetDefaultFilterChain())
		for _, fc := range chains {
			if fc == nil || fc.GetFilters()[0].GetName() != nameTCPProxy {
				continue
			}
			tp := &tcpproxyv3.TcpProxy{}
			if err := fc.GetFilters()[0].GetTypedConfig().UnmarshalTo(tp); err != nil {
				t.Fatal(err)
			}
			proxies++
			if tp.GetIdleTimeout().AsDuration() != mesh.IdleTimeout.Duration || len(tp.GetAccessLog()) != 1 {
				t.Errorf("listener %s chain %s: idle %v, %d access logs", name, fc.GetName(), tp.GetIdleTimeout().AsDuration(), len(tp.GetAccessLog()))
			}
		}
	}
	if proxies == 0 {
		t.Fatal("no tcp_proxy found")
	}
}

func TestBuildSnapshotRejectsBadInput(t *testing.T) {
	t.Parallel()
	good := DefaultNodeInfo()
	for name, n := range map[string]NodeInfo{
		"zero port":         {InboundPort: 0, OutboundPort: 2, StatsPort: 3, AdminPort: 4},
		"same proxy ports":  {InboundPort: 1, OutboundPort: 1, StatsPort: 3, AdminPort: 4},
		"app on proxy port": {InboundPort: 1, OutboundPort: 2, StatsPort: 3, AdminPort: 4, AppPorts: []uint32{2}},
		"unsorted":          {InboundPort: 1, OutboundPort: 2, StatsPort: 3, AdminPort: 4, AppPorts: []uint32{9, 8}},
	} {
		if _, err := BuildSnapshot(n, DefaultMeshSettings()); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	bad := DefaultMeshSettings()
	bad.ConnectTimeout.Duration = 0
	if _, err := BuildSnapshot(good, bad); err == nil || !strings.Contains(err.Error(), "connectTimeout") {
		t.Errorf("bad mesh: %v", err)
	}
}

// The golden renderer must be stable itself: the same snapshot twice gives
// the same bytes.
func TestRenderSnapshotStable(t *testing.T) {
	t.Parallel()
	snap, err := BuildSnapshot(DefaultNodeInfo(), DefaultMeshSettings())
	if err != nil {
		t.Fatal(err)
	}
	a, b := renderSnapshot(t, DefaultNodeInfo(), "", snap), renderSnapshot(t, DefaultNodeInfo(), "", snap)
	if !bytes.Equal(a, b) {
		t.Fatal("rendering differs")
	}
}

func BenchmarkBuildSnapshot(b *testing.B) {
	info := NodeInfo{InboundPort: 10001, OutboundPort: 10002, StatsPort: 10090, AdminPort: 9901, AppPorts: []uint32{80, 443, 8080, 9090}, IPv6: true}
	mesh := DefaultMeshSettings()
	mesh.AccessLog.Enabled = true
	for b.Loop() {
		if _, err := BuildSnapshot(info, mesh); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkNodeHash(b *testing.B) {
	md := nodemeta.Metadata{Version: nodemeta.Version, InboundPort: 10001, OutboundPort: 10002, StatsPort: 10090, AdminPort: 9901,
		AppPorts: []nodemeta.AppPort{{Port: 8080, Name: "http"}, {Port: 9090}}, PodIP: "10.0.0.1", ConfigHash: "abc", InjectorVersion: "v1"}
	s, err := envoy.MetadataStruct(md)
	if err != nil {
		b.Fatal(err)
	}
	node := &corev3.Node{Id: "a.b", Metadata: s}
	for b.Loop() {
		_ = (NodeHash{}).ID(node)
	}
}
