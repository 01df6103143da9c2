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
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/sidecar-injector/sidecar-injector/envoy/nodemeta"
)

// MetadataStruct converts metadata into the google.protobuf.Struct Envoy
// sends as node metadata (what Envoy makes of the overlay's "metadata").
func MetadataStruct(md nodemeta.Metadata) (*structpb.Struct, error) {
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
// (nodemeta.Parse on its JSON form); its errors are nodemeta's ErrMetadata*, for
// errors.Is. It is the inverse of MetadataStruct.
func ParseNodeMetadata(s *structpb.Struct) (nodemeta.Metadata, error) {
	if s == nil || len(s.GetFields()) == 0 {
		return nodemeta.Metadata{}, fmt.Errorf("%w: the Envoy node has no metadata; the envoy container must be started with the --config-yaml overlay of the injector (re-inject the pod)", nodemeta.ErrMetadataMissing)
	}
	// The size cap before any decoding (row X1): the Struct as received.
	if n := proto.Size(s); n > nodemeta.MaxMetadataBytes {
		return nodemeta.Metadata{}, fmt.Errorf("%w: %d bytes, at most %d are read", nodemeta.ErrMetadataTooLarge, n, nodemeta.MaxMetadataBytes)
	}
	// AsMap, not protojson: a value with no kind set reads as null (absent)
	// and the decode then names its key.
	b, err := json.Marshal(s.AsMap())
	if err != nil {
		return nodemeta.Metadata{}, fmt.Errorf("%w: %w", nodemeta.ErrMetadataInvalid, err)
	}
	return nodemeta.Parse(b)
}

// truncate shortens a value quoted in an error message.
var truncate = nodemeta.Truncate
