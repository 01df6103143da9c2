package xds

import (
	"fmt"
	"slices"

	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	protov2 "google.golang.org/protobuf/proto"
)

// Field numbers of envoy.service.discovery.v3.DiscoveryResponse and of
// google.protobuf.Any.
const (
	responseVersionField   = 1
	responseResourcesField = 2
	responseTypeURLField   = 4
	responseNonceField     = 5
	anyTypeURLField        = 1
	anyValueField          = 2
)

// resourceField is a resource, encoded as b, as a DiscoveryResponse
// carries it: a resources field holding an Any of typeURL.
func resourceField(typeURL string, b []byte) []byte {
	anyLen := protowire.SizeTag(anyTypeURLField) + protowire.SizeBytes(len(typeURL)) +
		protowire.SizeTag(anyValueField) + protowire.SizeBytes(len(b))
	out := make([]byte, 0, protowire.SizeTag(responseResourcesField)+protowire.SizeBytes(anyLen))
	out = protowire.AppendTag(out, responseResourcesField, protowire.BytesType)
	out = protowire.AppendVarint(out, uint64(anyLen))
	out = protowire.AppendTag(out, anyTypeURLField, protowire.BytesType)
	out = protowire.AppendString(out, typeURL)
	out = protowire.AppendTag(out, anyValueField, protowire.BytesType)
	return protowire.AppendBytes(out, b)
}

// typeURLOf is the Any type URL of a resource's message type.
func typeURLOf(r types.Resource) string {
	return "type.googleapis.com/" + string(r.ProtoReflect().Descriptor().FullName())
}

// response is one type of a group's snapshot as it goes on the wire: a
// DiscoveryResponse but for its nonce, made once per snapshot and sent to
// every stream of the group. The resources are the shared encodings
// (encoded), held here so that the interner keeps them.
type response struct {
	version   string
	head      []byte // the version_info and type_url fields
	resources []*encoded
}

// newResponse is the response of one type of snap, its resources in name
// order (a response is the same bytes whichever stream gets it).
func newResponse(snap *cache.Snapshot, typeURL string) (*response, error) {
	items := snap.GetResources(typeURL)
	names := make([]string, 0, len(items))
	for name := range items {
		names = append(names, name)
	}
	slices.Sort(names)
	r := &response{version: snap.GetVersion(typeURL)}
	for _, name := range names {
		e, ok := items[name].(*encoded)
		if !ok { // a snapshot built without the interner
			b, err := protov2.MarshalOptions{Deterministic: true}.Marshal(items[name])
			if err != nil {
				return nil, fmt.Errorf("encode resource %q: %w", name, err)
			}
			e = newEncoded(items[name], b)
		}
		r.resources = append(r.resources, e)
	}
	r.head = protowire.AppendTag(r.head, responseVersionField, protowire.BytesType)
	r.head = protowire.AppendString(r.head, r.version)
	r.head = protowire.AppendTag(r.head, responseTypeURLField, protowire.BytesType)
	r.head = protowire.AppendString(r.head, typeURL)
	return r, nil
}

// outgoing is a response with its stream's nonce, as the codec sends it.
type outgoing struct {
	r     *response
	nonce string
}

// buffers is the encoded DiscoveryResponse: the shared parts as they are,
// and the nonce field.
func (o *outgoing) buffers() mem.BufferSlice {
	out := make(mem.BufferSlice, 0, len(o.r.resources)+2)
	out = append(out, mem.SliceBuffer(o.r.head))
	for _, e := range o.r.resources {
		out = append(out, mem.SliceBuffer(e.wire))
	}
	nonce := protowire.AppendTag(make([]byte, 0, 2+len(o.nonce)), responseNonceField, protowire.BytesType)
	return append(out, mem.SliceBuffer(protowire.AppendString(nonce, o.nonce)))
}

// codec is the xDS server's gRPC codec: protobuf, except that a response
// (outgoing) goes out as the bytes it was made of, with no marshalling, and
// a request is read as its bytes (rawRequest) for the stream to decode
// (see stream.recv).
type codec struct{}

var protoCodec = encoding.GetCodecV2(proto.Name)

func (codec) Name() string { return proto.Name }

func (codec) Marshal(v any) (mem.BufferSlice, error) {
	if o, ok := v.(*outgoing); ok {
		return o.buffers(), nil
	}
	return protoCodec.Marshal(v)
}

func (codec) Unmarshal(data mem.BufferSlice, v any) error {
	if r, ok := v.(*rawRequest); ok {
		r.b = data.Materialize() // data goes back to gRPC's pool
		return nil
	}
	return protoCodec.Unmarshal(data, v)
}

// rawRequest is a DiscoveryRequest as received.
type rawRequest struct{ b []byte }
