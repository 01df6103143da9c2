package xds

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"

	"github.com/sidecar-injector/sidecar-injector/envoy"
	"github.com/sidecar-injector/sidecar-injector/envoy/nodemeta"
	"github.com/sidecar-injector/sidecar-injector/internal/poll"
	"github.com/sidecar-injector/sidecar-injector/internal/syncbuf"
)

// syncBuffer is a log sink the test can read while the server writes.
type syncBuffer struct{ syncbuf.Buffer }

// lines returns the JSON log records with the given message.
func (b *syncBuffer) lines(msg string) []map[string]any {
	var out []map[string]any
	for _, l := range strings.Split(b.String(), "\n") {
		var rec map[string]any
		if json.Unmarshal([]byte(l), &rec) == nil && rec["msg"] == msg {
			out = append(out, rec)
		}
	}
	return out
}

type testServer struct {
	app      *App
	reg      *prometheus.Registry
	logs     *syncBuffer
	meshPath string
	conn     *grpc.ClientConn
}

// startServer runs the real App on loopback TCP ports with a watched mesh file.
func startServer(t *testing.T, mesh string) *testServer {
	t.Helper()
	return startServerWith(t, mesh, nil)
}

// startServerWith is startServer with the config changed by mutate.
func startServerWith(t *testing.T, mesh string, mutate func(*Config)) *testServer {
	t.Helper()
	dir := t.TempDir()
	ts := &testServer{reg: prometheus.NewRegistry(), logs: &syncBuffer{}, meshPath: filepath.Join(dir, "mesh.yaml")}
	if err := os.WriteFile(ts.meshPath, []byte(mesh), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig()
	cfg.ListenAddress, cfg.HealthAddress = "127.0.0.1:0", "127.0.0.1:0"
	cfg.MeshConfig = ts.meshPath
	cfg.FilePollInterval = 200 * time.Millisecond
	cfg.ShutdownDelay, cfg.ShutdownGrace = 0, 2*time.Second
	if mutate != nil {
		mutate(&cfg)
	}
	log := slog.New(slog.NewJSONHandler(ts.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	app, err := New(cfg, log, ts.reg, ts.reg)
	if err != nil {
		t.Fatal(err)
	}
	ts.app = app
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- app.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("server did not stop within 10s")
		}
	})
	conn, err := grpc.NewClient(app.GRPCAddr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	ts.conn = conn
	return ts
}

// writeMesh replaces the mesh file atomically, as a ConfigMap update does.
func (ts *testServer) writeMesh(t *testing.T, mesh string) {
	t.Helper()
	tmp := ts.meshPath + ".tmp"
	if err := os.WriteFile(tmp, []byte(mesh), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, ts.meshPath); err != nil {
		t.Fatal(err)
	}
}

func (ts *testServer) counter(t *testing.T, c prometheus.Collector) float64 {
	t.Helper()
	return metricValue(t, c)
}

// metricValue is the value of a collector holding one counter, gauge or
// histogram (its sample count).
func metricValue(t *testing.T, c prometheus.Collector) float64 {
	t.Helper()
	ch := make(chan prometheus.Metric, 2)
	c.Collect(ch)
	close(ch)
	var ms []prometheus.Metric
	for m := range ch {
		ms = append(ms, m)
	}
	if len(ms) != 1 {
		t.Fatalf("collector has %d metrics, want 1", len(ms))
	}
	var pb dto.Metric
	if err := ms[0].Write(&pb); err != nil {
		t.Fatal(err)
	}
	switch {
	case pb.Counter != nil:
		return pb.GetCounter().GetValue()
	case pb.Gauge != nil:
		return pb.GetGauge().GetValue()
	case pb.Histogram != nil:
		return float64(pb.GetHistogram().GetSampleCount())
	}
	t.Fatalf("unsupported metric %v", &pb)
	return 0
}

// waitFor waits up to 5 s for cond (internal/poll).
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	poll.True(t, 5*time.Second, what, cond)
}

// adsClient is a minimal Envoy: one ADS stream, requests by hand.
type adsClient struct {
	t      *testing.T
	stream discoveryv3.AggregatedDiscoveryService_StreamAggregatedResourcesClient
	cancel context.CancelFunc
	recv   chan *discoveryv3.DiscoveryResponse
	node   *corev3.Node
	first  bool

	mu      sync.Mutex
	recvErr error // why the stream ended, once recv is closed
}

func (c *adsClient) err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.recvErr
}

func (ts *testServer) connect(t *testing.T, node *corev3.Node) *adsClient {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	stream, err := discoveryv3.NewAggregatedDiscoveryServiceClient(ts.conn).StreamAggregatedResources(ctx)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	c := &adsClient{t: t, stream: stream, cancel: cancel, recv: make(chan *discoveryv3.DiscoveryResponse, 16), node: node, first: true}
	go func() {
		defer close(c.recv)
		for {
			resp, err := stream.Recv()
			if err != nil {
				c.mu.Lock()
				c.recvErr = err
				c.mu.Unlock()
				return
			}
			c.recv <- resp
		}
	}()
	t.Cleanup(cancel)
	return c
}

// send sends a request; the node goes with the first one only, as with
// set_node_on_first_message_only.
func (c *adsClient) send(typeURL, version, nonce string, nack string) {
	c.t.Helper()
	req := &discoveryv3.DiscoveryRequest{TypeUrl: typeURL, VersionInfo: version, ResponseNonce: nonce}
	if c.first {
		req.Node, c.first = c.node, false
	}
	if nack != "" {
		req.ErrorDetail = &rpcstatus.Status{Code: 3, Message: nack}
	}
	if err := c.stream.Send(req); err != nil {
		c.t.Fatalf("send %s: %v", TypeName(typeURL), err)
	}
}

func (c *adsClient) expect(typeURL string) *discoveryv3.DiscoveryResponse {
	c.t.Helper()
	select {
	case resp, ok := <-c.recv:
		if !ok {
			c.t.Fatalf("stream closed waiting for %s", TypeName(typeURL))
		}
		if resp.GetTypeUrl() != typeURL {
			c.t.Fatalf("got a %s response, want %s", TypeName(resp.GetTypeUrl()), TypeName(typeURL))
		}
		return resp
	case <-time.After(5 * time.Second):
		c.t.Fatalf("no %s response within 5s", TypeName(typeURL))
	}
	return nil
}

func (c *adsClient) expectNothing(d time.Duration) {
	c.t.Helper()
	select {
	case resp, ok := <-c.recv:
		if ok {
			c.t.Fatalf("unexpected %s response version %s", TypeName(resp.GetTypeUrl()), resp.GetVersionInfo())
		}
	case <-time.After(d):
	}
}

// expectEnd waits up to d for the stream to end without another
// response, and returns the error it ended with.
func (c *adsClient) expectEnd(d time.Duration) error {
	c.t.Helper()
	select {
	case resp, ok := <-c.recv:
		if ok {
			c.t.Fatalf("a %s response, want the stream ended", TypeName(resp.GetTypeUrl()))
		}
	case <-time.After(d):
		c.t.Fatalf("stream still open after %v", d)
	}
	return c.err()
}

// handshake is Envoy's start: CDS, ACK + LDS, ACK. It returns both responses.
func (c *adsClient) handshake(version string) (cds, lds *discoveryv3.DiscoveryResponse) {
	c.t.Helper()
	c.send(resource.ClusterType, version, "", "")
	cds = c.expect(resource.ClusterType)
	c.send(resource.ClusterType, cds.GetVersionInfo(), cds.GetNonce(), "")
	c.send(resource.ListenerType, version, "", "")
	lds = c.expect(resource.ListenerType)
	c.send(resource.ListenerType, lds.GetVersionInfo(), lds.GetNonce(), "")
	return cds, lds
}

func testNode(t *testing.T, id string, ports ...uint32) *corev3.Node {
	t.Helper()
	md := nodemeta.Metadata{
		Version: nodemeta.Version, InboundPort: 10001, OutboundPort: 10002, StatsPort: 10090, AdminPort: 9901,
		PodIP: "127.0.0.1", ConfigHash: "abc", InjectorVersion: "test",
	}
	for _, p := range ports {
		md.AppPorts = append(md.AppPorts, nodemeta.AppPort{Port: p})
	}
	s, err := envoy.MetadataStruct(md)
	if err != nil {
		t.Fatal(err)
	}
	return &corev3.Node{Id: id, Cluster: "default", Metadata: s}
}

// names unpacks and validates every resource of a response and returns the names.
func names(t *testing.T, resp *discoveryv3.DiscoveryResponse) []string {
	t.Helper()
	var out []string
	for _, a := range resp.GetResources() {
		m, err := a.UnmarshalNew()
		if err != nil {
			t.Fatal(err)
		}
		if err := envoy.ValidateDeep(m); err != nil {
			t.Errorf("%s: %v", TypeName(resp.GetTypeUrl()), err)
		}
		switch r := m.(type) {
		case *clusterv3.Cluster:
			out = append(out, r.GetName())
		case *listenerv3.Listener:
			out = append(out, r.GetName())
		default:
			t.Fatalf("unexpected resource %T", m)
		}
	}
	slices.Sort(out)
	return out
}

func TestADSOverTCP(t *testing.T) {
	ts := startServer(t, "apiVersion: sidecar.io/v1alpha1\nkind: MeshConfig\n")
	m := ts.app.metrics
	c := ts.connect(t, testNode(t, "app-1.default", 8080))

	// CDS then LDS, ACKed.
	cds, lds := c.handshake("")
	if diff := cmp.Diff([]string{"blackhole", "inbound|8080", "inbound|passthrough", "outbound|passthrough", "proxy|admin"}, names(t, cds)); diff != "" {
		t.Errorf("clusters (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"inbound", "inbound-ipv6", "outbound", "outbound-ipv6", "stats", "stats-ipv6"}, names(t, lds)); diff != "" {
		t.Errorf("listeners (-want +got):\n%s", diff)
	}
	want, err := BuildSnapshot(NodeInfo{InboundPort: 10001, OutboundPort: 10002, StatsPort: 10090, AdminPort: 9901, AppPorts: []uint32{8080}, IPv6: true}, DefaultMeshSettings())
	if err != nil {
		t.Fatal(err)
	}
	if cds.GetVersionInfo() != want.GetVersion(resource.ClusterType) || lds.GetVersionInfo() != want.GetVersion(resource.ListenerType) {
		t.Errorf("versions %s/%s, want the content hashes %s/%s", cds.GetVersionInfo(), lds.GetVersionInfo(),
			want.GetVersion(resource.ClusterType), want.GetVersion(resource.ListenerType))
	}
	waitFor(t, "ACKs counted", func() bool {
		return ts.counter(t, m.Requests.WithLabelValues("cds", ResultACK)) == 1 && ts.counter(t, m.Requests.WithLabelValues("lds", ResultACK)) == 1
	})
	for _, check := range []struct {
		c    prometheus.Collector
		want float64
	}{
		{m.Requests.WithLabelValues("cds", ResultInitial), 1},
		{m.Requests.WithLabelValues("lds", ResultInitial), 1},
		{m.Responses.WithLabelValues("cds"), 1},
		{m.Responses.WithLabelValues("lds"), 1},
		{m.ConnectedProxies, 1},
		{m.Snapshots, 1},
	} {
		if got := ts.counter(t, check.c); got != check.want {
			t.Errorf("%s = %v, want %v", metricName(check.c), got, check.want)
		}
	}
	c.expectNothing(300 * time.Millisecond)

	// A settings change is pushed: both types change.
	ts.writeMesh(t, "connectTimeout: 250ms\nidleTimeout: 30s\n")
	cds2 := c.expect(resource.ClusterType)
	if cds2.GetVersionInfo() == cds.GetVersionInfo() {
		t.Fatalf("CDS pushed with the old version %s", cds2.GetVersionInfo())
	}
	c.send(resource.ClusterType, cds2.GetVersionInfo(), cds2.GetNonce(), "")
	lds2 := c.expect(resource.ListenerType)
	if lds2.GetVersionInfo() == lds.GetVersionInfo() {
		t.Fatalf("LDS pushed with the old version %s", lds2.GetVersionInfo())
	}
	c.send(resource.ListenerType, lds2.GetVersionInfo(), lds2.GetNonce(), "")
	cl := &clusterv3.Cluster{}
	if err := cds2.GetResources()[0].UnmarshalTo(cl); err != nil || cl.GetConnectTimeout().AsDuration() != 250*time.Millisecond {
		t.Errorf("pushed cluster %s connect timeout %v (%v), want 250ms", cl.GetName(), cl.GetConnectTimeout().AsDuration(), err)
	}
	// The push is observed once every group's snapshot is handed over,
	// which can be a moment after this client has its response.
	waitFor(t, "push duration observed once", func() bool { return metricValue(t, m.PushDuration) == 1 })
	waitFor(t, "reload counted", func() bool { return ts.counter(t, m.SettingsReloads.WithLabelValues("success")) == 1 })

	// An invalid file keeps the settings in force, counted and logged, nothing pushed.
	ts.writeMesh(t, "connectTimeout: 250ms\nidleTimeout: 30s\nbogus: 1\n")
	waitFor(t, "bad reload counted", func() bool { return ts.counter(t, m.SettingsReloads.WithLabelValues("error")) >= 1 })
	if recs := ts.logs.lines("mesh settings invalid, keeping the previous ones"); len(recs) == 0 || !strings.Contains(fmt.Sprint(recs[0]["error"]), `unknown field "bogus"`) {
		t.Errorf("invalid settings log: %v", recs)
	}
	c.expectNothing(300 * time.Millisecond)

	// NACK: counted, logged, not resent until the config changes again.
	ts.writeMesh(t, "connectTimeout: 250ms\nidleTimeout: 30s\naccessLog: {enabled: true}\n")
	lds3 := c.expect(resource.ListenerType) // access log changes listeners only
	c.send(resource.ListenerType, lds2.GetVersionInfo(), lds3.GetNonce(), "listener inbound: cannot bind")
	waitFor(t, "NACK counted", func() bool { return ts.counter(t, m.Requests.WithLabelValues("lds", ResultNACK)) == 1 })
	recs := ts.logs.lines("proxy rejected config")
	if len(recs) != 1 || recs[0]["version"] != lds3.GetVersionInfo() || recs[0]["node"] != "app-1.default" || recs[0]["error"] != "listener inbound: cannot bind" {
		t.Errorf("NACK log records: %v", recs)
	}
	c.expectNothing(500 * time.Millisecond)
	ts.writeMesh(t, "connectTimeout: 250ms\nidleTimeout: 45s\naccessLog: {enabled: true}\n")
	lds4 := c.expect(resource.ListenerType)
	if lds4.GetVersionInfo() == lds3.GetVersionInfo() || lds4.GetVersionInfo() == lds2.GetVersionInfo() {
		t.Fatalf("after the NACK, pushed version %s (rejected %s)", lds4.GetVersionInfo(), lds3.GetVersionInfo())
	}
	c.send(resource.ListenerType, lds4.GetVersionInfo(), lds4.GetNonce(), "")

	// A second pod with the same ports shares the snapshot; other ports do not.
	c2 := ts.connect(t, testNode(t, "app-2.default", 8080))
	cdsB, ldsB := c2.handshake("")
	if cdsB.GetVersionInfo() != cds2.GetVersionInfo() || ldsB.GetVersionInfo() != lds4.GetVersionInfo() {
		t.Errorf("same-ports node got %s/%s, want %s/%s", cdsB.GetVersionInfo(), ldsB.GetVersionInfo(), cds2.GetVersionInfo(), lds4.GetVersionInfo())
	}
	waitFor(t, "shared snapshot", func() bool { return ts.counter(t, m.Snapshots) == 1 && ts.counter(t, m.ConnectedProxies) == 2 })
	c3 := ts.connect(t, testNode(t, "db-0.data", 5432))
	c3.handshake("")
	waitFor(t, "second snapshot", func() bool { return ts.counter(t, m.Snapshots) == 2 })
	c3.cancel()
	c2.cancel()

	// Disconnect: the last stream of each group clears the entry.
	c.cancel()
	waitFor(t, "entries cleared", func() bool {
		return ts.counter(t, m.ConnectedProxies) == 0 && ts.counter(t, m.Snapshots) == 0 && len(ts.app.Server().GroupKeys()) == 0
	})
	// Reconnect as Envoy does (its last accepted versions, no nonce): current config.
	r := ts.connect(t, testNode(t, "app-1.default", 8080))
	r.send(resource.ClusterType, cds.GetVersionInfo(), "", "")
	cdsR := r.expect(resource.ClusterType)
	r.send(resource.ClusterType, cdsR.GetVersionInfo(), cdsR.GetNonce(), "")
	r.send(resource.ListenerType, lds.GetVersionInfo(), "", "")
	ldsR := r.expect(resource.ListenerType)
	if cdsR.GetVersionInfo() != cds2.GetVersionInfo() || ldsR.GetVersionInfo() != lds4.GetVersionInfo() {
		t.Errorf("after reconnect %s/%s, want the current %s/%s", cdsR.GetVersionInfo(), ldsR.GetVersionInfo(), cds2.GetVersionInfo(), lds4.GetVersionInfo())
	}
}

// A node with missing or malformed metadata gets the default snapshot, a
// log line and a metric; the server keeps serving.
func TestADSInvalidMetadata(t *testing.T) {
	ts := startServer(t, "")
	m := ts.app.metrics
	bad := testNode(t, "broken.default", 8080)
	bad.Metadata.Fields["inboundPort"].Kind = nil // null
	def, err := BuildSnapshot(DefaultNodeInfo(), DefaultMeshSettings())
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		node   *corev3.Node
		reason string
	}{
		{bad, ReasonMalformed},
		{&corev3.Node{Id: "bare.default"}, ReasonMissing},
		{nil, ReasonMissing},
	} {
		c := ts.connect(t, tc.node)
		cds, lds := c.handshake("")
		if cds.GetVersionInfo() != def.GetVersion(resource.ClusterType) || lds.GetVersionInfo() != def.GetVersion(resource.ListenerType) {
			t.Errorf("%s: got %s/%s, want the default snapshot", tc.reason, cds.GetVersionInfo(), lds.GetVersionInfo())
		}
		c.cancel()
	}
	if got := ts.counter(t, m.InvalidMetadata.WithLabelValues(ReasonMalformed)); got != 1 {
		t.Errorf("malformed counted %v times", got)
	}
	if got := ts.counter(t, m.InvalidMetadata.WithLabelValues(ReasonMissing)); got != 2 {
		t.Errorf("missing counted %v times", got)
	}
	recs := ts.logs.lines("node metadata unusable, serving the default snapshot")
	if len(recs) != 3 || recs[0]["node"] != "broken.default" || !strings.Contains(fmt.Sprint(recs[0]["error"]), "inboundPort") {
		t.Errorf("log records: %v", recs)
	}
}

// Delta xDS and a node that changes on its stream are refused clearly.
func TestADSRefusals(t *testing.T) {
	ts := startServer(t, "")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	delta, err := discoveryv3.NewAggregatedDiscoveryServiceClient(ts.conn).DeltaAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := delta.Recv(); err == nil || !strings.Contains(err.Error(), "delta xDS is not served") {
		t.Errorf("delta stream: %v", err)
	}

	c := ts.connect(t, testNode(t, "a.default", 8080))
	c.send(resource.ClusterType, "", "", "")
	cds := c.expect(resource.ClusterType)
	other := testNode(t, "b.default", 8080)
	if err := c.stream.Send(&discoveryv3.DiscoveryRequest{TypeUrl: resource.ClusterType, VersionInfo: cds.GetVersionInfo(), ResponseNonce: cds.GetNonce(), Node: other}); err != nil {
		t.Fatal(err)
	}
	if err := c.expectEnd(5 * time.Second); err == nil || !strings.Contains(err.Error(), "node changed on the stream") {
		t.Errorf("stream ended with %v, want the node-changed error", err)
	}
	// Resending the same node (Envoy without set_node_on_first_message_only) is fine.
	c2 := ts.connect(t, testNode(t, "c.default", 8080))
	c2.send(resource.ClusterType, "", "", "")
	c2.expect(resource.ClusterType)
	if err := c2.stream.Send(&discoveryv3.DiscoveryRequest{TypeUrl: resource.ListenerType, Node: proto.Clone(c2.node).(*corev3.Node)}); err != nil {
		t.Fatal(err)
	}
	c2.expect(resource.ListenerType)
}

// The health port: /healthz, /readyz, and /metrics readable by the
// Prometheus text parser with only bounded labels.
func TestHealthPort(t *testing.T) {
	ts := startServer(t, "")
	c := ts.connect(t, testNode(t, "app-1.default", 8080))
	c.handshake("")
	base := "http://" + ts.app.HealthAddr().String()
	for _, p := range []string{"/healthz", "/readyz"} {
		resp, err := http.Get(base + p)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("%s: %s", p, resp.Status)
		}
	}
	resp, err := http.Get(base + "/mutate")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("/mutate on the health port: %s", resp.Status)
	}
	waitFor(t, "LDS ACK", func() bool {
		return metricValue(t, ts.app.metrics.Requests.WithLabelValues("lds", ResultACK)) == 1
	})
	resp, err = http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	allowed := map[string]bool{"type": true, "result": true, "reason": true, "version": true, "goversion": true, "component": true}
	for _, name := range []string{
		"sidecar_injector_xds_connected_proxies", "sidecar_injector_xds_snapshots", "sidecar_injector_xds_requests_total",
		"sidecar_injector_xds_responses_total", "sidecar_injector_xds_snapshot_build_duration_seconds",
		"sidecar_injector_xds_settings_push_duration_seconds", "sidecar_injector_xds_invalid_node_metadata_total",
		"sidecar_injector_xds_settings_reloads_total", "sidecar_injector_build_info",
	} {
		f, ok := fams[name]
		if !ok {
			t.Errorf("/metrics lacks %s", name)
			continue
		}
		for _, mt := range f.GetMetric() {
			for _, l := range mt.GetLabel() {
				if !allowed[l.GetName()] {
					t.Errorf("%s has label %s", name, l.GetName())
				}
				if strings.Contains(l.GetValue(), "app-1") {
					t.Errorf("%s label %s=%s carries a node id", name, l.GetName(), l.GetValue())
				}
			}
		}
	}
	for _, mt := range fams["sidecar_injector_xds_requests_total"].GetMetric() {
		var typ, result string
		for _, l := range mt.GetLabel() {
			switch l.GetName() {
			case "type":
				typ = l.GetValue()
			case "result":
				result = l.GetValue()
			}
		}
		if typ == "lds" && result == ResultACK && mt.GetCounter().GetValue() != 1 {
			t.Errorf("requests_total{lds,ack} = %v", mt.GetCounter().GetValue())
		}
	}
}

func metricName(c prometheus.Collector) string {
	ch := make(chan *prometheus.Desc, 1)
	c.Describe(ch)
	return (<-ch).String()
}

// Every proxy of a group rejects a bad version at once: each NACK counts,
// the first is a warning, the others debug lines.
func TestNACKLoggedOncePerVersion(t *testing.T) {
	ts := startServer(t, "")
	var clients []*adsClient
	for _, id := range []string{"web-1.shop", "web-2.shop", "web-3.shop"} {
		c := ts.connect(t, testNode(t, id, 8080))
		c.handshake("")
		clients = append(clients, c)
	}
	ts.writeMesh(t, "accessLog: {enabled: true}\n")
	for _, c := range clients {
		lds := c.expect(resource.ListenerType)
		c.send(resource.ListenerType, "", lds.GetNonce(), "bad listener")
	}
	waitFor(t, "3 NACKs", func() bool { return ts.counter(t, ts.app.metrics.Requests.WithLabelValues("lds", ResultNACK)) == 3 })
	recs := ts.logs.lines("proxy rejected config")
	levels := map[any]int{}
	for _, r := range recs {
		levels[r["level"]]++
	}
	if levels["WARN"] != 1 || levels["DEBUG"] != 2 {
		t.Errorf("NACK log levels %v, want 1 WARN and 2 DEBUG", levels)
	}
}
