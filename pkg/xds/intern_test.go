package xds

import (
	"bytes"
	"runtime"
	"sync"
	"testing"
	"time"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
)

func resourceByName(snap *cache.Snapshot, t types.ResponseType, name string) types.Resource {
	return snap.Resources[t].Items[name].Resource
}

// Row X3: snapshots of distinct groups share every equal resource, so
// memory grows with what differs; resources no snapshot uses are dropped.
func TestSnapshotsShareEqualResources(t *testing.T) {
	in := &interner{}
	mesh := DefaultMeshSettings()
	a, b := DefaultNodeInfo(), DefaultNodeInfo()
	a.AppPorts, b.AppPorts = []uint32{8080}, []uint32{9090}
	sa, err := buildSnapshot(a, mesh, in)
	if err != nil {
		t.Fatal(err)
	}
	sb, err := buildSnapshot(b, mesh, in)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{ListenerOutbound, ListenerOutboundIPv6, ListenerStats, ListenerStatsIPv6} {
		if resourceByName(sa, types.Listener, name) != resourceByName(sb, types.Listener, name) {
			t.Errorf("listener %s not shared", name)
		}
	}
	for _, name := range []string{ClusterBlackhole, ClusterInboundPassthrough, ClusterOutboundPassthrough} {
		if resourceByName(sa, types.Cluster, name) != resourceByName(sb, types.Cluster, name) {
			t.Errorf("cluster %s not shared", name)
		}
	}
	if resourceByName(sa, types.Listener, ListenerInbound) == resourceByName(sb, types.Listener, ListenerInbound) {
		t.Error("the inbound listeners differ but are shared")
	}
	// Equal to a snapshot built without sharing.
	plain, err := BuildSnapshot(a, mesh)
	if err != nil {
		t.Fatal(err)
	}
	if plain.GetVersion(resource.ClusterType) != sa.GetVersion(resource.ClusterType) || plain.GetVersion(resource.ListenerType) != sa.GetVersion(resource.ListenerType) {
		t.Error("sharing changed the versions")
	}

	// Memory: 2,000 distinct groups, with and without sharing.
	perSnapshot := func(in *interner) uint64 {
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		snaps := make([]*cache.Snapshot, 2000)
		for i := range snaps {
			n := DefaultNodeInfo()
			n.AppPorts = []uint32{uint32(20000 + i)}
			if snaps[i], err = buildSnapshot(n, mesh, in); err != nil {
				t.Fatal(err)
			}
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		runtime.KeepAlive(snaps)
		return (after.HeapAlloc - before.HeapAlloc) / uint64(len(snaps))
	}
	unshared, shared := perSnapshot(nil), perSnapshot(&interner{})
	t.Logf("heap per distinct 1-port snapshot: %d B unshared, %d B shared", unshared, shared)
	if shared*2 > unshared {
		t.Errorf("sharing saves too little: %d B per snapshot, %d B without", shared, unshared)
	}

	// Dropped: once no snapshot holds them, the tables empty.
	sa, sb, plain = nil, nil, nil
	_, _, _ = sa, sb, plain
	deadline := time.Now().Add(10 * time.Second)
	for in.resources.len() > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d resources still interned with no snapshot left", in.resources.len())
		}
		runtime.GC()
		time.Sleep(10 * time.Millisecond)
	}
}

// A shared resource marshals to its deterministic encoding without
// marshalling it again: go-control-plane's MarshalResource (once per
// resource per response) hands out the same bytes, which no append can
// overwrite, and everything else about it is the resource's own.
func TestEncodedResources(t *testing.T) {
	in := &interner{}
	n := DefaultNodeInfo()
	n.AppPorts = []uint32{8080}
	snap, err := buildSnapshot(n, DefaultMeshSettings(), in)
	if err != nil {
		t.Fatal(err)
	}
	plain, err := BuildSnapshot(n, DefaultMeshSettings())
	if err != nil {
		t.Fatal(err)
	}
	for _, url := range []string{resource.ClusterType, resource.ListenerType} {
		for name, r := range snap.GetResources(url) {
			e, ok := r.(*encoded)
			if !ok {
				t.Fatalf("%s %s is a %T, want *encoded", TypeName(url), name, r)
			}
			want, err := proto.MarshalOptions{Deterministic: true}.Marshal(plain.GetResources(url)[name])
			if err != nil {
				t.Fatal(err)
			}
			got, err := cache.MarshalResource(r)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("%s %s: encoding differs from the resource's", TypeName(url), name)
			}
			if again, _ := cache.MarshalResource(r); &again[0] != &got[0] {
				t.Errorf("%s %s: marshalled twice into two buffers, want the shared encoding", TypeName(url), name)
			}
			_ = append(got, 0xff) // must copy, not write into the shared encoding
			if again, _ := cache.MarshalResource(r); !bytes.Equal(again, want) {
				t.Errorf("%s %s: an append changed the shared encoding", TypeName(url), name)
			}
			prefixed, err := proto.MarshalOptions{Deterministic: true}.MarshalAppend([]byte("x"), r)
			if err != nil || !bytes.Equal(prefixed, append([]byte("x"), want...)) {
				t.Errorf("%s %s: MarshalAppend = %d bytes, %v; want the prefix and the encoding", TypeName(url), name, len(prefixed), err)
			}
			if cache.GetResourceName(r) != name || proto.Size(r) != len(want) {
				t.Errorf("%s %s: name %q, size %d; want %q, %d", TypeName(url), name, cache.GetResourceName(r), proto.Size(r), name, len(want))
			}
			if !proto.Equal(e.Resource(), plain.GetResources(url)[name]) {
				t.Errorf("%s %s: not equal to the resource", TypeName(url), name)
			}
			gotJSON, err1 := protojson.Marshal(r)
			wantJSON, err2 := protojson.Marshal(plain.GetResources(url)[name])
			if err1 != nil || err2 != nil || !bytes.Equal(gotJSON, wantJSON) {
				t.Errorf("%s %s: JSON differs from the resource's (%v, %v)", TypeName(url), name, err1, err2)
			}
		}
	}
	// Many responses at once share it (run with -race): marshalling
	// writes nothing.
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for _, r := range snap.GetResources(resource.ListenerType) {
				resp := &discoveryv3.DiscoveryResponse{TypeUrl: resource.ListenerType}
				b, err := cache.MarshalResource(r)
				if err != nil {
					t.Error(err)
					return
				}
				resp.Resources = append(resp.Resources, &anypb.Any{TypeUrl: resource.ListenerType, Value: b})
				if _, err := proto.Marshal(resp); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
}
