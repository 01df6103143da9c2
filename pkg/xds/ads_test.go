package xds

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
)

// frames is a stream whose RecvMsg decodes the given frames with the
// server's codec, as its transport does.
type frames struct {
	discoveryv3.AggregatedDiscoveryService_StreamAggregatedResourcesServer
	in [][]byte
}

func (f *frames) RecvMsg(m any) error {
	b := f.in[0]
	f.in = f.in[1:]
	return Codec().Unmarshal(mem.BufferSlice{mem.SliceBuffer(b)}, m)
}

// Requests come out of a stream's recv as they went in, small ones decoded
// in place and those with a node on a worker, the first node's metadata as
// its JSON; a malformed one is an error.
func TestStreamRecv(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	s, err := NewServer(ctx, slog.New(slog.DiscardHandler), NewMetrics(prometheus.NewRegistry()), DefaultMeshSettings())
	if err != nil {
		t.Fatal(err)
	}
	md, err := structpb.NewStruct(map[string]any{"big": strings.Repeat("x", 2*inPlaceMax), "nested": map[string]any{"a": []any{1.0, map[string]any{"b": true}}}})
	if err != nil {
		t.Fatal(err)
	}
	reqs := []*discoveryv3.DiscoveryRequest{
		{TypeUrl: resource.ClusterType, Node: &corev3.Node{Id: "p.ns", Metadata: md}},
		{TypeUrl: resource.ClusterType, VersionInfo: "v1", ResponseNonce: "1"},
	}
	f := &frames{}
	for _, r := range reqs {
		b, err := proto.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		f.in = append(f.in, b)
	}
	if len(f.in[0]) <= inPlaceMax || len(f.in[1]) > inPlaceMax {
		t.Fatalf("request sizes %d and %d: want one above and one below %d", len(f.in[0]), len(f.in[1]), inPlaceMax)
	}
	f.in = append(f.in, []byte{0xff, 0xff, 0xff})
	st := &stream{s: s, grpc: f}
	for i, want := range reqs {
		got, metadataJSON, err := st.recv()
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		if md := want.GetNode().GetMetadata(); md != nil {
			wantJSON, err := json.Marshal(md.AsMap())
			if err != nil {
				t.Fatal(err)
			}
			if string(metadataJSON) != string(wantJSON) {
				t.Errorf("request %d: metadata JSON %s, want %s", i, metadataJSON, wantJSON)
			}
			if got.GetNode().GetMetadata() != nil {
				t.Errorf("request %d: node metadata decoded besides its JSON", i)
			}
			want = proto.Clone(want).(*discoveryv3.DiscoveryRequest)
			want.Node.Metadata = nil
		} else if metadataJSON != nil {
			t.Errorf("request %d: metadata JSON %s for a request without a node", i, metadataJSON)
		}
		if !proto.Equal(got, want) {
			t.Errorf("request %d: got %v; want %v", i, got, want)
		}
	}
	if got, _, err := st.recv(); err == nil {
		t.Errorf("malformed request: got %v, want an error", got)
	}
}

var _ grpc.ServerStream = (*frames)(nil)

// State of the world, one response in flight per type: a change waits for
// the client's ACK of the last response, which then gets the newest
// version (not each one in between); a request about an older response
// than the last (stale nonce) is not answered; types the server does not
// serve are counted and left open; a request without a type ends the
// stream.
func TestOneResponseInFlightPerType(t *testing.T) {
	ts := startServer(t, "apiVersion: sidecar.io/v1alpha1\nkind: MeshConfig\n")
	m := ts.app.metrics
	c := ts.connect(t, testNode(t, "flow.default", 8080))
	c.send(resource.ClusterType, "", "", "")
	cds1 := c.expect(resource.ClusterType)

	// Two changes while the client holds cds1 unACKed: nothing is sent.
	ts.writeMesh(t, "connectTimeout: 2s\n")
	waitFor(t, "first change applied", func() bool { return metricValue(t, m.PushDuration) == 1 })
	c.expectNothing(300 * time.Millisecond)
	ts.writeMesh(t, "connectTimeout: 3s\n")
	waitFor(t, "second change applied", func() bool { return metricValue(t, m.PushDuration) == 2 })
	c.expectNothing(300 * time.Millisecond)

	// The ACK gets the newest version at once.
	c.send(resource.ClusterType, cds1.GetVersionInfo(), cds1.GetNonce(), "")
	cds2 := c.expect(resource.ClusterType)
	cl := &clusterv3.Cluster{}
	if err := cds2.GetResources()[0].UnmarshalTo(cl); err != nil || cl.GetConnectTimeout().AsDuration() != 3*time.Second {
		t.Errorf("after the ACK: cluster %s connect timeout %v (%v), want the newest settings' 3s", cl.GetName(), cl.GetConnectTimeout().AsDuration(), err)
	}
	if cds2.GetNonce() == cds1.GetNonce() {
		t.Errorf("nonce %q reused", cds2.GetNonce())
	}

	// An ACK of cds1 again is stale: cds2 is the last response.
	c.send(resource.ClusterType, cds1.GetVersionInfo(), cds1.GetNonce(), "")
	c.expectNothing(300 * time.Millisecond)
	// ACKing cds2 asks for the next change; there is none.
	c.send(resource.ClusterType, cds2.GetVersionInfo(), cds2.GetNonce(), "")
	c.expectNothing(300 * time.Millisecond)

	// Endpoints are not served: counted, never answered.
	c.send(resource.EndpointType, "", "", "")
	waitFor(t, "EDS request counted", func() bool { return ts.counter(t, m.Requests.WithLabelValues("eds", ResultInitial)) == 1 })
	c.expectNothing(300 * time.Millisecond)
	ts.writeMesh(t, "connectTimeout: 4s\n")
	if cds3 := c.expect(resource.ClusterType); cds3.GetVersionInfo() == cds2.GetVersionInfo() {
		t.Errorf("push after the ACK carries the old version %s", cds3.GetVersionInfo())
	}

	// No type URL: the stream ends with a clear error.
	c.send("", "", "", "")
	if err := c.expectEnd(5 * time.Second); status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "without a type URL") {
		t.Errorf("stream ended with %v, want InvalidArgument about the type URL", err)
	}
	waitFor(t, "the stream's group dropped", func() bool { return ts.counter(t, m.ConnectedProxies) == 0 && ts.counter(t, m.Snapshots) == 0 })
}

// A push is sent to each stream on its own: streams that never read (their
// flow-control windows full, within the send timeout) do not hold up the
// push to the others.
func TestPushPastStalledStreams(t *testing.T) {
	ts := startServerWith(t, "apiVersion: sidecar.io/v1alpha1\nkind: MeshConfig\n", func(c *Config) { c.SendTimeout = time.Minute })
	stallStreams(t, ts, 4)
	waitFor(t, "the stalled streams' groups", func() bool { return ts.counter(t, ts.app.metrics.Snapshots) == 4 })
	c := ts.connect(t, testNode(t, "reader.default", 8080))
	cds, lds := c.handshake("")
	ts.writeMesh(t, "connectTimeout: 2s\nidleTimeout: 30s\n") // clusters and listeners
	start := time.Now()
	if cds2 := c.expect(resource.ClusterType); cds2.GetVersionInfo() == cds.GetVersionInfo() {
		t.Errorf("pushed CDS has the old version")
	}
	c.send(resource.ClusterType, "", "", "") // stale (no nonce): ignored
	if lds2 := c.expect(resource.ListenerType); lds2.GetVersionInfo() == lds.GetVersionInfo() {
		t.Errorf("pushed LDS has the old version")
	}
	if d := time.Since(start); d > 30*time.Second {
		t.Errorf("push reached the reading client after %v, with the stalled streams' send timeout at a minute", d)
	}
	if got := ts.counter(t, ts.app.metrics.SendTimeouts); got != 0 {
		t.Errorf("%v connections cut: the stalled ones should still be waiting", got)
	}
}

// Stopping the server ends every open stream at once (their connections
// close after a GOAWAY): proxies reconnect to another replica. The shutdown
// grace is long here, so a stop that waited for streams to end would show.
func TestStopEndsStreams(t *testing.T) {
	cfg := DefaultConfig()
	cfg.ListenAddress, cfg.HealthAddress = "127.0.0.1:0", "127.0.0.1:0"
	cfg.ShutdownDelay, cfg.ShutdownGrace = 0, time.Minute
	reg := prometheus.NewRegistry()
	app, err := New(cfg, slog.New(slog.DiscardHandler), reg, reg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- app.Run(ctx) }()
	conn, err := grpc.NewClient(app.GRPCAddr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ts := &testServer{app: app, conn: conn}
	var clients []*adsClient
	for i := range 3 {
		c := ts.connect(t, testNode(t, fmt.Sprintf("p%d.default", i), 8080))
		c.handshake("")
		clients = append(clients, c)
	}
	start := time.Now()
	cancel()
	for _, c := range clients {
		c.expectEnd(10 * time.Second)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return within 10s of the stop")
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("stop took %v", d)
	}
}
