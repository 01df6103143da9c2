package xds

import (
	"crypto/sha256"
	"runtime"
	"sync"
	"weak"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/runtime/protoiface"
)

// interner shares equal resources between snapshots: most of a snapshot
// (the outbound and stats listeners, the passthrough and blackhole
// clusters, the cluster of a common app port) is the same for most pods,
// and each distinct group used to hold its own copy (about 155 KB per
// snapshot). A resource is looked up by the digest of its deterministic
// encoding; the table holds weak pointers, so a resource no live snapshot
// uses is collected and its entry removed. Resources are never modified
// once built, so sharing them is safe.
//
// A shared resource is held as an *encoded: with its encoding, so that
// responses copy bytes instead of marshalling it again (see encoded).
type interner struct {
	resources internTable[encoded]
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

// lookup is the live shared value of key, if any.
func (t *internTable[T]) lookup(key [sha256.Size]byte) *T {
	t.mu.Lock()
	defer t.mu.Unlock()
	if wp, ok := t.m[key]; ok {
		return wp.Value()
	}
	return nil
}

// len is the number of resources held (live or not yet cleaned up).
func (t *internTable[T]) len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.m)
}

// intern returns the shared, encoded copy of r, whose deterministic
// encoding b (with its name) hashes to key: r itself, encoded, unless
// another snapshot published an equal one first.
func (in *interner) intern(key [sha256.Size]byte, r types.Resource, b []byte) types.Resource {
	// Share its parts before publishing it, so that no other snapshot
	// sees it while they change (the encoding stays the same: each part
	// is replaced by an equal one).
	if l, ok := r.(*listenerv3.Listener); ok {
		in.internParts(l)
	}
	return in.resources.intern(key, &encoded{Message: r.ProtoReflect(), name: cache.GetResourceName(r), b: b})
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

// encoded is a resource with its deterministic encoding, made once per
// distinct resource and shared by every snapshot and response holding it.
// go-control-plane's SnapshotCache marshals each resource of each response
// anew (a new cachedResource per response): that was 16% of the server's
// CPU with 10,000 proxies in 50 groups, and deep marshalling grew every
// stream goroutine's stack. An encoded resource marshals by handing out
// its encoding, capacity clipped so that an append copies it; the bytes are
// never written. Everything else (its name, reflection, JSON, comparison)
// is the resource's own, which must not change once encoded.
type encoded struct {
	protoreflect.Message // the resource's
	name                 string
	b                    []byte
}

// ProtoReflect makes an encoded resource a proto.Message (types.Resource).
func (e *encoded) ProtoReflect() protoreflect.Message { return e }

// Interface is the encoded resource itself, so that a round trip through
// reflection keeps its encoder.
func (e *encoded) Interface() protoreflect.ProtoMessage { return e }

// GetName is the resource's name (cache.GetResourceName).
func (e *encoded) GetName() string { return e.name }

// Resource is the resource the encoding is of.
func (e *encoded) Resource() proto.Message { return e.Message.Interface() }

// ProtoMethods gives the protobuf runtime the fast path: the encoding as
// it is. Without a Size method the runtime passes Marshal no buffer of its
// own to fill, and proto.Size falls back on the resource's reflection.
func (e *encoded) ProtoMethods() *protoiface.Methods { return &encodedMethods }

var encodedMethods = protoiface.Methods{
	Flags: protoiface.SupportMarshalDeterministic,
	Marshal: func(in protoiface.MarshalInput) (protoiface.MarshalOutput, error) {
		e := in.Message.(*encoded)
		if len(in.Buf) == 0 {
			return protoiface.MarshalOutput{Buf: e.b[:len(e.b):len(e.b)]}, nil
		}
		return protoiface.MarshalOutput{Buf: append(in.Buf, e.b...)}, nil
	},
	// The resource passed envoy.ValidateDeep before it was encoded.
	CheckInitialized: func(protoiface.CheckInitializedInput) (protoiface.CheckInitializedOutput, error) {
		return protoiface.CheckInitializedOutput{}, nil
	},
}
