package xds

import (
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/sidecar-injector/sidecar-injector/envoy/nodemeta"
)

// Row X1: metadata over 64 KiB, or with more app ports than the cap, gets
// the default snapshot; the server keeps serving.
func TestOversizedMetadata(t *testing.T) {
	ts := startServer(t, "")
	def, err := BuildSnapshot(DefaultNodeInfo(), DefaultMeshSettings())
	if err != nil {
		t.Fatal(err)
	}
	huge := testNode(t, "huge.default", 8080)
	huge.Metadata.Fields["padding"] = structpb.NewStringValue(strings.Repeat("x", nodemeta.MaxMetadataBytes))
	many := testNode(t, "many.default")
	var ports []any
	for i := range nodemeta.MaxAppPorts + 1 {
		ports = append(ports, map[string]any{"port": float64(20000 + i)})
	}
	lv, err := structpb.NewList(ports)
	if err != nil {
		t.Fatal(err)
	}
	many.Metadata.Fields["appPorts"] = structpb.NewListValue(lv)
	for _, tc := range []struct {
		node   *corev3.Node
		reason string
	}{{huge, ReasonOversized}, {many, ReasonMalformed}} {
		c := ts.connect(t, tc.node)
		cds, lds := c.handshake("")
		if cds.GetVersionInfo() != def.GetVersion(resource.ClusterType) || lds.GetVersionInfo() != def.GetVersion(resource.ListenerType) {
			t.Errorf("%s: got %s/%s, want the default snapshot", tc.node.GetId(), cds.GetVersionInfo(), lds.GetVersionInfo())
		}
		c.cancel()
		if got := ts.counter(t, ts.app.metrics.InvalidMetadata.WithLabelValues(tc.reason)); got != 1 {
			t.Errorf("%s: %s counted %v times, want 1", tc.node.GetId(), tc.reason, got)
		}
	}
}

// Row X2: a node whose metadata podIP is not its connection's address is
// refused; with the check off (NAT), it is served.
func TestPodIPMustBePeer(t *testing.T) {
	node := func(ip string) *corev3.Node {
		n := testNode(t, "web.default", 8080)
		n.Metadata.Fields["podIP"] = structpb.NewStringValue(ip)
		return n
	}
	ts := startServer(t, "")
	for _, ip := range []string{"10.0.0.7", ""} {
		c := ts.connect(t, node(ip))
		c.send(resource.ClusterType, "", "", "")
		if err := c.expectEnd(5 * time.Second); status.Code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), "check-pod-ip") {
			t.Errorf("podIP %q: %v, want PermissionDenied naming --check-pod-ip", ip, err)
		}
	}
	c := ts.connect(t, node("127.0.0.1"))
	c.handshake("")

	nat := startServerWith(t, "", func(c *Config) { c.CheckPodIP = false })
	nat.connect(t, node("10.0.0.7")).handshake("")
}

// Row X4: a client that never reads its responses is cut off after the
// send timeout; a normal client meanwhile gets its config.
func TestClientThatNeverReads(t *testing.T) {
	ts := startServerWith(t, "", func(c *Config) { c.SendTimeout = time.Second })
	stallStreams(t, ts, 4)
	ts.connect(t, testNode(t, "normal.default", 8080)).handshake("")
	deadline := time.Now().Add(20 * time.Second)
	for ts.counter(t, ts.app.metrics.SendTimeouts) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the non-reading client was not cut within 20s")
		}
		time.Sleep(50 * time.Millisecond)
	}
	waitFor(t, "the cut client's snapshots dropped", func() bool { return ts.counter(t, ts.app.metrics.Snapshots) <= 1 })
	ts.connect(t, testNode(t, "normal2.default", 8081)).handshake("")
}

// stallStreams opens n streams that never read, on a connection of their
// own with 64 KiB flow-control windows: each asks for the clusters and
// listeners of a group of its own with the most app ports, more than the
// windows hold, so the server's sends to them block. They last as long as
// the test.
func stallStreams(t *testing.T, ts *testServer, n int) {
	t.Helper()
	conn, err := grpc.NewClient(ts.app.GRPCAddr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithInitialWindowSize(64<<10), grpc.WithInitialConnWindowSize(64<<10))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	ports := make([]uint32, nodemeta.MaxAppPorts)
	for i := range ports {
		ports[i] = uint32(20000 + i)
	}
	for i := range n {
		st, err := discoveryv3.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		ports[0] = uint32(1000 + i) // a distinct group per stream
		if err := st.Send(&discoveryv3.DiscoveryRequest{TypeUrl: resource.ClusterType, Node: testNode(t, "stalled.default", ports...)}); err != nil {
			t.Fatal(err)
		}
		if err := st.Send(&discoveryv3.DiscoveryRequest{TypeUrl: resource.ListenerType}); err != nil {
			t.Fatal(err)
		}
	}
}
