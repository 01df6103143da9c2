package main

import (
	"errors"
	"fmt"
	"sync"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	// Also links the extension types the resources pack (tcp_proxy, ...),
	// which decoding them takes.
	"github.com/sidecar-injector/sidecar-injector/pkg/xds"
)

// codec is gRPC's proto codec, except that a DiscoveryResponse is read
// into a response: its version, type and nonce, and its resources as the
// bytes they came in. 20,000 simulated proxies get the same few contents
// 20,000 times; decoding each copy into Anys cost the load generator
// about as much CPU as the server spends answering.
type codec struct{}

func (codec) Name() string { return "proto" } // the content-subtype the server expects

func (codec) Marshal(v any) (mem.BufferSlice, error) {
	if b, ok := v.(encodedRequest); ok {
		return mem.BufferSlice{mem.SliceBuffer(b)}, nil
	}
	return encoding.GetCodecV2("proto").Marshal(v)
}

// encodedRequest is a DiscoveryRequest encoded beforehand; sent as it is.
type encodedRequest []byte

func (codec) Unmarshal(data mem.BufferSlice, v any) error {
	r, ok := v.(*response)
	if !ok {
		return encoding.GetCodecV2("proto").Unmarshal(data, v)
	}
	r.buf = data.MaterializeToBuffer(mem.DefaultBufferPool())
	if err := r.parse(r.buf.ReadOnlyData()); err != nil {
		r.free()
		return err
	}
	return nil
}

// response is a DiscoveryResponse as received. resources aliases the
// received buffer: valid until free.
type response struct {
	version, typeURL, nonce string
	resources               []byte // the encoded resources fields, in order
	count                   int
	buf                     mem.Buffer
}

func (r *response) free() {
	if r.buf != nil {
		r.buf.Free()
		r.buf = nil
	}
}

// Field numbers of envoy.service.discovery.v3.DiscoveryResponse.
const (
	fieldVersionInfo = 1
	fieldResources   = 2
	fieldTypeURL     = 4
	fieldNonce       = 5
)

func (r *response) parse(b []byte) error {
	start, end := -1, -1
	for off := 0; off < len(b); {
		num, typ, n := protowire.ConsumeTag(b[off:])
		if n < 0 {
			return fmt.Errorf("DiscoveryResponse: %w", protowire.ParseError(n))
		}
		fieldStart := off
		off += n
		m := protowire.ConsumeFieldValue(num, typ, b[off:])
		if m < 0 {
			return fmt.Errorf("DiscoveryResponse field %d: %w", num, protowire.ParseError(m))
		}
		value := b[off : off+m]
		off += m
		switch num {
		case fieldVersionInfo, fieldTypeURL, fieldNonce:
			s, k := protowire.ConsumeString(value)
			if k < 0 || typ != protowire.BytesType {
				return fmt.Errorf("DiscoveryResponse field %d: not a string", num)
			}
			switch num {
			case fieldVersionInfo:
				r.version = s
			case fieldTypeURL:
				r.typeURL = s
			default:
				r.nonce = s
			}
		case fieldResources:
			if start >= 0 && end != fieldStart {
				return errors.New("DiscoveryResponse: resources not contiguous")
			}
			if start < 0 {
				start = fieldStart
			}
			end = off
			r.count++
		}
	}
	if start >= 0 {
		r.resources = b[start:end]
	}
	return nil
}

// contents checks responses: the first response of each (type, version)
// is decoded in full, the others must carry the same
// resources (the same bytes, in any order: the server sends them in map
// order),
// and every response must hold the inbound cluster or filter chain of the
// receiving proxy's app port (its group's config, not another's).
type contents struct{ m sync.Map } // type + " " + version -> *content

type content struct {
	once    sync.Once
	entries map[string]bool // each resource field as encoded
	served  map[string]bool // names of its clusters or inbound filter chains
	err     error
}

func (cs *contents) check(r *response, appPort uint32) error {
	if r.count == 0 {
		return fmt.Errorf("%s response without resources", r.typeURL)
	}
	key := r.typeURL + " " + r.version
	v, ok := cs.m.Load(key)
	if !ok {
		v, _ = cs.m.LoadOrStore(key, &content{})
	}
	c := v.(*content)
	c.once.Do(func() { c.entries, c.served, c.err = decode(r.typeURL, r.resources) })
	if c.err != nil {
		return fmt.Errorf("%s version %s: %w", r.typeURL, r.version, c.err)
	}
	same := r.count == len(c.entries)
	for b := r.resources; same && len(b) > 0; {
		n := fieldLen(b)
		same = c.entries[string(b[:n])]
		b = b[n:]
	}
	switch {
	case !same:
		return fmt.Errorf("%s version %s sent with two different contents", r.typeURL, r.version)
	case !c.served[xds.InboundCluster(appPort)]:
		return fmt.Errorf("%s version %s has nothing for app port %d: another group's config", r.typeURL, r.version, appPort)
	}
	return nil
}

// fieldLen is the length of the first field of b, which parse checked.
func fieldLen(b []byte) int {
	num, typ, n := protowire.ConsumeTag(b)
	return n + protowire.ConsumeFieldValue(num, typ, b[n:])
}

// decode reads the resources fields b into their types, as Envoy would
// (the server ran envoy.ValidateDeep on each before serving it), and
// returns the fields (copied) and the names of the clusters or of the
// inbound listener's filter chains.
func decode(typeURL string, b []byte) (entries, served map[string]bool, err error) {
	entries = map[string]bool{}
	served = map[string]bool{}
	for len(b) > 0 {
		_, _, n := protowire.ConsumeTag(b)
		if n < 0 {
			return nil, nil, errors.New("malformed resources")
		}
		v, m := protowire.ConsumeBytes(b[n:])
		if m < 0 {
			return nil, nil, errors.New("malformed resources")
		}
		entries[string(b[:n+m])] = true
		b = b[n+m:]
		a := &anypb.Any{}
		if err := proto.Unmarshal(v, a); err != nil {
			return nil, nil, err
		}
		if a.GetTypeUrl() != typeURL {
			return nil, nil, fmt.Errorf("a resource of type %s", a.GetTypeUrl())
		}
		msg, err := a.UnmarshalNew()
		if err != nil {
			return nil, nil, err
		}
		switch r := msg.(type) {
		case *clusterv3.Cluster:
			served[r.GetName()] = true
		case *listenerv3.Listener:
			if r.GetName() != xds.ListenerInbound {
				continue
			}
			for _, fc := range r.GetFilterChains() {
				served[fc.GetName()] = true // an app port's is named after its cluster
			}
		default:
			return nil, nil, fmt.Errorf("unexpected %T", msg)
		}
	}
	if typeURL != resource.ClusterType && typeURL != resource.ListenerType {
		return nil, nil, fmt.Errorf("unexpected type %s", typeURL)
	}
	return entries, served, nil
}
