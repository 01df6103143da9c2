package xds

import (
	"crypto/sha256"
	"runtime"
	"sync"
	"weak"

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
// uses is collected and its entry removed.
//
// A shared resource is held as an *encoded: its encoding only, which is
// what responses send (see encoded).
type interner struct {
	resources internTable[encoded]
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

// intern returns the shared copy of r, whose deterministic encoding b
// (with its name) hashes to key: r encoded, unless another snapshot
// published an equal one first.
func (in *interner) intern(key [sha256.Size]byte, r types.Resource, b []byte) types.Resource {
	return in.resources.intern(key, newEncoded(r, b))
}

// newEncoded is r held as its encoding b.
func newEncoded(r types.Resource, b []byte) *encoded {
	wire := resourceField(typeURLOf(r), b)
	return &encoded{typ: r.ProtoReflect().Type(), name: cache.GetResourceName(r), wire: wire, b: wire[len(wire)-len(b) : len(wire) : len(wire)]}
}

// encoded is a resource as its deterministic encoding, made once per
// distinct resource and shared by every snapshot and response holding it.
//
// Marshalling each resource of each response anew (as go-control-plane's
// SnapshotCache did) was 16% of the server's CPU with 10,000 proxies in 50
// groups, and deep marshalling grew every stream goroutine's stack. An
// encoded resource is held as the resources field of a DiscoveryResponse
// (an Any around the resource's encoding), which every response holding it
// sends as it is (see response); it marshals by handing out its encoding,
// capacity clipped so that an append copies it. The bytes are never
// written, so any number of responses share them. It holds nothing else: a
// resource's encoding is smaller than its Go structs (2.5 KB for the
// inbound listeners and cluster of a distinct group), and is all the server
// sends. Reflection (JSON, comparison, tests) works on the resource decoded
// from it once, on first use; like the encoding, it must not be modified.
type encoded struct {
	typ  protoreflect.MessageType
	name string
	wire []byte // the resource as a DiscoveryResponse's resources field
	b    []byte // the resource's encoding: the end of wire

	once    sync.Once
	decoded protoreflect.Message
}

// msg is the resource decoded, the first time it is asked for.
func (e *encoded) msg() protoreflect.Message {
	e.once.Do(func() {
		m := e.typ.New()
		if err := (proto.UnmarshalOptions{}).Unmarshal(e.b, m.Interface()); err != nil {
			panic("xds: decode an encoded " + string(e.typ.Descriptor().FullName()) + ": " + err.Error()) // it encoded without error
		}
		e.decoded = m
	})
	return e.decoded
}

// Resource is the resource the encoding is of.
func (e *encoded) Resource() proto.Message { return e.msg().Interface() }

// GetName is the resource's name (cache.GetResourceName).
func (e *encoded) GetName() string { return e.name }

// ProtoReflect makes an encoded resource a proto.Message (types.Resource)
// and is its own reflection: the resource's, but for ProtoMethods.
func (e *encoded) ProtoReflect() protoreflect.Message { return e }

func (e *encoded) Descriptor() protoreflect.MessageDescriptor { return e.typ.Descriptor() }
func (e *encoded) Type() protoreflect.MessageType             { return e.typ }
func (e *encoded) New() protoreflect.Message                  { return e.typ.New() }
func (e *encoded) Interface() protoreflect.ProtoMessage       { return e }
func (e *encoded) Range(f func(protoreflect.FieldDescriptor, protoreflect.Value) bool) {
	e.msg().Range(f)
}
func (e *encoded) Has(fd protoreflect.FieldDescriptor) bool { return e.msg().Has(fd) }
func (e *encoded) Clear(fd protoreflect.FieldDescriptor)    { e.msg().Clear(fd) }
func (e *encoded) Get(fd protoreflect.FieldDescriptor) protoreflect.Value {
	return e.msg().Get(fd)
}
func (e *encoded) Set(fd protoreflect.FieldDescriptor, v protoreflect.Value) { e.msg().Set(fd, v) }
func (e *encoded) Mutable(fd protoreflect.FieldDescriptor) protoreflect.Value {
	return e.msg().Mutable(fd)
}
func (e *encoded) NewField(fd protoreflect.FieldDescriptor) protoreflect.Value {
	return e.msg().NewField(fd)
}
func (e *encoded) WhichOneof(od protoreflect.OneofDescriptor) protoreflect.FieldDescriptor {
	return e.msg().WhichOneof(od)
}
func (e *encoded) GetUnknown() protoreflect.RawFields    { return e.msg().GetUnknown() }
func (e *encoded) SetUnknown(raw protoreflect.RawFields) { e.msg().SetUnknown(raw) }
func (e *encoded) IsValid() bool                         { return true }

// ProtoMethods gives the protobuf runtime the fast path: the encoding as
// it is. Without a Size method the runtime passes Marshal no buffer of its
// own to fill (proto.Size falls back on reflection).
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
