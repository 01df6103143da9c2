package main

import (
	"slices"
	"strings"
	"testing"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/sidecar-injector/sidecar-injector/pkg/xds"
)

// received is what a proxy would receive: resp encoded, read by codec.
func received(t *testing.T, resp *discoveryv3.DiscoveryResponse) *response {
	t.Helper()
	b, err := proto.Marshal(resp)
	if err != nil {
		t.Fatal(err)
	}
	r := &response{}
	if err := (codec{}).Unmarshal(mem.BufferSlice{mem.SliceBuffer(b)}, r); err != nil {
		t.Fatal(err)
	}
	return r
}

// groupResponse is the CDS response of the group whose app port is port,
// its resources in the given order.
func groupResponse(t *testing.T, port uint32, reverse bool) *discoveryv3.DiscoveryResponse {
	t.Helper()
	n := xds.DefaultNodeInfo()
	n.AppPorts = []uint32{port}
	snap, err := xds.BuildSnapshot(n, xds.DefaultMeshSettings())
	if err != nil {
		t.Fatal(err)
	}
	resp := &discoveryv3.DiscoveryResponse{TypeUrl: resource.ClusterType, VersionInfo: snap.GetVersion(resource.ClusterType), Nonce: "7"}
	names := slices.Sorted(func(yield func(string) bool) {
		for name := range snap.GetResources(resource.ClusterType) {
			if !yield(name) {
				return
			}
		}
	})
	if reverse {
		slices.Reverse(names)
	}
	for _, name := range names {
		a, err := anypb.New(snap.GetResources(resource.ClusterType)[name])
		if err != nil {
			t.Fatal(err)
		}
		resp.Resources = append(resp.Resources, a)
	}
	return resp
}

// The checks a proxy makes of each response: its group's config, the
// same resources for the same version in any order, never another's.
func TestContentsCheck(t *testing.T) {
	cs := &contents{}
	a := groupResponse(t, 20001, false)
	r := received(t, a)
	if r.version != a.GetVersionInfo() || r.typeURL != resource.ClusterType || r.nonce != "7" || r.count != len(a.GetResources()) {
		t.Fatalf("read version %q type %q nonce %q count %d from %v", r.version, r.typeURL, r.nonce, r.count, a)
	}
	if err := cs.check(r, 20001); err != nil {
		t.Errorf("its own group's config: %v", err)
	}
	if err := cs.check(received(t, groupResponse(t, 20001, true)), 20001); err != nil {
		t.Errorf("the same resources in another order: %v", err)
	}
	if err := cs.check(received(t, a), 20002); err == nil || !strings.Contains(err.Error(), "another group") {
		t.Errorf("another group's config: got %v, want an error", err)
	}
	changed := proto.Clone(a).(*discoveryv3.DiscoveryResponse)
	changed.Resources = changed.Resources[1:]
	if err := cs.check(received(t, changed), 20001); err == nil || !strings.Contains(err.Error(), "two different contents") {
		t.Errorf("other resources under the same version: got %v, want an error", err)
	}
	empty := &discoveryv3.DiscoveryResponse{TypeUrl: resource.ClusterType, VersionInfo: "x"}
	if err := cs.check(received(t, empty), 20001); err == nil {
		t.Error("a response without resources: no error")
	}
}
