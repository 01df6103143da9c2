// Package envoy holds what every injected Envoy is started with: the
// bootstrap (the envoy-config ConfigMap) and the per-pod --config-yaml
// overlay carrying the node id and the node metadata, plus the strict parser
// the xDS server reads that metadata back with. The metadata contract itself
// is envoy/nodemeta (no protobuf); this file gives it its names in package
// envoy and converts it to and from the proto Struct Envoy sends.
package envoy

import (
	"encoding/json"
	"fmt"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/sidecar-injector/sidecar-injector/envoy/nodemeta"
)

// The node-metadata contract (envoy/nodemeta) under its names in package envoy.
type (
	NodeMetadata = nodemeta.Metadata
	AppPort      = nodemeta.AppPort
	Overlay      = nodemeta.Overlay
	OverlayAdmin = nodemeta.OverlayAdmin
	OverlayNode  = nodemeta.OverlayNode
)

const (
	MetadataVersion  = nodemeta.Version
	EnvPodName       = nodemeta.EnvPodName
	EnvPodNamespace  = nodemeta.EnvPodNamespace
	EnvPodIP         = nodemeta.EnvPodIP
	NodeID           = nodemeta.NodeID
	NodeCluster      = nodemeta.NodeCluster
	PodIPRef         = nodemeta.PodIPRef
	ProtocolTCP      = nodemeta.ProtocolTCP
	ProtocolUDP      = nodemeta.ProtocolUDP
	ProtocolSCTP     = nodemeta.ProtocolSCTP
	IPv6Auto         = nodemeta.IPv6Auto
	IPv6On           = nodemeta.IPv6On
	IPv6Off          = nodemeta.IPv6Off
	MaxAppPorts      = nodemeta.MaxAppPorts
	MaxExcludedPorts = nodemeta.MaxExcludedPorts
)

// Errors of ParseNodeMetadata, for errors.Is (those of nodemeta.Parse).
var (
	ErrMetadataMissing = nodemeta.ErrMetadataMissing
	ErrMetadataVersion = nodemeta.ErrMetadataVersion
	ErrMetadataInvalid = nodemeta.ErrMetadataInvalid
)

// RenderOverlay renders the --config-yaml value for a pod (nodemeta.RenderOverlay).
func RenderOverlay(md NodeMetadata) (string, error) { return nodemeta.RenderOverlay(md) }

// RenderOverlayMovedAdmin is nodemeta.RenderOverlayMovedAdmin.
func RenderOverlayMovedAdmin(md NodeMetadata, bootstrapAdmin uint32) (string, error) {
	return nodemeta.RenderOverlayMovedAdmin(md, bootstrapAdmin)
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

// ParseNodeMetadata reads the node metadata Envoy sent strictly
// (nodemeta.Parse on its JSON form). It is the inverse of MetadataStruct.
func ParseNodeMetadata(s *structpb.Struct) (NodeMetadata, error) {
	if s == nil || len(s.GetFields()) == 0 {
		return NodeMetadata{}, fmt.Errorf("%w: the Envoy node has no metadata; the envoy container must be started with the --config-yaml overlay of the injector (re-inject the pod)", ErrMetadataMissing)
	}
	// AsMap, not protojson: a value with no kind set reads as null (absent)
	// and the decode then names its key.
	b, err := json.Marshal(s.AsMap())
	if err != nil {
		return NodeMetadata{}, fmt.Errorf("%w: %w", ErrMetadataInvalid, err)
	}
	return nodemeta.Parse(b)
}

// truncate shortens a value quoted in an error message.
var truncate = nodemeta.Truncate
