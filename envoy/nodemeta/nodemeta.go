// Package nodemeta is the contract between the injector and the xDS server:
// the node metadata every injected Envoy reports (the --config-yaml overlay
// the injector renders, and the strict parser the xDS server reads it back
// with). It links no protobuf, so the engine (pkg/inject) stays free of
// go-control-plane; package envoy converts to and from the proto Struct.
package nodemeta

import (
	"errors"
	"fmt"
	"math"
	"net/netip"
	"regexp"
	"strings"

	kjson "sigs.k8s.io/json"
)

// Version is the schema version of Metadata. The xDS server
// refuses (with a safe default snapshot and a clear log line) metadata of a
// version it does not know.
const Version = "v1"

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

// PodIPRef is the value of Metadata.PodIP in the overlay: the kubelet
// expands it from the POD_IP environment variable of the envoy container.
const PodIPRef = "$(" + EnvPodIP + ")"

// Protocols of AppPort. Only TCP ports are proxied.
const (
	ProtocolTCP  = "TCP"
	ProtocolUDP  = "UDP"
	ProtocolSCTP = "SCTP"
)

// IPv6 modes of Metadata.IPv6 (the pod's resolved sidecar.io/ipv6 setting).
const (
	IPv6Auto = "auto"
	IPv6On   = "on"
	IPv6Off  = "off"
)

// Limits of the node metadata, the same for the webhook (which refuses a
// pod over them, naming the limit) and the xDS server (which serves the
// default snapshot to a node over them): a pod may declare many ports
// (RELIABILITY.md row 26), but the metadata of one node, and the snapshot
// it asks for, stay bounded (row X1).
const (
	MaxAppPorts      = 1024
	MaxExcludedPorts = 4096
	maxStringLen     = 256
	// MaxMetadataBytes bounds the node metadata, as JSON in the overlay and
	// as what the xDS server reads (checked before any decoding).
	MaxMetadataBytes = 64 << 10
)

// ErrMetadataTooLarge: the metadata is over MaxMetadataBytes, or the pod
// has more than MaxAppPorts app ports.
var ErrMetadataTooLarge = errors.New("node metadata too large")

// AppPort is a port an application container of the pod serves on.
type AppPort struct {
	Port     uint32 `json:"port"`
	Name     string `json:"name,omitempty"`
	Protocol string `json:"protocol,omitempty"` // TCP (default) or SCTP/UDP, which are not proxied
}

// Metadata is what the injector tells the xDS server about a pod, through
// the Envoy node metadata. Every field the snapshot depends on is here, so the
// server needs no Kubernetes API access. JSON names are the metadata keys.
type Metadata struct {
	Version string `json:"version"` // Version

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
	ID       string   `json:"id"`
	Cluster  string   `json:"cluster"`
	Metadata Metadata `json:"metadata"`
}

// RenderOverlay renders the --config-yaml value for a pod. It is JSON, which
// Envoy's YAML loader reads as is; keys are in a fixed order, so the same
// metadata always gives the same bytes.
func RenderOverlay(md Metadata) (string, error) {
	return renderOverlay(Overlay{Node: OverlayNode{ID: NodeID, Cluster: NodeCluster, Metadata: md}})
}

// RenderOverlayMovedAdmin is RenderOverlay for a pod whose admin port is
// not the bootstrap's (bootstrapAdmin): the overlay also binds the admin
// interface to 127.0.0.1:md.AdminPort.
func RenderOverlayMovedAdmin(md Metadata, bootstrapAdmin uint32) (string, error) {
	o := Overlay{Node: OverlayNode{ID: NodeID, Cluster: NodeCluster, Metadata: md}}
	if md.AdminPort != bootstrapAdmin {
		o.Admin = &OverlayAdmin{}
		o.Admin.Address.SocketAddress.Address = "127.0.0.1"
		o.Admin.Address.SocketAddress.PortValue = md.AdminPort
	}
	return renderOverlay(o)
}

// Metadata over the limits of the xDS server (more than MaxAppPorts app
// ports, more than MaxMetadataBytes) is an error naming the limit: the
// server would serve such a node the default snapshot.
func renderOverlay(o Overlay) (string, error) {
	if n := len(o.Node.Metadata.AppPorts); n > MaxAppPorts {
		return "", fmt.Errorf("%w: the pod declares %d TCP ports; the proxy's node metadata carries at most %d (the xDS server's limit)", ErrMetadataTooLarge, n, MaxAppPorts)
	}
	b := o.appendJSON(make([]byte, 0, 512))
	if len(b) > MaxMetadataBytes {
		return "", fmt.Errorf("%w: the proxy's node metadata would be %d bytes; the xDS server reads at most %d (fewer ports or exclusions)", ErrMetadataTooLarge, len(b), MaxMetadataBytes)
	}
	return string(b), nil
}

// Errors of Parse, for errors.Is; every returned error also says
// which key was wrong and what it should be.
var (
	// ErrMetadataMissing: the node has no metadata at all.
	ErrMetadataMissing = errors.New("node metadata missing")
	// ErrMetadataVersion: the metadata has a schema version this build does not know.
	ErrMetadataVersion = errors.New("unsupported node metadata version")
	// ErrMetadataInvalid: a key is unknown, of the wrong type, or out of range.
	ErrMetadataInvalid = errors.New("invalid node metadata")
)

var goField = regexp.MustCompile(`Go struct field \w+\.`)

// Parse reads node metadata (JSON: what Envoy makes of the overlay's
// "metadata") strictly, in one decode: keys match the field names exactly,
// every key must be known and of the right type, and the result must pass
// Validate. Data over MaxMetadataBytes is ErrMetadataTooLarge, before any
// decoding. A schema version this build does not know is ErrMetadataVersion
// whatever else the metadata holds (a newer injector may add keys).
func Parse(data []byte) (Metadata, error) {
	if len(data) > MaxMetadataBytes {
		return Metadata{}, fmt.Errorf("%w: %d bytes, at most %d are read", ErrMetadataTooLarge, len(data), MaxMetadataBytes)
	}
	var md Metadata
	strict, err := kjson.UnmarshalStrict(data, &md)
	switch {
	case md.Version == "" && err == nil:
		return Metadata{}, fmt.Errorf("%w: key \"version\" missing; want %q", ErrMetadataInvalid, Version)
	case md.Version != "" && md.Version != Version:
		return Metadata{}, fmt.Errorf("%w: version %q, this xDS server reads %q; run an xDS server as new as the injector that made the pod", ErrMetadataVersion, Truncate(md.Version), Version)
	case err != nil:
		// "cannot unmarshal string into Go struct field Metadata.appPorts.port
		// of type uint32" names the key as the user wrote it.
		msg := goField.ReplaceAllString(strings.TrimPrefix(err.Error(), "json: "), "key ")
		return Metadata{}, fmt.Errorf("%w: %s", ErrMetadataInvalid, msg)
	case len(strict) > 0:
		return Metadata{}, fmt.Errorf("%w: %w; known keys are those of nodemeta.Metadata %s (an injector newer than this xDS server?)", ErrMetadataInvalid, errors.Join(strict...), Version)
	}
	if err := md.Validate(); err != nil {
		return Metadata{}, err
	}
	return md, nil
}

// Validate checks the relations between the fields: distinct proxy ports, no
// app port on a proxy port, a pod IP that is an IP address.
func (md Metadata) Validate() error {
	if md.Version != Version {
		return fmt.Errorf("%w: version %q, want %q", ErrMetadataVersion, Truncate(md.Version), Version)
	}
	proxy := []struct {
		key  string
		port uint32
	}{{"inboundPort", md.InboundPort}, {"outboundPort", md.OutboundPort}, {"statsPort", md.StatsPort}, {"adminPort", md.AdminPort}}
	for i, a := range proxy {
		if a.port == 0 {
			return fmt.Errorf("%w: %s missing or 0: want a port 1-65535", ErrMetadataInvalid, a.key)
		}
		if a.port > math.MaxUint16 {
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
			return fmt.Errorf("%w: appPorts[%d].protocol %q: want TCP, UDP or SCTP", ErrMetadataInvalid, i, Truncate(ap.Protocol))
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
			return fmt.Errorf("%w: podIP %q: want an IP address%s", ErrMetadataInvalid, Truncate(md.PodIP), hint)
		}
	}
	switch md.IPv6 {
	case "", IPv6Auto, IPv6On, IPv6Off:
	default:
		return fmt.Errorf("%w: ipv6 %q: want auto, on or off", ErrMetadataInvalid, Truncate(md.IPv6))
	}
	for _, f := range []struct{ key, v string }{{"configHash", md.ConfigHash}, {"injectorVersion", md.InjectorVersion}} {
		if len(f.v) > maxStringLen {
			return fmt.Errorf("%w: %s is %d bytes long, at most %d are allowed", ErrMetadataInvalid, f.key, len(f.v), maxStringLen)
		}
	}
	return nil
}

// Truncate shortens a value quoted in an error message (at most 64 bytes).
func Truncate(s string) string {
	const max = 64
	if len(s) <= max {
		return s
	}
	return strings.ToValidUTF8(s[:max], "") + "..."
}
