package adsclient

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	tcpproxyv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/wrapperspb"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestExpand(t *testing.T) {
	t.Parallel()
	env := map[string]string{"POD_NAME": "web-1", "POD_NAMESPACE": "shop", "EMPTY": ""}
	tests := []struct{ in, want string }{
		{"$(POD_NAME).$(POD_NAMESPACE)", "web-1.shop"},
		{"$$(POD_NAME)", "$(POD_NAME)"},
		{"$(UNKNOWN)", "$(UNKNOWN)"},
		{"x$(EMPTY)y", "xy"},
		{"$(POD_NAME", "$(POD_NAME"},
		{"cost $5", "cost $5"},
		{"trailing $", "trailing $"},
		{"", ""},
	}
	for _, tt := range tests {
		if got := Expand(tt.in, env); got != tt.want {
			t.Errorf("Expand(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func injectedPod(args []string) *corev1.Pod {
	always := corev1.ContainerRestartPolicyAlways
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "web-1", Namespace: "shop"},
		Spec: corev1.PodSpec{
			InitContainers: []corev1.Container{{Name: "iptables-init"}, {
				Name: "envoy", RestartPolicy: &always, Args: args,
				Env: []corev1.EnvVar{
					{Name: "POD_NAME", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}},
					{Name: "POD_NAMESPACE", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.namespace"}}},
					{Name: "POD_IP", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "status.podIP"}}},
				},
			}},
			Containers: []corev1.Container{{Name: "app"}},
		},
		Status: corev1.PodStatus{PodIP: "10.1.2.3"},
	}
}

func TestNodeFromPod(t *testing.T) {
	t.Parallel()
	overlay := `{"node":{"id":"$(POD_NAME).$(POD_NAMESPACE)","cluster":"$(POD_NAMESPACE)","metadata":{"version":"v1","inboundPort":10001,"podIP":"$(POD_IP)"}}}`
	for _, args := range [][]string{
		{"-c", "/etc/envoy/envoy.yaml", "--config-yaml", overlay},
		{"-c", "/etc/envoy/envoy.yaml", "--config-yaml=" + overlay},
	} {
		node, err := NodeFromPod(injectedPod(args))
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]any{"id": node.GetId(), "cluster": node.GetCluster(), "metadata": node.GetMetadata().AsMap()}
		want := map[string]any{"id": "web-1.shop", "cluster": "shop", "metadata": map[string]any{"version": "v1", "inboundPort": float64(10001), "podIP": "10.1.2.3"}}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("node (-want +got):\n%s", diff)
		}
	}
}

func TestNodeFromPodErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		pod  *corev1.Pod
		want string
	}{
		{"not injected", &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "a", Namespace: "b"}}, `no "envoy" container`},
		{"no overlay", injectedPod([]string{"-c", "x"}), "no --config-yaml"},
		{"no node id", injectedPod([]string{"--config-yaml", `{"node":{}}`}), "no node.id"},
		{"not yaml", injectedPod([]string{"--config-yaml", `{node: [`}), "not YAML"},
	}
	for _, tt := range tests {
		_, err := NodeFromPod(tt.pod)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: error %v, want one containing %q", tt.name, err, tt.want)
		}
	}
}

// TestFetch drives a real go-control-plane ADS server over loopback TCP.
func TestFetch(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	snapCache := cachev3.NewSnapshotCache(true, cachev3.IDHash{}, nil)
	tp, err := anypb.New(&tcpproxyv3.TcpProxy{StatPrefix: "in", ClusterSpecifier: &tcpproxyv3.TcpProxy_Cluster{Cluster: "inbound|8080"}})
	if err != nil {
		t.Fatal(err)
	}
	listener := &listenerv3.Listener{
		Name:    "inbound",
		Address: &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{Address: "0.0.0.0", PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: 10001}}}},
		FilterChains: []*listenerv3.FilterChain{{
			Name:             "inbound|8080",
			FilterChainMatch: &listenerv3.FilterChainMatch{DestinationPort: wrapperspb.UInt32(8080)},
			Filters:          []*listenerv3.Filter{{Name: "envoy.filters.network.tcp_proxy", ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: tp}}},
		}},
	}
	snap, err := cachev3.NewSnapshot("v1", map[resourcev3.Type][]types.Resource{
		resourcev3.ClusterType:  {&clusterv3.Cluster{Name: "inbound|8080"}},
		resourcev3.ListenerType: {listener},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := snapCache.SetSnapshot(ctx, "web-1.shop", snap); err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	discoveryv3.RegisterAggregatedDiscoveryServiceServer(gs, serverv3.NewServer(context.Background(), snapCache, nil))
	go func() { _ = gs.Serve(lis) }()
	t.Cleanup(gs.Stop)

	res, err := Fetch(ctx, lis.Addr().String(), &corev3.Node{Id: "web-1.shop"}, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if res.ClusterVersion != "v1" || res.ListenerVersion != "v1" || len(res.Clusters) != 1 || len(res.Listeners) != 1 {
		t.Fatalf("got versions %q/%q, %d clusters, %d listeners; want v1/v1, 1, 1", res.ClusterVersion, res.ListenerVersion, len(res.Clusters), len(res.Listeners))
	}
	got := Summary(res.Listeners)
	want := "listener inbound on 0.0.0.0:10001\n  chain inbound|8080           match port 8080        -> cluster inbound|8080\n"
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("summary (-want +got):\n%s", diff)
	}

	// A node the server has no snapshot for gets no answer: Fetch gives up
	// after its timeout instead of hanging.
	if _, err := Fetch(ctx, lis.Addr().String(), &corev3.Node{Id: "unknown.node"}, 300*time.Millisecond); err == nil || !strings.Contains(err.Error(), "no response within 300ms") {
		t.Fatalf("fetch for an unknown node: error %v, want no response within 300ms", err)
	}
}
