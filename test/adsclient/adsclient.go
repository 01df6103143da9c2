// Package adsclient asks an xDS server, over ADS (gRPC, state of the world),
// for what it serves one injected pod's Envoy: it takes the node (id,
// cluster, metadata) from the pod's envoy container the way the kubelet and
// Envoy would, then requests CDS and LDS on one stream like Envoy does.
// `make demo` and the e2e tests use it; no Envoy binary is needed.
package adsclient

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	tcpproxyv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"
)

// ProxyContainerName is the injected Envoy's container name (DESIGN.md).
const ProxyContainerName = "envoy"

// NodeFromPod builds the Envoy node an injected pod's proxy would report: it
// reads the envoy container's --config-yaml overlay and expands $(VAR)
// references to the container's environment as the kubelet does, resolving
// downward-API fields from the pod. A pod without a node IP (nothing runs
// pods here) expands status.podIP to the empty string.
func NodeFromPod(pod *corev1.Pod) (*corev3.Node, error) {
	c := findProxy(pod)
	if c == nil {
		return nil, fmt.Errorf("pod %s/%s has no %q container or init container: is it injected?", pod.Namespace, pod.Name, ProxyContainerName)
	}
	overlay, ok := configYAMLArg(append(append([]string{}, c.Command...), c.Args...))
	if !ok {
		return nil, fmt.Errorf("pod %s/%s: the %s container has no --config-yaml argument carrying the node", pod.Namespace, pod.Name, ProxyContainerName)
	}
	env, err := containerEnv(pod, c)
	if err != nil {
		return nil, err
	}
	return ParseOverlay(Expand(overlay, env))
}

// ParseOverlay reads a --config-yaml overlay (YAML or JSON) into the node.
func ParseOverlay(overlay string) (*corev3.Node, error) {
	var o struct {
		Node *struct {
			ID       string         `json:"id"`
			Cluster  string         `json:"cluster"`
			Metadata map[string]any `json:"metadata"`
		} `json:"node"`
	}
	if err := yaml.Unmarshal([]byte(overlay), &o); err != nil {
		return nil, fmt.Errorf("envoy --config-yaml: not YAML: %w", err)
	}
	if o.Node == nil || o.Node.ID == "" {
		return nil, errors.New("envoy --config-yaml: no node.id")
	}
	node := &corev3.Node{Id: o.Node.ID, Cluster: o.Node.Cluster}
	if o.Node.Metadata != nil {
		md, err := structpb.NewStruct(o.Node.Metadata)
		if err != nil {
			return nil, fmt.Errorf("envoy --config-yaml: node.metadata: %w", err)
		}
		node.Metadata = md
	}
	return node, nil
}

func findProxy(pod *corev1.Pod) *corev1.Container {
	for _, list := range [][]corev1.Container{pod.Spec.InitContainers, pod.Spec.Containers} {
		for i := range list {
			if list[i].Name == ProxyContainerName {
				return &list[i]
			}
		}
	}
	return nil
}

// configYAMLArg finds "--config-yaml X" or "--config-yaml=X".
func configYAMLArg(args []string) (string, bool) {
	for i, a := range args {
		switch {
		case a == "--config-yaml" && i+1 < len(args):
			return args[i+1], true
		case strings.HasPrefix(a, "--config-yaml="):
			return strings.TrimPrefix(a, "--config-yaml="), true
		}
	}
	return "", false
}

// containerEnv resolves the container's literal and downward-API variables.
func containerEnv(pod *corev1.Pod, c *corev1.Container) (map[string]string, error) {
	env := map[string]string{}
	for _, e := range c.Env {
		switch {
		case e.ValueFrom == nil:
			env[e.Name] = Expand(e.Value, env)
		case e.ValueFrom.FieldRef != nil:
			v, err := fieldValue(pod, e.ValueFrom.FieldRef.FieldPath)
			if err != nil {
				return nil, fmt.Errorf("env %s: %w", e.Name, err)
			}
			env[e.Name] = v
		}
	}
	return env, nil
}

func fieldValue(pod *corev1.Pod, path string) (string, error) {
	switch path {
	case "metadata.name":
		return pod.Name, nil
	case "metadata.namespace":
		return pod.Namespace, nil
	case "metadata.uid":
		return string(pod.UID), nil
	case "spec.nodeName":
		return pod.Spec.NodeName, nil
	case "spec.serviceAccountName":
		return pod.Spec.ServiceAccountName, nil
	case "status.podIP":
		return pod.Status.PodIP, nil
	case "status.hostIP":
		return pod.Status.HostIP, nil
	}
	return "", fmt.Errorf("downward-API field %q is not supported here", path)
}

// Expand replaces $(NAME) with env[NAME] the way the kubelet expands
// container args: $$ is a literal $, and unknown names stay as they are.
func Expand(s string, env map[string]string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '$' || i+1 >= len(s) {
			b.WriteByte(s[i])
			continue
		}
		switch s[i+1] {
		case '$':
			b.WriteByte('$')
			i++
		case '(':
			end := strings.IndexByte(s[i+2:], ')')
			if end < 0 {
				b.WriteString(s[i:])
				return b.String()
			}
			name := s[i+2 : i+2+end]
			if v, ok := env[name]; ok {
				b.WriteString(v)
			} else {
				b.WriteString(s[i : i+3+end])
			}
			i += 2 + end
		default:
			b.WriteByte('$')
		}
	}
	return b.String()
}

// Resources is what the server sent one node.
type Resources struct {
	Clusters         []*clusterv3.Cluster
	Listeners        []*listenerv3.Listener
	ClusterVersion   string
	ListenerVersion  string
	ClusterResponse  time.Duration // time to the CDS response
	ListenerResponse time.Duration // time to the LDS response
}

// Fetch opens one ADS stream to addr (host:port, plaintext gRPC on
// loopback), requests CDS then LDS for node, ACKs both and closes. It waits
// at most timeout for each response.
func Fetch(ctx context.Context, addr string, node *corev3.Node, timeout time.Duration) (Resources, error) {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return Resources{}, fmt.Errorf("ads %s: %w", addr, err)
	}
	defer conn.Close()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := discoveryv3.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(ctx)
	if err != nil {
		return Resources{}, fmt.Errorf("ads %s: open stream: %w", addr, err)
	}
	var res Resources
	for i, typeURL := range []string{resourcev3.ClusterType, resourcev3.ListenerType} {
		req := &discoveryv3.DiscoveryRequest{TypeUrl: typeURL}
		if i == 0 {
			req.Node = node
		}
		start := time.Now()
		if err := stream.Send(req); err != nil {
			return Resources{}, fmt.Errorf("ads %s: request %s: %w", addr, typeURL, err)
		}
		resp, err := recvType(stream, typeURL, timeout, cancel)
		if err != nil {
			return Resources{}, fmt.Errorf("ads %s: %s for node %q: %w", addr, typeURL, node.GetId(), err)
		}
		took := time.Since(start)
		for _, a := range resp.GetResources() {
			var m proto.Message
			switch typeURL {
			case resourcev3.ClusterType:
				c := &clusterv3.Cluster{}
				res.Clusters, m = append(res.Clusters, c), c
			default:
				l := &listenerv3.Listener{}
				res.Listeners, m = append(res.Listeners, l), l
			}
			if err := a.UnmarshalTo(m); err != nil {
				return Resources{}, fmt.Errorf("ads %s: decode %s: %w", addr, a.GetTypeUrl(), err)
			}
		}
		if typeURL == resourcev3.ClusterType {
			res.ClusterVersion, res.ClusterResponse = resp.GetVersionInfo(), took
		} else {
			res.ListenerVersion, res.ListenerResponse = resp.GetVersionInfo(), took
		}
		ack := &discoveryv3.DiscoveryRequest{TypeUrl: typeURL, VersionInfo: resp.GetVersionInfo(), ResponseNonce: resp.GetNonce()}
		if err := stream.Send(ack); err != nil {
			return Resources{}, fmt.Errorf("ads %s: ack %s: %w", addr, typeURL, err)
		}
	}
	_ = stream.CloseSend()
	return res, nil
}

// recvType waits for the next response of typeURL, at most timeout.
func recvType(stream discoveryv3.AggregatedDiscoveryService_StreamAggregatedResourcesClient, typeURL string, timeout time.Duration, cancel context.CancelFunc) (*discoveryv3.DiscoveryResponse, error) {
	timer := time.AfterFunc(timeout, cancel)
	defer timer.Stop()
	for range 16 {
		resp, err := stream.Recv()
		if err != nil {
			if !timer.Stop() {
				return nil, fmt.Errorf("no response within %s: %w", timeout, err)
			}
			return nil, err
		}
		if resp.GetTypeUrl() == typeURL {
			return resp, nil
		}
	}
	return nil, errors.New("16 responses of other types and none of the requested one")
}

// Summary describes listeners in a few lines each: address, and each filter
// chain's match and where its TCP proxy sends traffic.
func Summary(listeners []*listenerv3.Listener) string {
	ls := append([]*listenerv3.Listener(nil), listeners...)
	sort.Slice(ls, func(i, j int) bool { return ls[i].GetName() < ls[j].GetName() })
	var b strings.Builder
	for _, l := range ls {
		fmt.Fprintf(&b, "listener %s on %s", l.GetName(), addressString(l.GetAddress()))
		for _, a := range l.GetAdditionalAddresses() {
			fmt.Fprintf(&b, ", %s", addressString(a.GetAddress()))
		}
		b.WriteString("\n")
		chains := l.GetFilterChains()
		if dc := l.GetDefaultFilterChain(); dc != nil {
			chains = append(append([]*listenerv3.FilterChain(nil), chains...), dc)
		}
		for _, fc := range chains {
			match := "any"
			if m := fc.GetFilterChainMatch(); m != nil {
				var parts []string
				if p := m.GetDestinationPort(); p != nil {
					parts = append(parts, fmt.Sprintf("port %d", p.GetValue()))
				}
				for _, r := range m.GetPrefixRanges() {
					parts = append(parts, fmt.Sprintf("%s/%d", r.GetAddressPrefix(), r.GetPrefixLen().GetValue()))
				}
				if len(parts) > 0 {
					match = strings.Join(parts, " ")
				}
			}
			if fc == l.GetDefaultFilterChain() {
				match = "default"
			}
			fmt.Fprintf(&b, "  chain %-22s match %-16s -> %s\n", quoteEmpty(fc.GetName()), match, chainTarget(fc))
		}
	}
	return b.String()
}

func quoteEmpty(s string) string {
	if s == "" {
		return `""`
	}
	return s
}

func chainTarget(fc *listenerv3.FilterChain) string {
	var out []string
	for _, f := range fc.GetFilters() {
		tp := &tcpproxyv3.TcpProxy{}
		if f.GetTypedConfig() != nil && f.GetTypedConfig().MessageIs(tp) && f.GetTypedConfig().UnmarshalTo(tp) == nil {
			out = append(out, "cluster "+tp.GetCluster())
			continue
		}
		out = append(out, f.GetName())
	}
	if len(out) == 0 {
		return "(no filters)"
	}
	return strings.Join(out, ", ")
}

func addressString(a *corev3.Address) string {
	if sa := a.GetSocketAddress(); sa != nil {
		host := sa.GetAddress()
		if strings.Contains(host, ":") {
			host = "[" + host + "]"
		}
		return fmt.Sprintf("%s:%d", host, sa.GetPortValue())
	}
	b, _ := json.Marshal(a)
	return string(b)
}
