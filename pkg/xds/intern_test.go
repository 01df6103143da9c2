package xds

import (
	"runtime"
	"testing"
	"time"

	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
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
	// Within them, every chain but the app port's is shared.
	for _, name := range []string{ListenerInbound, ListenerInboundIPv6} {
		la := resourceByName(sa, types.Listener, name).(*listenerv3.Listener)
		lb := resourceByName(sb, types.Listener, name).(*listenerv3.Listener)
		same := 0
		for _, ca := range la.GetFilterChains() {
			for _, cb := range lb.GetFilterChains() {
				if ca.GetName() == cb.GetName() {
					same++
					if ca != cb {
						t.Errorf("listener %s: filter chain %s not shared", name, ca.GetName())
					}
				}
			}
		}
		if la.GetDefaultFilterChain() != lb.GetDefaultFilterChain() || la.GetAddress() != lb.GetAddress() || la.GetListenerFilters()[0] != lb.GetListenerFilters()[0] {
			t.Errorf("listener %s: default chain, address or listener filter not shared", name)
		}
		if same == 0 || same != len(la.GetFilterChains())-1 {
			t.Errorf("listener %s: %d of %d chains in common, want all but the app port's", name, same, len(la.GetFilterChains()))
		}
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
	for in.clusters.len()+in.listeners.len() > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d clusters and %d listeners still interned with no snapshot left", in.clusters.len(), in.listeners.len())
		}
		runtime.GC()
		time.Sleep(10 * time.Millisecond)
	}
}
