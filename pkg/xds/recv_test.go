package xds

import (
	"context"
	"log/slog"
	"strings"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
)

// frames is a stream whose RecvMsg decodes the given frames with gRPC's
// own proto codec, as the server's transport does.
type frames struct {
	discoveryv3.AggregatedDiscoveryService_StreamAggregatedResourcesServer
	in [][]byte
}

func (f *frames) RecvMsg(m any) error {
	b := f.in[0]
	f.in = f.in[1:]
	return encoding.GetCodecV2("proto").Unmarshal(mem.BufferSlice{mem.SliceBuffer(b)}, m)
}

// Requests come out of workerDecoded as they went in, small ones decoded
// in place and those with a node on a worker; a malformed one is an error.
func TestWorkerDecodedRequests(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	s, err := NewServer(ctx, slog.New(slog.DiscardHandler), NewMetrics(prometheus.NewRegistry()), DefaultMeshSettings())
	if err != nil {
		t.Fatal(err)
	}
	md, err := structpb.NewStruct(map[string]any{"big": strings.Repeat("x", 2*inPlaceMax), "nested": map[string]any{"a": []any{1.0, map[string]any{"b": true}}}})
	if err != nil {
		t.Fatal(err)
	}
	reqs := []*discoveryv3.DiscoveryRequest{
		{TypeUrl: resource.ClusterType, Node: &corev3.Node{Id: "p.ns", Metadata: md}},
		{TypeUrl: resource.ClusterType, VersionInfo: "v1", ResponseNonce: "1"},
	}
	f := &frames{}
	for _, r := range reqs {
		b, err := proto.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		f.in = append(f.in, b)
	}
	if len(f.in[0]) <= inPlaceMax || len(f.in[1]) > inPlaceMax {
		t.Fatalf("request sizes %d and %d: want one above and one below %d", len(f.in[0]), len(f.in[1]), inPlaceMax)
	}
	f.in = append(f.in, []byte{0xff, 0xff, 0xff})
	w := &workerDecoded{AggregatedDiscoveryService_StreamAggregatedResourcesServer: f, s: s}
	for i, want := range reqs {
		got, err := w.Recv()
		if err != nil || !proto.Equal(got, want) {
			t.Errorf("request %d: got %v, %v; want %v", i, got, err, want)
		}
	}
	if got, err := w.Recv(); err == nil {
		t.Errorf("malformed request: got %v, want an error", got)
	}
}

var _ grpc.ServerStream = (*frames)(nil)
