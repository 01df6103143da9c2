package envoy

import (
	"encoding/json"
	"fmt"
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

	ConfigHash      string `json:"configHash"`      // the injector config hash of the sidecar.io/status annotation
	InjectorVersion string `json:"injectorVersion"` // the injector build that made the pod
}

// Overlay is the per-pod bootstrap overlay given to Envoy with --config-yaml.
// It carries only the node; Envoy merges it into the bootstrap file.
type Overlay struct {
	Node OverlayNode `json:"node"`
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
	b, err := json.Marshal(Overlay{Node: OverlayNode{ID: NodeID, Cluster: NodeCluster, Metadata: md}})
	if err != nil {
		return "", fmt.Errorf("render envoy overlay: %w", err)
	}
	return string(b), nil
}
