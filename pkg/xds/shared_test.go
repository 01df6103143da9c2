package xds

import (
	"fmt"
	"testing"
	"time"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/proto"
)

// Streams of two groups, which share most resources, get them from the
// same encodings at once (run with -race: a group's response is sent by
// many streams at once, each with its own nonce): every response
// carries exactly what a snapshot built on its own holds, with a nonce of
// its stream's, and a settings push reaches every stream the same way.
func TestSharedEncodingsAcrossStreams(t *testing.T) {
	ts := startServer(t, "apiVersion: sidecar.io/v1alpha1\nkind: MeshConfig\n")
	const streams = 12
	ports := func(i int) uint32 { return uint32(8080 + i%2) }
	var clients []*adsClient
	for i := range streams {
		clients = append(clients, ts.connect(t, testNode(t, fmt.Sprintf("p%d.default", i), ports(i))))
	}
	expected := func(port uint32, mesh MeshSettings, typeURL string) map[string]proto.Message {
		n := DefaultNodeInfo()
		n.AppPorts = []uint32{port}
		snap, err := BuildSnapshot(n, mesh)
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]proto.Message{}
		for name, r := range snap.GetResources(typeURL) {
			out[name] = r
		}
		return out
	}
	check := func(i int, resp *discoveryv3.DiscoveryResponse, mesh MeshSettings, nonces map[string]bool) {
		t.Helper()
		want := expected(ports(i), mesh, resp.GetTypeUrl())
		if len(resp.GetResources()) != len(want) {
			t.Errorf("stream %d: %d %s resources, want %d", i, len(resp.GetResources()), TypeName(resp.GetTypeUrl()), len(want))
		}
		for _, a := range resp.GetResources() {
			m, err := a.UnmarshalNew()
			if err != nil {
				t.Fatal(err)
			}
			name := m.(interface{ GetName() string }).GetName()
			if !proto.Equal(m, want[name]) {
				t.Errorf("stream %d: %s %s differs from the snapshot built on its own", i, TypeName(resp.GetTypeUrl()), name)
			}
		}
		if nonces[resp.GetNonce()] {
			t.Errorf("stream %d: nonce %q sent twice on it", i, resp.GetNonce())
		}
		nonces[resp.GetNonce()] = true
	}
	mesh := DefaultMeshSettings()
	nonces := make([]map[string]bool, streams)
	// All streams ask at once, then all ACK and ask for listeners at once.
	for _, c := range clients {
		c.send(resource.ClusterType, "", "", "")
	}
	for i, c := range clients {
		nonces[i] = map[string]bool{}
		cds := c.expect(resource.ClusterType)
		check(i, cds, mesh, nonces[i])
		c.send(resource.ClusterType, cds.GetVersionInfo(), cds.GetNonce(), "")
		c.send(resource.ListenerType, "", "", "")
	}
	for i, c := range clients {
		lds := c.expect(resource.ListenerType)
		check(i, lds, mesh, nonces[i])
		c.send(resource.ListenerType, lds.GetVersionInfo(), lds.GetNonce(), "")
	}

	ts.writeMesh(t, "apiVersion: sidecar.io/v1alpha1\nkind: MeshConfig\nconnectTimeout: 3s\nidleTimeout: 2h\n")
	mesh.ConnectTimeout.Duration, mesh.IdleTimeout.Duration = 3*time.Second, 2*time.Hour
	for i, c := range clients {
		for _, typ := range []string{resource.ClusterType, resource.ListenerType} {
			resp := c.expect(typ)
			check(i, resp, mesh, nonces[i])
			c.send(typ, resp.GetVersionInfo(), resp.GetNonce(), "")
		}
	}
}
