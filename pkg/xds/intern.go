package xds

import (
	"crypto/sha256"
	"runtime"
	"sync"
	"weak"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"google.golang.org/protobuf/proto"
)

// interner shares equal resources between snapshots: most of a snapshot
// (the outbound and stats listeners, the passthrough and blackhole
// clusters, the cluster of a common app port) is the same for most pods,
// and each distinct group used to hold its own copy (about 155 KB per
// snapshot). A resource is looked up by the digest of its deterministic
// encoding; the table holds weak pointers, so a resource no live snapshot
// uses is collected and its entry removed. Resources are never modified
// once built, so sharing them is safe.
type interner struct {
	clusters  internTable[clusterv3.Cluster]
	listeners internTable[listenerv3.Listener]
	// The parts of listeners that differ elsewhere: the inbound listeners
	// of two pods with different app ports still have the same address,
	// listener filters, blackhole chains and passthrough chain.
	chains          internTable[listenerv3.FilterChain]
	listenerFilters internTable[listenerv3.ListenerFilter]
	addresses       internTable[corev3.Address]
}

type internTable[T any] struct {
	mu sync.Mutex
	m  map[[sha256.Size]byte]weak.Pointer[T]
}

func (t *internTable[T]) intern(key [sha256.Size]byte, v *T) *T {
	t.mu.Lock()
	defer t.mu.Unlock()
	if wp, ok := t.m[key]; ok {
		if old := wp.Value(); old != nil {
			return old
		}
	}
	if t.m == nil {
		t.m = map[[sha256.Size]byte]weak.Pointer[T]{}
	}
	wp := weak.Make(v)
	t.m[key] = wp
	runtime.AddCleanup(v, func(key [sha256.Size]byte) {
		t.mu.Lock()
		defer t.mu.Unlock()
		if cur, ok := t.m[key]; ok && cur == wp {
			delete(t.m, key)
		}
	}, key)
	return v
}

// len is the number of resources held (live or not yet cleaned up).
func (t *internTable[T]) len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.m)
}

// intern returns the shared copy of r, whose deterministic encoding
// (with its name) hashes to key.
func (in *interner) intern(key [sha256.Size]byte, r types.Resource) types.Resource {
	if in == nil {
		return r
	}
	switch v := r.(type) {
	case *clusterv3.Cluster:
		return in.clusters.intern(key, v)
	case *listenerv3.Listener:
		shared := in.listeners.intern(key, v)
		if shared == v { // new: not yet seen by any other snapshot
			in.internParts(v)
		}
		return shared
	}
	return r
}

// internParts replaces the parts of l, a listener no snapshot holds yet,
// by the shared copies of equal ones.
func (in *interner) internParts(l *listenerv3.Listener) {
	l.Address = internMessage(&in.addresses, l.Address)
	for i, f := range l.GetListenerFilters() {
		l.ListenerFilters[i] = internMessage(&in.listenerFilters, f)
	}
	for i, c := range l.GetFilterChains() {
		l.FilterChains[i] = internMessage(&in.chains, c)
	}
	l.DefaultFilterChain = internMessage(&in.chains, l.DefaultFilterChain)
}

// internMessage returns the shared copy of m, looked up by the digest of
// its deterministic encoding; m itself when it is nil or cannot be encoded
// (the resource holding it was encoded already).
func internMessage[T any, P interface {
	*T
	proto.Message
}](t *internTable[T], m P) P {
	if m == nil {
		return m
	}
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(m)
	if err != nil {
		return m
	}
	return t.intern(sha256.Sum256(b), m)
}
