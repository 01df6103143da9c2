package xds

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/netip"
	"strconv"
	"sync"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// The served types, in the order a push sends them: clusters before the
// listeners that use them.
var servedTypes = [...]string{resource.ClusterType, resource.ListenerType}

// servedType is the index of typeURL in servedTypes, or -1.
func servedType(typeURL string) int {
	for i, t := range servedTypes {
		if t == typeURL {
			return i
		}
	}
	return -1
}

// adsServer serves ADS, state of the world, one goroutine per stream.
//
// go-control-plane's server ran two goroutines per stream (one reading
// requests, one selecting over the cache's watches and the reader), opened
// a watch on its cache, under the cache's lock, for every request, and
// made each response anew. With 20,000 proxies connecting at once, that
// hand-off, the watches and the collector scanning 40,000 stacks took
// about half of the server's CPU. Here a stream's goroutine reads requests
// and answers them; a settings push answers from a short-lived goroutine
// (stream.wake). A response is the group's, made once (response), with the
// stream's nonce.
type adsServer struct {
	discoveryv3.UnimplementedAggregatedDiscoveryServiceServer
	s *Server
}

func (a adsServer) DeltaAggregatedResources(discoveryv3.AggregatedDiscoveryService_DeltaAggregatedResourcesServer) error {
	return status.Errorf(codes.Unimplemented, "delta xDS is not served; use ads_config api_type GRPC (state of the world)")
}

func (a adsServer) StreamAggregatedResources(gs discoveryv3.AggregatedDiscoveryService_StreamAggregatedResourcesServer) error {
	st := &stream{s: a.s, grpc: gs}
	if p, ok := peer.FromContext(gs.Context()); ok {
		st.peer, _ = peerIP(p)
	}
	defer st.close()
	for {
		req, metadataJSON, err := st.recv()
		if errors.Is(err, io.EOF) {
			return nil // the client is done
		}
		if err != nil {
			return err
		}
		if err := st.handle(req, metadataJSON); err != nil {
			return err
		}
	}
}

// stream is one ADS stream: one proxy.
type stream struct {
	s    *Server
	grpc discoveryv3.AggregatedDiscoveryService_StreamAggregatedResourcesServer
	peer netip.Addr // the client's address, when known

	// Set by the first request (identify), then read-only.
	node   *corev3.Node // later requests are pinned to it
	nodeID string
	key    string
	g      *group // written under mu (see setGroup)

	sendMu sync.Mutex // one send at a time, responses and pushes

	mu     sync.Mutex // guards what follows
	types  [len(servedTypes)]typeState
	nonces uint64
	closed bool
	waking bool // a push goroutine is running (wake)
	again  bool // and must look again when it is done
}

// typeState is what a stream knows of one type.
type typeState struct {
	// asked: the client has a request open, which the next response of
	// the type answers. State of the world has one response in flight per
	// type: the next waits for the client's ACK or NACK.
	asked bool
	has   string // the version the client has (or rejected: not resent)
	nonce string // of the last response of the type
	sent  string // version of the last response of the type
}

// inPlaceMax is the size up to which a request after the first is decoded
// on the stream's goroutine: an ACK names a type, a version, a nonce and
// perhaps a few resources.
const inPlaceMax = 512

// recv reads a request. The first (which carries the node, a deep Struct)
// and any large one are decoded on one of the server's workers (see
// Server.onWorker): on the stream's goroutine, with 20,000 proxies
// connecting at once, growing and copying stacks was 18% of the server's
// CPU. The first one's node metadata is read straight into JSON when it
// can be (decodeWithMetadata): metadataJSON is then set and the node has
// no Metadata.
func (st *stream) recv() (req *discoveryv3.DiscoveryRequest, metadataJSON []byte, err error) {
	var raw rawRequest
	if err := st.grpc.RecvMsg(&raw); err != nil {
		return nil, nil, err
	}
	req = &discoveryv3.DiscoveryRequest{}
	if st.node != nil && len(raw.b) <= inPlaceMax {
		err = proto.Unmarshal(raw.b, req)
	} else {
		st.s.onWorker(func() {
			if st.node == nil {
				if r, js, ok := decodeWithMetadata(raw.b); ok {
					req, metadataJSON = r, js
					return
				}
			}
			err = proto.Unmarshal(raw.b, req)
		})
	}
	if err != nil {
		return nil, nil, status.Errorf(codes.InvalidArgument, "decode the discovery request: %v", err)
	}
	return req, metadataJSON, nil
}

// handle takes one request: the node is checked (or identified, on the
// first), the request counted, and what the client is owed sent.
func (st *stream) handle(req *discoveryv3.DiscoveryRequest, metadataJSON []byte) error {
	s := st.s
	if err := st.checkNode(req.GetNode(), metadataJSON); err != nil {
		return err
	}
	typeURL := req.GetTypeUrl()
	if typeURL == "" {
		return status.Errorf(codes.InvalidArgument, "discovery request without a type URL: ADS requests must name their type")
	}
	t := servedType(typeURL)
	nack := req.GetErrorDetail() != nil
	s.metrics.request(t, typeURL, nack, req.GetResponseNonce() == "")

	rejected, stale := "", false
	if t >= 0 {
		st.mu.Lock()
		switch ts := &st.types[t]; {
		case ts.nonce != "" && req.GetResponseNonce() != ts.nonce:
			// Stale: about an earlier response than the last one, whose
			// own ACK or NACK is on its way.
			stale = true
		case nack && ts.nonce != "":
			// The client keeps the version it had; claiming the rejected
			// one means the next response is the next change, not it again.
			rejected = ts.sent
			ts.asked, ts.has = true, rejected
		default:
			ts.asked, ts.has = true, req.GetVersionInfo()
		}
		st.mu.Unlock()
	}
	if nack {
		s.rejected(st, typeURL, rejected, req)
	}
	if t < 0 || stale {
		// A type not served (our bootstrap asks for clusters and listeners
		// only) is left open, never answered.
		return nil
	}
	return st.flush()
}

// checkNode identifies the stream's node on its first request. A client
// may send its node again on later ones (Envoy without
// set_node_on_first_message_only); it must stay the same node.
func (st *stream) checkNode(node *corev3.Node, metadataJSON []byte) error {
	if st.node == nil {
		return st.s.identify(st, node, metadataJSON)
	}
	if node == nil {
		return nil
	}
	key := ""
	if node.GetId() == st.nodeID {
		st.s.onWorker(func() { key = NodeHash{}.ID(node) })
	}
	if key != st.key {
		return status.Errorf(codes.InvalidArgument, "node changed on the stream from %q to %q; open a new stream per node",
			clipN(st.nodeID, maxIDLen), clipN(node.GetId(), maxIDLen))
	}
	return nil
}

// setGroup makes g the stream's group (a push may look at it already).
func (st *stream) setGroup(g *group) {
	st.mu.Lock()
	st.g = g
	st.mu.Unlock()
}

// flush sends, type by type in servedTypes order, the group's current
// response where the client asked and has another version.
func (st *stream) flush() error {
	st.sendMu.Lock()
	defer st.sendMu.Unlock()
	for t := range servedTypes {
		out := st.next(t)
		if out == nil {
			continue
		}
		if err := st.grpc.SendMsg(out); err != nil {
			return err
		}
		st.s.metrics.responses[t].Inc()
	}
	return nil
}

// next is the response of type t the client is owed, with its nonce, or
// nil; a returned response counts as sent.
func (st *stream) next(t int) *outgoing {
	st.mu.Lock()
	defer st.mu.Unlock()
	r := st.owedOf(t)
	if r == nil {
		return nil
	}
	ts := &st.types[t]
	st.nonces++
	ts.asked, ts.nonce, ts.sent = false, strconv.FormatUint(st.nonces, 10), r.version
	return &outgoing{r: r, nonce: ts.nonce}
}

// owedOf is the group's response of type t when the client is owed it:
// it asked, and has another version. st.mu is held.
func (st *stream) owedOf(t int) *response {
	if st.closed || st.g == nil || !st.types[t].asked {
		return nil
	}
	if r := st.g.current()[t]; r != nil && r.version != st.types[t].has {
		return r
	}
	return nil
}

// owed reports whether a flush would send something. st.mu is held.
func (st *stream) owed() bool {
	for t := range servedTypes {
		if st.owedOf(t) != nil {
			return true
		}
	}
	return false
}

// wake sends what a new snapshot of the stream's group owes the client,
// from a goroutine of its own while it sends: the stream's goroutine waits
// in its read, and a client slow to read must not hold up the push to the
// others. A stream already sending looks again once done.
func (st *stream) wake() {
	st.mu.Lock()
	if !st.owed() {
		st.mu.Unlock()
		return
	}
	if st.waking {
		st.again = true
		st.mu.Unlock()
		return
	}
	st.waking = true
	st.mu.Unlock()
	go func() {
		for {
			err := st.flush()
			st.mu.Lock()
			if err != nil || !st.again {
				st.waking = false
				st.mu.Unlock()
				return // a failed send: the stream's goroutine sees its read fail
			}
			st.again = false
			st.mu.Unlock()
		}
	}()
}

// close ends the stream: nothing more is sent once a send in progress is
// over, and the stream leaves its group.
func (st *stream) close() {
	st.sendMu.Lock()
	st.mu.Lock()
	st.closed = true
	st.mu.Unlock()
	st.sendMu.Unlock()
	if st.g == nil {
		return
	}
	st.s.metrics.ConnectedProxies.Dec()
	st.s.leave(st)
	st.s.log.Debug("proxy disconnected", "node", clipN(st.nodeID, maxIDLen), "key", st.key)
}

// rejected logs a NACK: at Warn for the first of each type and version in
// a group (a bad config is rejected by every proxy of the group at once),
// else at Debug.
func (s *Server) rejected(st *stream, typeURL, version string, req *discoveryv3.DiscoveryRequest) {
	typ := TypeName(typeURL)
	level := slog.LevelDebug
	s.mu.Lock()
	if g := st.g; g != nil && s.groups[st.key] == g && !g.nacked[typ+" "+version] {
		if g.nacked == nil {
			g.nacked = map[string]bool{}
		}
		g.nacked[typ+" "+version] = true
		level = slog.LevelWarn
	}
	s.mu.Unlock()
	s.log.Log(context.Background(), level, "proxy rejected config",
		"node", clipN(st.nodeID, maxIDLen), "type", typ, "version", version, "nonce", clip(req.GetResponseNonce()),
		"error", clipN(req.GetErrorDetail().GetMessage(), 512))
}

// request counts a request of typeURL, whose servedTypes index is t (-1:
// not served).
func (m *Metrics) request(t int, typeURL string, nack, initial bool) {
	result := ResultACK
	switch {
	case nack:
		result = ResultNACK
	case initial:
		result = ResultInitial
	}
	var c prometheus.Counter
	if t >= 0 {
		c = m.requests[t][result]
	} else {
		c = m.Requests.WithLabelValues(TypeName(typeURL), result)
	}
	c.Inc()
}
