package xds

import (
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"strconv"
	"time"

	accesslogv3 "github.com/envoyproxy/go-control-plane/envoy/config/accesslog/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	streamv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/access_loggers/stream/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	originaldstv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/listener/original_dst/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tcpproxyv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/sidecar-injector/sidecar-injector/envoy"
)

// Names of the resources a snapshot holds.
const (
	ListenerInbound      = "inbound"
	ListenerInboundIPv6  = "inbound-ipv6"
	ListenerOutbound     = "outbound"
	ListenerOutboundIPv6 = "outbound-ipv6"
	ListenerStats        = "stats"
	ListenerStatsIPv6    = "stats-ipv6"

	ClusterBlackhole = "blackhole"
	// ClusterAdmin is the proxy's own admin interface at the node's admin
	// port, which moves when the app uses the default one; the stats
	// listener routes to it.
	ClusterAdmin               = "proxy|admin"
	ClusterInboundPassthrough  = "inbound|passthrough"
	ClusterOutboundPassthrough = "outbound|passthrough"
)

// Paths the stats listener forwards to the admin interface; nothing else of
// the admin interface is reachable from outside the pod.
const (
	StatsPath = "/stats/prometheus"
	ReadyPath = "/ready"
)

// InboundCluster is the name of the cluster of an app port.
func InboundCluster(port uint32) string { return "inbound|" + strconv.FormatUint(uint64(port), 10) }

// Filter and extension names Envoy knows them by.
const (
	nameOriginalDst = "envoy.filters.listener.original_dst"
	nameTCPProxy    = "envoy.filters.network.tcp_proxy"
	nameHCM         = "envoy.filters.network.http_connection_manager"
	nameRouter      = "envoy.filters.http.router"
	nameStdoutLog   = "envoy.access_loggers.stdout"
)

const defaultTextLog = "[%START_TIME%] %DOWNSTREAM_REMOTE_ADDRESS% -> %DOWNSTREAM_LOCAL_ADDRESS% " +
	"%UPSTREAM_CLUSTER% %UPSTREAM_HOST% %DURATION%ms rx=%BYTES_RECEIVED% tx=%BYTES_SENT% " +
	"flags=%RESPONSE_FLAGS% %CONNECTION_TERMINATION_DETAILS%\n"

// jsonLogFields are the keys of the json access log.
var jsonLogFields = map[string]string{
	"start_time":          "%START_TIME%",
	"duration_ms":         "%DURATION%",
	"downstream_remote":   "%DOWNSTREAM_REMOTE_ADDRESS%",
	"downstream_local":    "%DOWNSTREAM_LOCAL_ADDRESS%",
	"upstream_cluster":    "%UPSTREAM_CLUSTER%",
	"upstream_host":       "%UPSTREAM_HOST%",
	"bytes_received":      "%BYTES_RECEIVED%",
	"bytes_sent":          "%BYTES_SENT%",
	"response_flags":      "%RESPONSE_FLAGS%",
	"termination_details": "%CONNECTION_TERMINATION_DETAILS%",
}

// BuildSnapshot builds the listeners and clusters of one node. It is pure
// and deterministic: the same input gives equal resources and the same
// versions, each the content hash of its type's resources. Every resource
// passes envoy.ValidateDeep and the snapshot passes Consistent.
func BuildSnapshot(node NodeInfo, mesh MeshSettings) (*cache.Snapshot, error) {
	return buildSnapshot(node, mesh, nil)
}

// buildSnapshot is BuildSnapshot with its resources shared, through in,
// with every other snapshot holding equal ones (nil: none shared).
func buildSnapshot(node NodeInfo, mesh MeshSettings, in *interner) (*cache.Snapshot, error) {
	if err := node.Validate(); err != nil {
		return nil, fmt.Errorf("build snapshot: %w", err)
	}
	if err := mesh.Validate(); err != nil {
		return nil, fmt.Errorf("build snapshot: %w", err)
	}
	b := builder{node: node, mesh: mesh}
	clusters, err := b.clusters()
	if err != nil {
		return nil, fmt.Errorf("build snapshot clusters: %w", err)
	}
	listeners, err := b.listeners()
	if err != nil {
		return nil, fmt.Errorf("build snapshot listeners: %w", err)
	}
	snap := &cache.Snapshot{}
	for _, typed := range []struct {
		t   types.ResponseType
		res []types.Resource
	}{{types.Cluster, clusters}, {types.Listener, listeners}} {
		version, err := contentVersion(typed.res, in)
		if err != nil {
			return nil, fmt.Errorf("build snapshot: %w", err)
		}
		snap.Resources[typed.t] = cache.NewResources(version, typed.res)
	}
	if err := snap.Consistent(); err != nil {
		return nil, fmt.Errorf("build snapshot: inconsistent: %w", err)
	}
	return snap, nil
}

// contentVersion hashes the deterministic encoding of resources (in order,
// with their names): equal resources, equal version. With an interner,
// each resource is replaced by the shared copy of an equal one, which was
// validated when it was first built: of the resources of thousands of
// distinct groups, only what differs is validated (it was half of the
// server's CPU for 10,000 distinct groups).
func contentVersion(res []types.Resource, in *interner) (string, error) {
	h := sha256.New()
	for i, r := range res {
		name := cache.GetResourceName(r)
		b, err := proto.MarshalOptions{Deterministic: true}.Marshal(r)
		if err != nil {
			return "", fmt.Errorf("encode resource %q: %w", name, err)
		}
		fmt.Fprintf(h, "%s\x00%d\x00", name, len(b))
		h.Write(b)
		var key [sha256.Size]byte
		if in != nil {
			rh := sha256.New()
			fmt.Fprintf(rh, "%s\x00", name)
			rh.Write(b)
			key = [sha256.Size]byte(rh.Sum(nil))
			if shared := in.resources.lookup(key); shared != nil {
				res[i] = shared
				continue
			}
		}
		if err := envoy.ValidateDeep(r); err != nil {
			return "", fmt.Errorf("resource %q: %w", name, err)
		}
		if in != nil {
			res[i] = in.intern(key, r, b)
		}
	}
	return hex.EncodeToString(h.Sum(nil)[:8]), nil
}

type builder struct {
	node NodeInfo
	mesh MeshSettings
}

// clusters: blackhole, the two passthroughs and one per app port, by name.
func (b builder) clusters() ([]types.Resource, error) {
	out := []*clusterv3.Cluster{
		{
			Name:                 ClusterBlackhole,
			ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STATIC},
			ConnectTimeout:       durationpb.New(b.mesh.ConnectTimeout.Duration),
		},
		b.originalDst(ClusterInboundPassthrough),
		b.originalDst(ClusterOutboundPassthrough),
		b.withLimits(&clusterv3.Cluster{
			Name:                 ClusterAdmin,
			ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STATIC},
			ConnectTimeout:       durationpb.New(b.mesh.ConnectTimeout.Duration),
			LoadAssignment: &endpointv3.ClusterLoadAssignment{
				ClusterName: ClusterAdmin,
				Endpoints: []*endpointv3.LocalityLbEndpoints{{
					LbEndpoints: []*endpointv3.LbEndpoint{{
						HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{
							Address: socketAddress("127.0.0.1", b.node.AdminPort),
						}},
					}},
				}},
			},
		}),
	}
	for _, p := range b.node.AppPorts {
		name := InboundCluster(p)
		if b.mesh.InboundUpstream == UpstreamPodIP {
			out = append(out, b.originalDst(name))
			continue
		}
		c := b.withLimits(&clusterv3.Cluster{
			Name:                 name,
			ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STATIC},
			ConnectTimeout:       durationpb.New(b.mesh.ConnectTimeout.Duration),
			LoadAssignment: &endpointv3.ClusterLoadAssignment{
				ClusterName: name,
				Endpoints: []*endpointv3.LocalityLbEndpoints{{
					LbEndpoints: []*endpointv3.LbEndpoint{{
						HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{
							Address: socketAddress("127.0.0.1", p),
						}},
					}},
				}},
			},
		})
		out = append(out, c)
	}
	slices.SortFunc(out, func(x, y *clusterv3.Cluster) int { return cmp.Compare(x.GetName(), y.GetName()) })
	res := make([]types.Resource, len(out))
	for i, c := range out {
		res[i] = c
	}
	return res, nil
}

func (b builder) originalDst(name string) *clusterv3.Cluster {
	return b.withLimits(&clusterv3.Cluster{
		Name:                 name,
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_ORIGINAL_DST},
		LbPolicy:             clusterv3.Cluster_CLUSTER_PROVIDED,
		ConnectTimeout:       durationpb.New(b.mesh.ConnectTimeout.Duration),
	})
}

func (b builder) withLimits(c *clusterv3.Cluster) *clusterv3.Cluster {
	cb := b.mesh.CircuitBreakers
	c.CircuitBreakers = &clusterv3.CircuitBreakers{Thresholds: []*clusterv3.CircuitBreakers_Thresholds{{
		Priority:           corev3.RoutingPriority_DEFAULT,
		MaxConnections:     wrapperspb.UInt32(cb.MaxConnections),
		MaxPendingRequests: wrapperspb.UInt32(cb.MaxPendingRequests),
		MaxRequests:        wrapperspb.UInt32(cb.MaxRequests),
		MaxRetries:         wrapperspb.UInt32(cb.MaxRetries),
	}}}
	return c
}

// ownPorts are the proxy's own ports, sorted: the blackhole chains.
func (b builder) ownPorts() []uint32 {
	return slices.Sorted(slices.Values([]uint32{b.node.InboundPort, b.node.OutboundPort, b.node.StatsPort, b.node.AdminPort}))
}

// listeners: inbound, outbound and stats, with their IPv6 twins unless the
// pod has IPv6 off.
func (b builder) listeners() ([]types.Resource, error) {
	inboundChains, err := b.inboundChains()
	if err != nil {
		return nil, err
	}
	inboundDefault, err := b.tcpChain(ClusterInboundPassthrough, ClusterInboundPassthrough, nil)
	if err != nil {
		return nil, err
	}
	outboundChains, err := b.blackholeChains(true)
	if err != nil {
		return nil, err
	}
	outboundDefault, err := b.tcpChain(ClusterOutboundPassthrough, ClusterOutboundPassthrough, nil)
	if err != nil {
		return nil, err
	}
	statsChain, err := b.statsChain()
	if err != nil {
		return nil, err
	}
	originalDst, err := typedConfig(&originaldstv3.OriginalDst{})
	if err != nil {
		return nil, err
	}
	redirected := func(name, addr string, port uint32, dir corev3.TrafficDirection, chains []*listenerv3.FilterChain, def *listenerv3.FilterChain) *listenerv3.Listener {
		return &listenerv3.Listener{
			Name:             name,
			Address:          socketAddress(addr, port),
			TrafficDirection: dir,
			ListenerFilters: []*listenerv3.ListenerFilter{{
				Name:       nameOriginalDst,
				ConfigType: &listenerv3.ListenerFilter_TypedConfig{TypedConfig: originalDst},
			}},
			FilterChains:       chains,
			DefaultFilterChain: def,
		}
	}
	stats := func(name, addr string) *listenerv3.Listener {
		return &listenerv3.Listener{
			Name:             name,
			Address:          socketAddress(addr, b.node.StatsPort),
			TrafficDirection: corev3.TrafficDirection_INBOUND,
			FilterChains:     []*listenerv3.FilterChain{statsChain},
		}
	}
	out := []*listenerv3.Listener{
		redirected(ListenerInbound, "0.0.0.0", b.node.InboundPort, corev3.TrafficDirection_INBOUND, inboundChains, inboundDefault),
		redirected(ListenerOutbound, "127.0.0.1", b.node.OutboundPort, corev3.TrafficDirection_OUTBOUND, outboundChains, outboundDefault),
		stats(ListenerStats, "0.0.0.0"),
	}
	if b.node.IPv6 {
		out = append(out,
			redirected(ListenerInboundIPv6, "::", b.node.InboundPort, corev3.TrafficDirection_INBOUND, inboundChains, inboundDefault),
			redirected(ListenerOutboundIPv6, "::1", b.node.OutboundPort, corev3.TrafficDirection_OUTBOUND, outboundChains, outboundDefault),
			stats(ListenerStatsIPv6, "::"),
		)
	}
	slices.SortFunc(out, func(x, y *listenerv3.Listener) int { return cmp.Compare(x.GetName(), y.GetName()) })
	res := make([]types.Resource, len(out))
	for i, l := range out {
		res[i] = l
	}
	return res, nil
}

// inboundChains: the blackhole chains, then one chain per app port.
func (b builder) inboundChains() ([]*listenerv3.FilterChain, error) {
	chains, err := b.blackholeChains(false)
	if err != nil {
		return nil, err
	}
	for _, p := range b.node.AppPorts {
		c, err := b.tcpChain(InboundCluster(p), InboundCluster(p), &listenerv3.FilterChainMatch{DestinationPort: wrapperspb.UInt32(p)})
		if err != nil {
			return nil, err
		}
		chains = append(chains, c)
	}
	return chains, nil
}

// blackholeChains close connections to the proxy's own ports, which would
// otherwise make Envoy dial itself. On the outbound listener only loopback
// destinations are the proxy's: a remote service on port 10001 stays
// reachable through the passthrough.
func (b builder) blackholeChains(loopbackOnly bool) ([]*listenerv3.FilterChain, error) {
	var chains []*listenerv3.FilterChain
	for _, p := range b.ownPorts() {
		m := &listenerv3.FilterChainMatch{DestinationPort: wrapperspb.UInt32(p)}
		if loopbackOnly {
			m.PrefixRanges = []*corev3.CidrRange{
				{AddressPrefix: "127.0.0.0", PrefixLen: wrapperspb.UInt32(8)},
				{AddressPrefix: "::1", PrefixLen: wrapperspb.UInt32(128)},
			}
		}
		c, err := b.tcpChain(ClusterBlackhole+"|"+strconv.FormatUint(uint64(p), 10), ClusterBlackhole, m)
		if err != nil {
			return nil, err
		}
		chains = append(chains, c)
	}
	return chains, nil
}

// tcpChain is a filter chain with one tcp_proxy to cluster, with the mesh's
// idle timeout and access log.
func (b builder) tcpChain(name, cluster string, match *listenerv3.FilterChainMatch) (*listenerv3.FilterChain, error) {
	tp := &tcpproxyv3.TcpProxy{
		StatPrefix:       cluster,
		ClusterSpecifier: &tcpproxyv3.TcpProxy_Cluster{Cluster: cluster},
		IdleTimeout:      durationpb.New(b.mesh.IdleTimeout.Duration),
	}
	if b.mesh.AccessLog.Enabled {
		al, err := b.accessLog()
		if err != nil {
			return nil, err
		}
		tp.AccessLog = []*accesslogv3.AccessLog{al}
	}
	cfg, err := typedConfig(tp)
	if err != nil {
		return nil, err
	}
	return &listenerv3.FilterChain{
		Name:             name,
		FilterChainMatch: match,
		Filters: []*listenerv3.Filter{{
			Name:       nameTCPProxy,
			ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: cfg},
		}},
	}, nil
}

func (b builder) accessLog() (*accesslogv3.AccessLog, error) {
	var format *corev3.SubstitutionFormatString
	switch b.mesh.AccessLog.Format {
	case AccessLogJSON:
		fields := make(map[string]any, len(jsonLogFields))
		for k, v := range jsonLogFields {
			fields[k] = v
		}
		s, err := structpb.NewStruct(fields)
		if err != nil {
			return nil, fmt.Errorf("json access log format: %w", err)
		}
		format = &corev3.SubstitutionFormatString{Format: &corev3.SubstitutionFormatString_JsonFormat{JsonFormat: s}}
	default:
		text := b.mesh.AccessLog.TextFormat
		if text == "" {
			text = defaultTextLog
		} else if text[len(text)-1] != '\n' {
			text += "\n"
		}
		format = &corev3.SubstitutionFormatString{Format: &corev3.SubstitutionFormatString_TextFormatSource{
			TextFormatSource: &corev3.DataSource{Specifier: &corev3.DataSource_InlineString{InlineString: text}},
		}}
	}
	cfg, err := typedConfig(&streamv3.StdoutAccessLog{AccessLogFormat: &streamv3.StdoutAccessLog_LogFormat{LogFormat: format}})
	if err != nil {
		return nil, err
	}
	return &accesslogv3.AccessLog{Name: nameStdoutLog, ConfigType: &accesslogv3.AccessLog_TypedConfig{TypedConfig: cfg}}, nil
}

// statsChain serves /stats/prometheus and /ready from the admin interface
// (at the node's admin port, ClusterAdmin) and 404 for everything else.
func (b builder) statsChain() (*listenerv3.FilterChain, error) {
	router, err := typedConfig(&routerv3.Router{})
	if err != nil {
		return nil, err
	}
	toAdmin := func(path string) *routev3.Route {
		return &routev3.Route{
			Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Path{Path: path}},
			Action: &routev3.Route_Route{Route: &routev3.RouteAction{
				ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: ClusterAdmin},
				Timeout:          durationpb.New(10 * time.Second),
			}},
		}
	}
	hcm, err := typedConfig(&hcmv3.HttpConnectionManager{
		StatPrefix: ListenerStats,
		CodecType:  hcmv3.HttpConnectionManager_AUTO,
		RouteSpecifier: &hcmv3.HttpConnectionManager_RouteConfig{RouteConfig: &routev3.RouteConfiguration{
			Name: ListenerStats,
			VirtualHosts: []*routev3.VirtualHost{{
				Name:    ListenerStats,
				Domains: []string{"*"},
				Routes:  []*routev3.Route{toAdmin(StatsPath), toAdmin(ReadyPath)},
			}},
		}},
		HttpFilters: []*hcmv3.HttpFilter{{
			Name:       nameRouter,
			ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: router},
		}},
	})
	if err != nil {
		return nil, err
	}
	return &listenerv3.FilterChain{
		Name: ListenerStats,
		Filters: []*listenerv3.Filter{{
			Name:       nameHCM,
			ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: hcm},
		}},
	}, nil
}

func socketAddress(addr string, port uint32) *corev3.Address {
	return &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
		Protocol:      corev3.SocketAddress_TCP,
		Address:       addr,
		PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: port},
	}}}
}

// typedConfig packs m deterministically, so that map fields (the JSON access
// log format) give the same bytes and the same version every time.
func typedConfig(m proto.Message) (*anypb.Any, error) {
	a := &anypb.Any{}
	if err := anypb.MarshalFrom(a, m, proto.MarshalOptions{Deterministic: true}); err != nil {
		return nil, fmt.Errorf("pack %s: %w", m.ProtoReflect().Descriptor().FullName(), err)
	}
	return a, nil
}

// TypeName is the short, bounded name of an xDS type URL for metric labels
// and logs: cds, lds, eds, rds, sds or other.
func TypeName(typeURL string) string {
	switch typeURL {
	case resource.ClusterType:
		return "cds"
	case resource.ListenerType:
		return "lds"
	case resource.EndpointType:
		return "eds"
	case resource.RouteType:
		return "rds"
	case resource.SecretType:
		return "sds"
	}
	return "other"
}
