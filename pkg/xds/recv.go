package xds

import (
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/runtime/protoiface"
)

// adsServer is go-control-plane's ADS server reading requests through
// workerDecoded.
type adsServer struct {
	serverv3.Server
	s *Server
}

func (a adsServer) StreamAggregatedResources(st discoveryv3.AggregatedDiscoveryService_StreamAggregatedResourcesServer) error {
	return a.Server.StreamAggregatedResources(&workerDecoded{AggregatedDiscoveryService_StreamAggregatedResourcesServer: st, s: a.s})
}

// workerDecoded decodes a request that carries a node on one of the
// server's workers (onWorker). A node's metadata is a nested Struct:
// decoding it on the stream's receiving goroutine grew that goroutine's
// stack, as parsing it did on the stream's own (see onWorker): with 20,000
// proxies connecting at once, copying those stacks was 18% of the server's
// CPU. gRPC hands over the request's bytes (rawRequest); requests without
// a node are shallow and decoded in place.
type workerDecoded struct {
	discoveryv3.AggregatedDiscoveryService_StreamAggregatedResourcesServer
	s *Server
}

// inPlaceMax is the size up to which a request is decoded in place: an
// ACK names a type, a version, a nonce and perhaps a few resources.
const inPlaceMax = 512

func (w *workerDecoded) Recv() (*discoveryv3.DiscoveryRequest, error) {
	var raw rawRequest
	if err := w.RecvMsg(&raw); err != nil {
		return nil, err
	}
	req := &discoveryv3.DiscoveryRequest{}
	var err error
	if len(raw.b) <= inPlaceMax {
		err = proto.Unmarshal(raw.b, req)
	} else {
		w.s.onWorker(func() { err = proto.Unmarshal(raw.b, req) })
	}
	if err != nil {
		return nil, status.Errorf(codes.Internal, "grpc: failed to unmarshal the received message: %v", err)
	}
	return req, nil
}

// rawRequest is a DiscoveryRequest as received: gRPC's codec unmarshals
// into it by copying the bytes (its protobuf fast path).
type rawRequest struct{ b []byte }

// emptyRequest lends rawRequest its reflection, for what the protobuf
// runtime asks of a message besides decoding it (its type); never written.
var emptyRequest = (&discoveryv3.DiscoveryRequest{}).ProtoReflect()

func (r *rawRequest) ProtoReflect() protoreflect.Message { return rawReflect{emptyRequest, r} }

// Reset is what proto.Unmarshal calls before decoding.
func (r *rawRequest) Reset() { r.b = r.b[:0] }

type rawReflect struct {
	protoreflect.Message
	r *rawRequest
}

func (m rawReflect) Interface() protoreflect.ProtoMessage { return m.r }
func (m rawReflect) ProtoMethods() *protoiface.Methods    { return &rawMethods }

var rawMethods = protoiface.Methods{
	Unmarshal: func(in protoiface.UnmarshalInput) (protoiface.UnmarshalOutput, error) {
		r := in.Message.(rawReflect).r
		r.b = append(r.b, in.Buf...) // in.Buf goes back to gRPC's pool
		// Checked when it is decoded.
		return protoiface.UnmarshalOutput{Flags: protoiface.UnmarshalInitialized}, nil
	},
}
