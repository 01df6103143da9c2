package xds

import (
	"encoding/json"
	"math"
	"slices"
	"unicode/utf8"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/sidecar-injector/sidecar-injector/envoy/nodemeta"
)

// A stream's first request carries its node, whose metadata is a
// google.protobuf.Struct. Decoding it into Struct and Value messages, to
// turn them into a map and then JSON for nodemeta.Parse, was a sixth of the
// server's CPU with 20,000 proxies connecting. decodeWithMetadata reads the
// request with the metadata cut out, and the metadata from its encoding
// straight into the map Struct.AsMap makes (metadataMap), whose JSON is
// then what the Struct's would be. Anything it does not expect (a second
// node or metadata field, an unknown field, a duplicate key, a number JSON
// cannot hold, deep nesting) makes it decline, and the request is decoded
// as a whole: FuzzMetadataMap checks that whatever it accepts it reads as
// protobuf and AsMap do.

// Field numbers of DiscoveryRequest.node and Node.metadata.
var (
	requestNodeField  = fieldNumber((&discoveryv3.DiscoveryRequest{}).ProtoReflect(), "node")
	nodeMetadataField = fieldNumber((&corev3.Node{}).ProtoReflect(), "metadata")
)

func fieldNumber(m protoreflect.Message, name protoreflect.Name) protowire.Number {
	return m.Descriptor().Fields().ByName(name).Number()
}

// decodeWithMetadata decodes a request that carries a node with metadata:
// the request with its node, but for the node's metadata, and the
// metadata's JSON (as json.Marshal(metadata.AsMap()) writes it). ok is
// false when it declines; decode the request whole then.
func decodeWithMetadata(b []byte) (req *discoveryv3.DiscoveryRequest, metadataJSON []byte, ok bool) {
	rest, nodeB, ok := cutField(b, requestNodeField)
	if !ok || nodeB == nil {
		return nil, nil, false
	}
	nodeRest, md, ok := cutField(nodeB, nodeMetadataField)
	// Over the cap it is decoded whole, to measure the Struct as the
	// reference does.
	if !ok || md == nil || len(md) > nodemeta.MaxMetadataBytes {
		return nil, nil, false
	}
	m, ok := metadataMap(md)
	if !ok || len(m) == 0 { // no keys: the reference names it missing
		return nil, nil, false
	}
	js, err := json.Marshal(m)
	if err != nil {
		return nil, nil, false
	}
	req = &discoveryv3.DiscoveryRequest{}
	node := &corev3.Node{}
	if proto.Unmarshal(rest, req) != nil || proto.Unmarshal(nodeRest, node) != nil {
		return nil, nil, false
	}
	req.Node = node
	return req, js, true
}

// cutField finds the field num (length-delimited) of an encoded message:
// the message without it, and its contents (nil when absent). ok is false
// when the message is malformed or holds the field more than once (which
// protobuf merges).
func cutField(b []byte, num protowire.Number) (rest, field []byte, ok bool) {
	start, end := -1, -1
	for off := 0; off < len(b); {
		n, typ, tagLen := protowire.ConsumeTag(b[off:])
		if tagLen < 0 {
			return nil, nil, false
		}
		valLen := protowire.ConsumeFieldValue(n, typ, b[off+tagLen:])
		if valLen < 0 {
			return nil, nil, false
		}
		if n == num {
			if start >= 0 || typ != protowire.BytesType {
				return nil, nil, false
			}
			v, _ := protowire.ConsumeBytes(b[off+tagLen:])
			field = v
			start, end = off, off+tagLen+valLen
		}
		off += tagLen + valLen
	}
	if start < 0 {
		return b, nil, true
	}
	rest = make([]byte, 0, len(b)-(end-start))
	rest = append(append(rest, b[:start]...), b[end:]...)
	return rest, field, true
}

// Field numbers of google.protobuf.Struct, its map entries, Value and
// ListValue.
const (
	structFields   = 1 // map<string, Value>
	entryKey       = 1
	entryValue     = 2
	valueNull      = 1
	valueNumber    = 2
	valueString    = 3
	valueBool      = 4
	valueStruct    = 5
	valueList      = 6
	listValues     = 1
	maxStructDepth = 32
)

// metadataMap reads an encoded Struct into the map its AsMap returns.
func metadataMap(b []byte) (map[string]any, bool) { return readStruct(b, 0) }

func readStruct(b []byte, depth int) (map[string]any, bool) {
	if depth > maxStructDepth {
		return nil, false
	}
	m := map[string]any{}
	entries := 0
	for len(b) > 0 {
		entry, rest, ok := consumeBytesField(b, structFields)
		if !ok {
			return nil, false
		}
		b = rest
		key, val, ok := readEntry(entry)
		if !ok {
			return nil, false
		}
		v, ok := readValue(val, depth)
		if !ok {
			return nil, false
		}
		entries++
		m[key] = v
	}
	if len(m) != entries { // a key twice: protobuf keeps the last
		return nil, false
	}
	return m, true
}

// readEntry reads a map entry that holds its key and its value once each.
func readEntry(b []byte) (key string, val []byte, ok bool) {
	var haveKey, haveVal bool
	for len(b) > 0 {
		n, typ, tagLen := protowire.ConsumeTag(b)
		if tagLen < 0 || typ != protowire.BytesType {
			return "", nil, false
		}
		v, vLen := protowire.ConsumeBytes(b[tagLen:])
		if vLen < 0 {
			return "", nil, false
		}
		switch {
		case n == entryKey && !haveKey:
			if !utf8.Valid(v) {
				return "", nil, false
			}
			key, haveKey = string(v), true
		case n == entryValue && !haveVal:
			val, haveVal = v, true
		default:
			return "", nil, false
		}
		b = b[tagLen+vLen:]
	}
	return key, val, haveKey && haveVal
}

// readValue reads a Value that sets exactly one kind.
func readValue(b []byte, depth int) (any, bool) {
	n, typ, tagLen := protowire.ConsumeTag(b)
	if tagLen < 0 {
		return nil, false
	}
	b = b[tagLen:]
	var v any
	var vLen int
	switch {
	case n == valueNull && typ == protowire.VarintType:
		var x uint64
		x, vLen = protowire.ConsumeVarint(b)
		if x != 0 {
			return nil, false
		}
	case n == valueNumber && typ == protowire.Fixed64Type:
		var x uint64
		x, vLen = protowire.ConsumeFixed64(b)
		f := math.Float64frombits(x)
		if math.IsNaN(f) || math.IsInf(f, 0) {
			return nil, false
		}
		v = f
	case n == valueString && typ == protowire.BytesType:
		var s []byte
		s, vLen = protowire.ConsumeBytes(b)
		if !utf8.Valid(s) {
			return nil, false
		}
		v = string(s)
	case n == valueBool && typ == protowire.VarintType:
		var x uint64
		x, vLen = protowire.ConsumeVarint(b)
		if x > 1 {
			return nil, false
		}
		v = x == 1
	case n == valueStruct && typ == protowire.BytesType:
		var s []byte
		if s, vLen = protowire.ConsumeBytes(b); vLen >= 0 {
			m, ok := readStruct(s, depth+1)
			if !ok {
				return nil, false
			}
			v = m
		}
	case n == valueList && typ == protowire.BytesType:
		var l []byte
		if l, vLen = protowire.ConsumeBytes(b); vLen >= 0 {
			list, ok := readList(l, depth+1)
			if !ok {
				return nil, false
			}
			v = list
		}
	default:
		return nil, false
	}
	if vLen < 0 || vLen != len(b) { // malformed, or a second kind
		return nil, false
	}
	return v, true
}

func readList(b []byte, depth int) ([]any, bool) {
	if depth > maxStructDepth {
		return nil, false
	}
	out := []any{}
	for len(b) > 0 {
		val, rest, ok := consumeBytesField(b, listValues)
		if !ok {
			return nil, false
		}
		b = rest
		v, ok := readValue(val, depth)
		if !ok {
			return nil, false
		}
		out = append(out, v)
	}
	return slices.Clip(out), true
}

// consumeBytesField reads one length-delimited field num off the front of b.
func consumeBytesField(b []byte, num protowire.Number) (field, rest []byte, ok bool) {
	n, typ, tagLen := protowire.ConsumeTag(b)
	if tagLen < 0 || n != num || typ != protowire.BytesType {
		return nil, nil, false
	}
	v, vLen := protowire.ConsumeBytes(b[tagLen:])
	if vLen < 0 {
		return nil, nil, false
	}
	return v, b[tagLen+vLen:], true
}
