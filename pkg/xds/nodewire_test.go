package xds

import (
	"bytes"
	"encoding/json"
	"math"
	"strings"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/sidecar-injector/sidecar-injector/envoy"
	"github.com/sidecar-injector/sidecar-injector/envoy/nodemeta"
)

// metadataSeeds are Struct encodings: the injector's own metadata, and
// values that test the JSON (escapes, HTML characters, numbers at the
// exponent cutoffs, nesting, empty lists and structs); the first two must
// be read, the others are edge cases it may decline.
func metadataSeeds() ([][]byte, error) {
	md := nodemeta.Metadata{Version: nodemeta.Version, InboundPort: 10001, OutboundPort: 10002, StatsPort: 10090, AdminPort: 9901,
		PodIP: "$(POD_IP)", ConfigHash: "abc", AppPorts: []nodemeta.AppPort{{Port: 8080, Name: "http"}, {Port: 9090}}}
	own, err := envoy.MetadataStruct(md)
	if err != nil {
		return nil, err
	}
	s, err := structpb.NewStruct(map[string]any{
		"s":    "a<b>&\"c\\\n\t\u2028\u00e9\x7f\x01",
		"n":    []any{0.0, -1.5, 1e21, 1e-7, 123456789.0, 1e20, 0.000001},
		"b":    []any{true, false, nil},
		"deep": map[string]any{"a": map[string]any{"b": []any{map[string]any{}, []any{}}}},
		"":     "empty key",
	})
	if err != nil {
		return nil, err
	}
	var out [][]byte
	for _, m := range []*structpb.Struct{own, s} {
		b, err := proto.Marshal(m)
		if err != nil {
			return nil, err
		}
		out = append(out, b)
	}
	return append(out, nil, []byte{0x0a, 0x00}, []byte{0xff}), nil
}

// Whatever metadataMap accepts reads as protobuf and Struct.AsMap read it,
// to the JSON byte, and its Struct is no larger than its encoding (so the
// fast path's size cap on the encoding is the reference's on the Struct).
func FuzzMetadataMap(f *testing.F) {
	seeds, err := metadataSeeds()
	if err != nil {
		f.Fatal(err)
	}
	for _, b := range seeds {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		m, ok := metadataMap(b)
		if !ok {
			return
		}
		ref := &structpb.Struct{}
		if err := proto.Unmarshal(b, ref); err != nil {
			t.Fatalf("metadataMap accepted what protobuf refuses (%v): %x", err, b)
		}
		if n := proto.Size(ref); n > len(b) {
			t.Fatalf("the Struct is %d bytes, its encoding %d", n, len(b))
		}
		want, err := json.Marshal(ref.AsMap())
		if err != nil {
			t.Fatalf("metadataMap accepted what JSON cannot hold (%v): %x", err, b)
		}
		got, err := json.Marshal(m)
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("metadataMap JSON %s (%v), want %s", got, err, want)
		}
	})
}

// The injector's metadata and the JSON edge cases are read, not declined.
func TestMetadataMapSeeds(t *testing.T) {
	seeds, err := metadataSeeds()
	if err != nil {
		t.Fatal(err)
	}
	for i, b := range seeds[:2] {
		m, ok := metadataMap(b)
		if !ok {
			t.Errorf("seed %d declined", i)
			continue
		}
		ref := &structpb.Struct{}
		if err := proto.Unmarshal(b, ref); err != nil {
			t.Fatal(err)
		}
		want, _ := json.Marshal(ref.AsMap())
		got, _ := json.Marshal(m)
		if !bytes.Equal(got, want) {
			t.Errorf("seed %d: %s, want %s", i, got, want)
		}
	}
}

// decodeWithMetadata reads what the whole decode and ResolveNode read, or
// declines: a request without a node or metadata, a node or metadata field
// twice, metadata with no keys, over the cap, or holding what JSON cannot.
func TestDecodeWithMetadata(t *testing.T) {
	marshal := func(m proto.Message) []byte {
		b, err := proto.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	request := func(node *corev3.Node) []byte {
		return marshal(&discoveryv3.DiscoveryRequest{TypeUrl: resource.ClusterType, VersionInfo: "v", Node: node, ResourceNames: []string{"a"}})
	}
	good := testNode(t, "web-1.shop", 8080, 9090)
	badVersion := testNode(t, "old.shop", 8080)
	badVersion.Metadata.Fields["version"] = structpb.NewStringValue("v0")
	unknownKey := testNode(t, "new.shop", 8080)
	unknownKey.Metadata.Fields["futureKey"] = structpb.NewBoolValue(true)
	for name, b := range map[string][]byte{"good": request(good), "bad version": request(badVersion), "unknown key": request(unknownKey)} {
		req, js, ok := decodeWithMetadata(b)
		if !ok {
			t.Errorf("%s: declined", name)
			continue
		}
		ref := &discoveryv3.DiscoveryRequest{}
		if err := proto.Unmarshal(b, ref); err != nil {
			t.Fatal(err)
		}
		wantInfo, wantReason, wantErr := ResolveNode(ref.GetNode())
		info, reason, err := resolved(nodemeta.Parse(js))
		if diff := cmp.Diff(wantInfo, info); diff != "" || reason != wantReason || (err == nil) != (wantErr == nil) || (err != nil && err.Error() != wantErr.Error()) {
			t.Errorf("%s: read %v %q %v, the reference %v %q %v", name, info, reason, err, wantInfo, wantReason, wantErr)
		}
		ref.Node.Metadata = nil
		if !proto.Equal(req, ref) {
			t.Errorf("%s: request %v, want %v", name, req, ref)
		}
	}

	twice := append(request(good), protowire.AppendBytes(protowire.AppendTag(nil, requestNodeField, protowire.BytesType), marshal(good))...)
	empty := &corev3.Node{Id: "e.shop", Metadata: &structpb.Struct{}}
	nan := testNode(t, "nan.shop", 8080)
	nan.Metadata.Fields["x"] = structpb.NewNumberValue(math.NaN())
	huge := testNode(t, "huge.shop", 8080)
	huge.Metadata.Fields["padding"] = structpb.NewStringValue(strings.Repeat("x", nodemeta.MaxMetadataBytes))
	for name, b := range map[string][]byte{
		"no node":      request(nil),
		"no metadata":  request(&corev3.Node{Id: "bare.shop"}),
		"node twice":   twice,
		"no keys":      request(empty),
		"NaN":          request(nan),
		"over the cap": request(huge),
		"malformed":    request(good)[:40],
	} {
		if _, _, ok := decodeWithMetadata(b); ok {
			t.Errorf("%s: accepted", name)
		}
	}
}
