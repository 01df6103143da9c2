package xds

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"google.golang.org/protobuf/proto"

	"github.com/sidecar-injector/sidecar-injector/envoy"
	"github.com/sidecar-injector/sidecar-injector/envoy/nodemeta"
)

// Default proxy ports (DESIGN.md), used for nodes whose metadata is missing
// or unusable.
const (
	DefaultInboundPort  = 10001
	DefaultOutboundPort = 10002
	DefaultStatsPort    = 10090
)

// NodeInfo is the config-relevant part of a node's metadata: everything the
// snapshot depends on and nothing else (not the pod name, IP or config hash),
// so that pods with the same ports share one snapshot.
type NodeInfo struct {
	InboundPort  uint32
	OutboundPort uint32
	StatsPort    uint32
	AdminPort    uint32
	// AppPorts are the TCP app ports captured by the inbound listener:
	// declared, not excluded; sorted, without duplicates.
	AppPorts []uint32
	// IPv6 adds the [::] and [::1] listeners.
	IPv6 bool
}

// DefaultNodeInfo is the safe default for a node whose metadata is missing
// or malformed: the default proxy ports and no app ports, so every inbound
// connection goes through the passthrough to where it was going and the pod
// keeps working, with no per-port statistics.
func DefaultNodeInfo() NodeInfo {
	return NodeInfo{
		InboundPort:  DefaultInboundPort,
		OutboundPort: DefaultOutboundPort,
		StatsPort:    DefaultStatsPort,
		AdminPort:    envoy.DefaultAdminPort,
		IPv6:         true,
	}
}

// NodeInfoFromMetadata keeps what matters for the snapshot. md must have
// passed nodemeta.Metadata.Validate.
func NodeInfoFromMetadata(md nodemeta.Metadata) NodeInfo {
	n := NodeInfo{
		InboundPort:  md.InboundPort,
		OutboundPort: md.OutboundPort,
		StatsPort:    md.StatsPort,
		AdminPort:    md.AdminPort,
		IPv6:         md.IPv6 != nodemeta.IPv6Off,
	}
	for _, p := range md.AppPorts {
		if (p.Protocol == "" || p.Protocol == nodemeta.ProtocolTCP) && !slices.Contains(md.ExcludeInboundPorts, p.Port) {
			n.AppPorts = append(n.AppPorts, p.Port)
		}
	}
	slices.Sort(n.AppPorts)
	n.AppPorts = slices.Compact(n.AppPorts)
	return n
}

// Validate checks the ports the way nodemeta.Metadata.Validate does, for a
// NodeInfo built by hand.
func (n NodeInfo) Validate() error {
	proxy := []uint32{n.InboundPort, n.OutboundPort, n.StatsPort, n.AdminPort}
	for _, p := range proxy {
		if p == 0 || p > 65535 {
			return fmt.Errorf("node: proxy port %d: want 1-65535", p)
		}
	}
	if len(slices.Compact(slices.Sorted(slices.Values(proxy)))) != len(proxy) {
		return fmt.Errorf("node: proxy ports %v: inbound, outbound, stats and admin must differ", proxy)
	}
	if !slices.IsSorted(n.AppPorts) || len(slices.Compact(slices.Clone(n.AppPorts))) != len(n.AppPorts) {
		return errors.New("node: app ports must be sorted and unique (use NodeInfoFromMetadata)")
	}
	for _, p := range n.AppPorts {
		if p == 0 || p > 65535 {
			return fmt.Errorf("node: app port %d: want 1-65535", p)
		}
		if slices.Contains(proxy, p) {
			return fmt.Errorf("node: app port %d is also a proxy port", p)
		}
	}
	return nil
}

// Key identifies the snapshot of n: nodes with equal NodeInfo have equal
// keys and share one snapshot.
func (n NodeInfo) Key() string {
	buf := make([]byte, 0, 4*(6+len(n.AppPorts)))
	ipv6 := uint32(0)
	if n.IPv6 {
		ipv6 = 1
	}
	for _, v := range []uint32{n.InboundPort, n.OutboundPort, n.StatsPort, n.AdminPort, ipv6, uint32(len(n.AppPorts))} {
		buf = binary.BigEndian.AppendUint32(buf, v)
	}
	for _, p := range n.AppPorts {
		buf = binary.BigEndian.AppendUint32(buf, p)
	}
	sum := sha256.Sum256(buf)
	return "node-" + hex.EncodeToString(sum[:10])
}

// Reasons a node got the default snapshot; the values of the invalid
// metadata metric's reason label.
const (
	ReasonMissing     = "missing"
	ReasonUnsupported = "unsupported_version"
	ReasonMalformed   = "malformed"
	ReasonOversized   = "oversized"
	// ReasonForeignPodIP: the metadata's podIP is not the stream's peer
	// (the node is refused, not served the default).
	ReasonForeignPodIP = "foreign_pod_ip"
)

// ResolveNode reads a node's metadata. It never fails: a node with missing or
// unusable metadata gets DefaultNodeInfo, and reason and err say why.
func ResolveNode(node *corev3.Node) (info NodeInfo, reason string, err error) {
	if n := proto.Size(node.GetMetadata()); n > nodemeta.MaxMetadataBytes {
		return DefaultNodeInfo(), ReasonOversized, fmt.Errorf("%w: %d bytes, at most %d are read", nodemeta.ErrMetadataTooLarge, n, nodemeta.MaxMetadataBytes)
	}
	return resolved(envoy.ParseNodeMetadata(node.GetMetadata()))
}

// resolved is the NodeInfo of parsed metadata, or the default and why.
func resolved(md nodemeta.Metadata, err error) (info NodeInfo, reason string, _ error) {
	if err != nil {
		switch {
		case errors.Is(err, nodemeta.ErrMetadataMissing):
			reason = ReasonMissing
		case errors.Is(err, nodemeta.ErrMetadataVersion):
			reason = ReasonUnsupported
		default:
			reason = ReasonMalformed
		}
		return DefaultNodeInfo(), reason, err
	}
	return NodeInfoFromMetadata(md), "", nil
}

// NodeHash groups nodes by their NodeInfo key, not their id.
type NodeHash struct{}

// ID is the key of the node's snapshot.
func (NodeHash) ID(node *corev3.Node) string {
	info, _, _ := ResolveNode(node)
	return info.Key()
}
