// Package envoy holds what every injected Envoy is started with: the
// bootstrap (the envoy-config ConfigMap) and the per-pod --config-yaml
// overlay carrying the node id and the node metadata, plus the strict parser
// the xDS server reads that metadata back with.
package envoy

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"slices"
	"strings"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/structpb"
)

// MetadataVersion is the schema version of NodeMetadata. The xDS server
// refuses (with a safe default snapshot and a clear log line) metadata of a
// version it does not know.
const MetadataVersion = "v1"

// Downward-API variables the injected envoy container defines; the kubelet
// expands $(NAME) references to them in the container's args.
const (
	EnvPodName      = "POD_NAME"
	EnvPodNamespace = "POD_NAMESPACE"
	EnvPodIP        = "POD_IP"
)

// NodeID is the node id every injected Envoy reports: "$(POD_NAME).$(POD_NAMESPACE)",
// expanded by the kubelet.
const NodeID = "$(" + EnvPodName + ").$(" + EnvPodNamespace + ")"

// NodeCluster is the node cluster: the pod's namespace.
const NodeCluster = "$(" + EnvPodNamespace + ")"

// PodIPRef is the value of NodeMetadata.PodIP in the overlay: the kubelet
// expands it from the POD_IP environment variable of the envoy container.
const PodIPRef = "$(" + EnvPodIP + ")"

// Protocols of AppPort. Only TCP ports are proxied.
const (
	ProtocolTCP  = "TCP"
	ProtocolUDP  = "UDP"
	ProtocolSCTP = "SCTP"
)

// IPv6 modes of NodeMetadata.IPv6 (the pod's resolved sidecar.io/ipv6 setting).
const (
	IPv6Auto = "auto"
	IPv6On   = "on"
	IPv6Off  = "off"
)

// Limits of the metadata parser; a pod may declare many ports (RELIABILITY.md
// row 26), but the metadata of one node stays bounded.
const (
	MaxAppPorts      = 4096
	MaxExcludedPorts = 4096
	maxStringLen     = 256
)

// AppPort is a port an application container of the pod serves on.
type AppPort struct {
	Port     uint32 `json:"port"`
	Name     string `json:"name,omitempty"`
	Protocol string `json:"protocol,omitempty"` // TCP (default) or SCTP/UDP, which are not proxied
}

// NodeMetadata is what the injector tells the xDS server about a pod, through
// the Envoy node metadata. Every field the snapshot depends on is here, so the
// server needs no Kubernetes API access. JSON names are the metadata keys.
type NodeMetadata struct {
	Version string `json:"version"` // MetadataVersion

	// Proxy ports chosen for this pod (moved off the defaults on conflict).
	InboundPort  uint32 `json:"inboundPort"`
	OutboundPort uint32 `json:"outboundPort"`
	StatsPort    uint32 `json:"statsPort"`
	AdminPort    uint32 `json:"adminPort"`

	// AppPorts are the pod's declared container ports (TCP), sorted by port.
	AppPorts []AppPort `json:"appPorts,omitempty"`
	// ExcludeInboundPorts are never captured (settings and tcpSocket-probe-only ports).
	ExcludeInboundPorts []uint32 `json:"excludeInboundPorts,omitempty"`
	// PodIP is "$(POD_IP)", expanded by the kubelet; used when the mesh sends
	// inbound traffic to the pod IP instead of loopback.
	PodIP string `json:"podIP,omitempty"`
	// IPv6 is the pod's sidecar.io/ipv6 setting (auto|on|off; empty means
	// auto): with "off" the xDS server serves no IPv6 listeners.
	IPv6 string `json:"ipv6,omitempty"`

	ConfigHash      string `json:"configHash"`      // the injector config hash of the sidecar.io/status annotation
	InjectorVersion string `json:"injectorVersion"` // the injector build that made the pod
}

// Overlay is the per-pod bootstrap overlay given to Envoy with --config-yaml.
// It carries the node; Envoy merges it into the bootstrap file. It also
// carries the admin address, only for a pod whose app uses the bootstrap's
// admin port (the admin port then moves, like the other proxy ports).
type Overlay struct {
	Node  OverlayNode   `json:"node"`
	Admin *OverlayAdmin `json:"admin,omitempty"`
}

// OverlayAdmin moves the admin interface; it stays on 127.0.0.1.
type OverlayAdmin struct {
	Address struct {
		SocketAddress struct {
			Address   string `json:"address"`
			PortValue uint32 `json:"port_value"`
		} `json:"socket_address"`
	} `json:"address"`
}

// OverlayNode is the node section of the overlay.
type OverlayNode struct {
	ID       string       `json:"id"`
	Cluster  string       `json:"cluster"`
	Metadata NodeMetadata `json:"metadata"`
}

// RenderOverlay renders the --config-yaml value for a pod. It is JSON, which
// Envoy's YAML loader reads as is; keys are in a fixed order, so the same
// metadata always gives the same bytes.
func RenderOverlay(md NodeMetadata) (string, error) {
	return renderOverlay(Overlay{Node: OverlayNode{ID: NodeID, Cluster: NodeCluster, Metadata: md}})
}

// RenderOverlayMovedAdmin is RenderOverlay for a pod whose admin port is
// not the bootstrap's (bootstrapAdmin): the overlay also binds the admin
// interface to 127.0.0.1:md.AdminPort.
func RenderOverlayMovedAdmin(md NodeMetadata, bootstrapAdmin uint32) (string, error) {
	o := Overlay{Node: OverlayNode{ID: NodeID, Cluster: NodeCluster, Metadata: md}}
	if md.AdminPort != bootstrapAdmin {
		o.Admin = &OverlayAdmin{}
		o.Admin.Address.SocketAddress.Address = "127.0.0.1"
		o.Admin.Address.SocketAddress.PortValue = md.AdminPort
	}
	return renderOverlay(o)
}

func renderOverlay(o Overlay) (string, error) {
	b, err := json.Marshal(o)
	if err != nil {
		return "", fmt.Errorf("render envoy overlay: %w", err)
	}
	return string(b), nil
}

// MetadataStruct converts metadata into the google.protobuf.Struct Envoy
// sends as node metadata (what Envoy makes of the overlay's "metadata").
func MetadataStruct(md NodeMetadata) (*structpb.Struct, error) {
	b, err := json.Marshal(md)
	if err != nil {
		return nil, fmt.Errorf("encode node metadata: %w", err)
	}
	s := &structpb.Struct{}
	if err := protojson.Unmarshal(b, s); err != nil {
		return nil, fmt.Errorf("encode node metadata: %w", err)
	}
	return s, nil
}

// Errors of ParseNodeMetadata, for errors.Is; every returned error also says
// which key was wrong and what it should be.
var (
	// ErrMetadataMissing: the node has no metadata at all.
	ErrMetadataMissing = errors.New("node metadata missing")
	// ErrMetadataVersion: the metadata has a schema version this build does not know.
	ErrMetadataVersion = errors.New("unsupported node metadata version")
	// ErrMetadataInvalid: a key is unknown, of the wrong type, or out of range.
	ErrMetadataInvalid = errors.New("invalid node metadata")
)

// ParseNodeMetadata reads node metadata strictly: every key must be known and
// of the right type, ports integral and in 1-65535, and the result must pass
// NodeMetadata.Validate. It is the inverse of MetadataStruct.
func ParseNodeMetadata(s *structpb.Struct) (NodeMetadata, error) {
	if s == nil || len(s.GetFields()) == 0 {
		return NodeMetadata{}, fmt.Errorf("%w: the Envoy node has no metadata; the envoy container must be started with the --config-yaml overlay of the injector (re-inject the pod)", ErrMetadataMissing)
	}
	var md NodeMetadata
	p := parser{}
	// The version decides how the rest is read: check it first.
	if v, ok := s.GetFields()["version"]; ok {
		md.Version = p.str("version", v)
		if p.err != nil {
			return NodeMetadata{}, p.err
		}
		if md.Version != MetadataVersion {
			return NodeMetadata{}, fmt.Errorf("%w: version %q, this xDS server reads %q; run an xDS server as new as the injector that made the pod", ErrMetadataVersion, truncate(md.Version), MetadataVersion)
		}
	} else {
		return NodeMetadata{}, fmt.Errorf("%w: key \"version\" missing; want %q", ErrMetadataInvalid, MetadataVersion)
	}
	seen := map[string]bool{}
	for _, key := range sortedKeys(s.GetFields()) {
		v := s.GetFields()[key]
		seen[key] = true
		switch key {
		case "version":
		case "inboundPort":
			md.InboundPort = p.port(key, v)
		case "outboundPort":
			md.OutboundPort = p.port(key, v)
		case "statsPort":
			md.StatsPort = p.port(key, v)
		case "adminPort":
			md.AdminPort = p.port(key, v)
		case "appPorts":
			md.AppPorts = p.appPorts(key, v)
		case "excludeInboundPorts":
			md.ExcludeInboundPorts = p.ports(key, v, MaxExcludedPorts)
		case "podIP":
			md.PodIP = p.str(key, v)
		case "ipv6":
			md.IPv6 = p.str(key, v)
		case "configHash":
			md.ConfigHash = p.str(key, v)
		case "injectorVersion":
			md.InjectorVersion = p.str(key, v)
		default:
			p.fail("unknown key %q; known keys are those of envoy.NodeMetadata %s (an injector newer than this xDS server?)", truncate(key), MetadataVersion)
		}
		if p.err != nil {
			return NodeMetadata{}, p.err
		}
	}
	for _, key := range []string{"inboundPort", "outboundPort", "statsPort", "adminPort"} {
		if !seen[key] {
			return NodeMetadata{}, fmt.Errorf("%w: key %q missing; want a port 1-65535", ErrMetadataInvalid, key)
		}
	}
	if err := md.Validate(); err != nil {
		return NodeMetadata{}, err
	}
	return md, nil
}

// Validate checks the relations between the fields: distinct proxy ports, no
// app port on a proxy port, a pod IP that is an IP address.
func (md NodeMetadata) Validate() error {
	if md.Version != MetadataVersion {
		return fmt.Errorf("%w: version %q, want %q", ErrMetadataVersion, truncate(md.Version), MetadataVersion)
	}
	proxy := []struct {
		key  string
		port uint32
	}{{"inboundPort", md.InboundPort}, {"outboundPort", md.OutboundPort}, {"statsPort", md.StatsPort}, {"adminPort", md.AdminPort}}
	for i, a := range proxy {
		if a.port == 0 || a.port > math.MaxUint16 {
			return fmt.Errorf("%w: %s %d: want a port 1-65535", ErrMetadataInvalid, a.key, a.port)
		}
		for _, b := range proxy[:i] {
			if a.port == b.port {
				return fmt.Errorf("%w: %s and %s are both %d; the proxy ports must differ", ErrMetadataInvalid, b.key, a.key, a.port)
			}
		}
	}
	if len(md.AppPorts) > MaxAppPorts {
		return fmt.Errorf("%w: appPorts has %d entries, at most %d are supported", ErrMetadataInvalid, len(md.AppPorts), MaxAppPorts)
	}
	for i, ap := range md.AppPorts {
		if ap.Port == 0 || ap.Port > math.MaxUint16 {
			return fmt.Errorf("%w: appPorts[%d].port %d: want a port 1-65535", ErrMetadataInvalid, i, ap.Port)
		}
		switch ap.Protocol {
		case "", ProtocolTCP:
			for _, p := range proxy {
				if ap.Port == p.port {
					return fmt.Errorf("%w: appPorts[%d].port %d is also %s; the injector moves proxy ports off app ports, re-inject the pod", ErrMetadataInvalid, i, ap.Port, p.key)
				}
			}
		case ProtocolUDP, ProtocolSCTP:
		default:
			return fmt.Errorf("%w: appPorts[%d].protocol %q: want TCP, UDP or SCTP", ErrMetadataInvalid, i, truncate(ap.Protocol))
		}
		if len(ap.Name) > maxStringLen {
			return fmt.Errorf("%w: appPorts[%d].name is %d bytes long, at most %d are allowed", ErrMetadataInvalid, i, len(ap.Name), maxStringLen)
		}
	}
	if len(md.ExcludeInboundPorts) > MaxExcludedPorts {
		return fmt.Errorf("%w: excludeInboundPorts has %d entries, at most %d are supported", ErrMetadataInvalid, len(md.ExcludeInboundPorts), MaxExcludedPorts)
	}
	for i, p := range md.ExcludeInboundPorts {
		if p == 0 || p > math.MaxUint16 {
			return fmt.Errorf("%w: excludeInboundPorts[%d] %d: want a port 1-65535", ErrMetadataInvalid, i, p)
		}
	}
	if md.PodIP != "" {
		if _, err := netip.ParseAddr(md.PodIP); err != nil {
			hint := ""
			if md.PodIP == PodIPRef {
				hint = " (the envoy container lacks env " + EnvPodIP + " from fieldRef status.podIP)"
			}
			return fmt.Errorf("%w: podIP %q: want an IP address%s", ErrMetadataInvalid, truncate(md.PodIP), hint)
		}
	}
	switch md.IPv6 {
	case "", IPv6Auto, IPv6On, IPv6Off:
	default:
		return fmt.Errorf("%w: ipv6 %q: want auto, on or off", ErrMetadataInvalid, truncate(md.IPv6))
	}
	for _, f := range []struct{ key, v string }{{"configHash", md.ConfigHash}, {"injectorVersion", md.InjectorVersion}} {
		if len(f.v) > maxStringLen {
			return fmt.Errorf("%w: %s is %d bytes long, at most %d are allowed", ErrMetadataInvalid, f.key, len(f.v), maxStringLen)
		}
	}
	return nil
}

// parser keeps the first error of a metadata walk.
type parser struct{ err error }

func (p *parser) fail(format string, args ...any) {
	if p.err == nil {
		p.err = fmt.Errorf("%w: "+format, append([]any{ErrMetadataInvalid}, args...)...)
	}
}

func (p *parser) str(key string, v *structpb.Value) string {
	s, ok := v.GetKind().(*structpb.Value_StringValue)
	if !ok {
		p.fail("%s: want a string, got %s", key, kindName(v))
		return ""
	}
	if len(s.StringValue) > maxStringLen {
		p.fail("%s is %d bytes long, at most %d are allowed", key, len(s.StringValue), maxStringLen)
		return ""
	}
	return s.StringValue
}

func (p *parser) port(key string, v *structpb.Value) uint32 {
	n, ok := v.GetKind().(*structpb.Value_NumberValue)
	if !ok {
		p.fail("%s: want a port number 1-65535, got %s", key, kindName(v))
		return 0
	}
	f := n.NumberValue
	if f != math.Trunc(f) || f < 1 || f > math.MaxUint16 {
		p.fail("%s: want a port 1-65535, got %v", key, f)
		return 0
	}
	return uint32(f)
}

func (p *parser) list(key string, v *structpb.Value, max int) []*structpb.Value {
	l, ok := v.GetKind().(*structpb.Value_ListValue)
	if !ok {
		p.fail("%s: want a list, got %s", key, kindName(v))
		return nil
	}
	if n := len(l.ListValue.GetValues()); n > max {
		p.fail("%s has %d entries, at most %d are supported", key, n, max)
		return nil
	}
	return l.ListValue.GetValues()
}

func (p *parser) ports(key string, v *structpb.Value, max int) []uint32 {
	var out []uint32
	for i, e := range p.list(key, v, max) {
		out = append(out, p.port(fmt.Sprintf("%s[%d]", key, i), e))
		if p.err != nil {
			return nil
		}
	}
	return out
}

func (p *parser) appPorts(key string, v *structpb.Value) []AppPort {
	var out []AppPort
	for i, e := range p.list(key, v, MaxAppPorts) {
		at := fmt.Sprintf("%s[%d]", key, i)
		s, ok := e.GetKind().(*structpb.Value_StructValue)
		if !ok {
			p.fail("%s: want an object {port, name, protocol}, got %s", at, kindName(e))
			return nil
		}
		var ap AppPort
		fields := s.StructValue.GetFields()
		if _, ok := fields["port"]; !ok {
			p.fail("%s: key \"port\" missing", at)
			return nil
		}
		for _, k := range sortedKeys(fields) {
			switch k {
			case "port":
				ap.Port = p.port(at+".port", fields[k])
			case "name":
				ap.Name = p.str(at+".name", fields[k])
			case "protocol":
				ap.Protocol = p.str(at+".protocol", fields[k])
			default:
				p.fail("%s: unknown key %q; want port, name or protocol", at, truncate(k))
			}
		}
		if p.err != nil {
			return nil
		}
		out = append(out, ap)
	}
	return out
}

func sortedKeys(m map[string]*structpb.Value) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

func kindName(v *structpb.Value) string {
	switch v.GetKind().(type) {
	case *structpb.Value_NullValue:
		return "null"
	case *structpb.Value_NumberValue:
		return "a number"
	case *structpb.Value_StringValue:
		return "a string"
	case *structpb.Value_BoolValue:
		return "a boolean"
	case *structpb.Value_StructValue:
		return "an object"
	case *structpb.Value_ListValue:
		return "a list"
	default:
		return "nothing"
	}
}

// truncate shortens a value quoted in an error message.
func truncate(s string) string {
	const max = 64
	if len(s) <= max {
		return s
	}
	return strings.ToValidUTF8(s[:max], "") + "..."
}
