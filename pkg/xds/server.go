package xds

import (
	"context"
	"fmt"
	"hash/fnv"
	"log/slog"
	"net/netip"
	"reflect"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	sotw "github.com/envoyproxy/go-control-plane/pkg/server/sotw/v3"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"golang.org/x/time/rate"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
)

// Server serves snapshots built from each proxy's own metadata. It is the
// go-control-plane SnapshotCache (ADS, state of the world) plus the
// callbacks that create a node group's snapshot on its first request, clear
// it when the group's last stream closes, count requests, ACKs and NACKs,
// and keep a NACKed version from being sent again until the config changes.
type Server struct {
	log     *slog.Logger
	metrics *Metrics
	ctx     context.Context
	// shards are SnapshotCaches, each holding the snapshots of the groups
	// whose key hashes to it, behind a MuxCache: every request (ACKs
	// included) opens a watch under its cache's one mutex, so one cache for
	// 10,000 streams would serialise them all.
	shards []cache.SnapshotCache
	mux    *cache.MuxCache

	mu      sync.Mutex
	mesh    MeshSettings
	meshGen uint64
	groups  map[string]*group

	// streams holds *streamState by stream id. Each stream's callbacks run
	// on that stream's goroutine, so a streamState needs no lock of its own.
	streams sync.Map
	// nodeKeys maps the *corev3.Node of each open stream to its group key,
	// so the cache's NodeHash does not parse the metadata on every request.
	nodeKeys sync.Map

	// checkPodIP refuses a node whose metadata podIP is not the address
	// its stream comes from (SetCheckPodIP).
	checkPodIP bool
	// warnings about what clients send are rate-limited: one client
	// could otherwise flood the log.
	warnings rate.Sometimes
	// intern shares equal resources between the groups' snapshots.
	intern *interner
	// work feeds the few long-lived goroutines that do the deep work of a
	// stream (see onWorker).
	work chan func()
}

// SetCheckPodIP turns on (or off, for proxies behind NAT) the check that
// a node's metadata podIP is its connection's peer address (RELIABILITY.md
// row X2): a pod can only describe itself. Call it before serving.
func (s *Server) SetCheckPodIP(on bool) { s.checkPodIP = on }

// group is the set of open streams sharing one snapshot.
type group struct {
	key   string
	info  NodeInfo
	refs  int
	ready chan struct{} // closed once the first build is done
	err   error         // of the first build
	// nacked holds "type version" pairs some proxy of the group rejected:
	// the first NACK of each is logged at Warn, the rest at Debug (a bad
	// config is rejected by every proxy of the group at once).
	nacked map[string]bool
}

type streamState struct {
	peer   netip.Addr // the client's address, when known
	nodeID string
	node   *corev3.Node // the node of the first request; later requests are pinned to it
	key    string
	sent   map[string]sent // by type URL
}

// sent is the last response of a type on a stream.
type sent struct{ nonce, version string }

// NewServer makes a server with the given mesh settings. ctx bounds the
// cache's pushes; cancel it only when the gRPC server has stopped.
func NewServer(ctx context.Context, log *slog.Logger, metrics *Metrics, mesh MeshSettings) (*Server, error) {
	if err := mesh.Validate(); err != nil {
		return nil, err
	}
	s := &Server{log: log, metrics: metrics, ctx: ctx, mesh: mesh, groups: map[string]*group{},
		warnings: rate.Sometimes{First: 5, Interval: 10 * time.Second}, intern: &interner{}, work: make(chan func())}
	for range max(2, runtime.GOMAXPROCS(0)) {
		go func() {
			for {
				select {
				case f := <-s.work:
					f()
				case <-ctx.Done():
					return
				}
			}
		}()
	}
	s.mux = &cache.MuxCache{
		Classify:      func(r *cache.Request) string { return shardNames[shardIndex((cachedHash{s}).ID(r.GetNode()))] },
		ClassifyDelta: func(r *cache.DeltaRequest) string { return shardNames[shardIndex((cachedHash{s}).ID(r.GetNode()))] },
		Caches:        map[string]cache.Cache{},
	}
	for _, name := range shardNames {
		c := cache.NewSnapshotCache(true, cachedHash{s}, cpLogger{log})
		s.shards = append(s.shards, c)
		s.mux.Caches[name] = c
	}
	return s, nil
}

// cacheShards is the number of SnapshotCaches the groups are spread over.
const cacheShards = 16

var shardNames = func() []string {
	names := make([]string, cacheShards)
	for i := range names {
		names[i] = strconv.Itoa(i)
	}
	return names
}()

// shardIndex spreads group keys (hex digests) over the shards.
func shardIndex(key string) int {
	h := fnv.New32a()
	h.Write([]byte(key))
	return int(h.Sum32() % cacheShards)
}

func (s *Server) shard(key string) cache.SnapshotCache { return s.shards[shardIndex(key)] }

// StatusKeys lists the node groups the caches hold watch state for.
func (s *Server) StatusKeys() []string {
	var keys []string
	for _, c := range s.shards {
		keys = append(keys, c.GetStatusKeys()...)
	}
	return keys
}

// XDS is the go-control-plane server to register on a gRPC server (ADS only).
func (s *Server) XDS() serverv3.Server {
	// Ordered ADS: one response channel per stream and responses in the
	// order the cache produced them (CDS before LDS on a push).
	return adsServer{Server: serverv3.NewServer(s.ctx, s.mux, s.callbacks(), sotw.WithOrderedADS()), s: s}
}

// cachedHash is the cache's NodeHash: the group key of an open stream's
// node, computed once per stream; NodeHash for anything else.
type cachedHash struct{ s *Server }

func (h cachedHash) ID(node *corev3.Node) string {
	if key, ok := h.s.nodeKeys.Load(node); ok {
		return key.(string)
	}
	return NodeHash{}.ID(node)
}

func (s *Server) callbacks() serverv3.Callbacks {
	return serverv3.CallbackFuncs{
		StreamOpenFunc: func(ctx context.Context, id int64, typeURL string) error {
			if typeURL != resource.AnyType {
				return status.Errorf(codes.Unimplemented, "only ADS is served; configure Envoy with ads_config and ads {} config sources")
			}
			st := &streamState{sent: map[string]sent{}}
			if p, ok := peer.FromContext(ctx); ok {
				st.peer, _ = peerIP(p)
			}
			s.streams.Store(id, st)
			return nil
		},
		StreamRequestFunc:  s.onRequest,
		StreamResponseFunc: s.onResponse,
		StreamClosedFunc:   s.onClosed,
		DeltaStreamOpenFunc: func(context.Context, int64, string) error {
			return status.Errorf(codes.Unimplemented, "delta xDS is not served; use ads_config api_type GRPC (state of the world)")
		},
	}
}

func (s *Server) onRequest(id int64, req *discoveryv3.DiscoveryRequest) error {
	v, ok := s.streams.Load(id)
	if !ok {
		return status.Errorf(codes.Internal, "stream %d unknown", id)
	}
	st := v.(*streamState)
	if st.node == nil {
		if err := s.identify(st, req.GetNode()); err != nil {
			return err
		}
	} else if req.Node != st.node {
		// A client that sends its node on every request: it must stay the
		// same node, and the request is pinned to the first one.
		if req.GetNode().GetId() != st.nodeID || (cachedHash{s}).ID(req.GetNode()) != st.key {
			return status.Errorf(codes.InvalidArgument, "node changed on the stream from %q to %q; open a new stream per node", clipN(st.nodeID, maxIDLen), clipN(req.GetNode().GetId(), maxIDLen))
		}
		req.Node = st.node
	}

	typ := TypeName(req.GetTypeUrl())
	switch {
	case req.GetErrorDetail() != nil:
		s.metrics.Requests.WithLabelValues(typ, ResultNACK).Inc()
		rejected := ""
		if last, ok := st.sent[req.GetTypeUrl()]; ok && last.nonce == req.GetResponseNonce() {
			rejected = last.version
			// The cache resends whenever the request's version differs from
			// the snapshot's: claim the rejected version, so the next
			// response is the next config change.
			req.VersionInfo = rejected
		}
		level := slog.LevelDebug
		s.mu.Lock()
		if g, ok := s.groups[st.key]; ok && !g.nacked[typ+" "+rejected] {
			if g.nacked == nil {
				g.nacked = map[string]bool{}
			}
			g.nacked[typ+" "+rejected] = true
			level = slog.LevelWarn
		}
		s.mu.Unlock()
		s.log.Log(context.Background(), level, "proxy rejected config",
			"node", clipN(st.nodeID, maxIDLen), "type", typ, "version", rejected, "nonce", clip(req.GetResponseNonce()),
			"error", clipN(req.GetErrorDetail().GetMessage(), 512))
	case req.GetResponseNonce() == "":
		s.metrics.Requests.WithLabelValues(typ, ResultInitial).Inc()
	default:
		s.metrics.Requests.WithLabelValues(typ, ResultACK).Inc()
	}
	return nil
}

// onWorker runs f on one of the server's worker goroutines and waits for
// it. Reading node metadata (a deep protobuf Struct, through JSON) and
// building a snapshot recurse deeply: done on a stream's own goroutine,
// they grew its stack from 8 to 16-32 KiB, and 20,000 streams connecting
// at once copied stacks for 15% of the server's CPU and held hundreds of
// MiB more until collections shrank them again. The workers' stacks grow
// once.
func (s *Server) onWorker(f func()) {
	done := make(chan struct{})
	select {
	case s.work <- func() { defer close(done); f() }:
		<-done
	case <-s.ctx.Done(): // the workers are gone
		f()
	}
}

// identify reads the node of a stream's first request and makes sure its
// group's snapshot exists.
func (s *Server) identify(st *streamState, node *corev3.Node) error {
	if node == nil {
		node = &corev3.Node{}
	}
	var info NodeInfo
	var reason string
	var err error
	s.onWorker(func() { info, reason, err = ResolveNode(node) })
	if err != nil {
		s.metrics.InvalidMetadata.WithLabelValues(reason).Inc()
		s.warnings.Do(func() {
			s.log.Warn("node metadata unusable, serving the default snapshot", "rate_limited", true,
				"node", clipN(node.GetId(), maxIDLen), "reason", reason, "error", clipN(err.Error(), 512))
		})
	} else if s.checkPodIP && st.peer.IsValid() {
		claimed := node.GetMetadata().GetFields()["podIP"].GetStringValue()
		if ip, perr := netip.ParseAddr(claimed); perr != nil || ip.Unmap() != st.peer {
			s.metrics.InvalidMetadata.WithLabelValues(ReasonForeignPodIP).Inc()
			s.warnings.Do(func() {
				s.log.Warn("node refused: its metadata podIP is not its connection's address", "rate_limited", true,
					"node", clipN(node.GetId(), maxIDLen), "podIP", clipN(claimed, 64), "peer", st.peer.String())
			})
			return status.Errorf(codes.PermissionDenied, "node metadata podIP %q is not this connection's address %s: a proxy can only describe its own pod (behind NAT, run the xDS server with --check-pod-ip=false)", clipN(claimed, 64), st.peer)
		}
	}
	key := info.Key()
	if err := s.join(key, info); err != nil {
		s.log.Error("snapshot build failed", "node", clipN(node.GetId(), maxIDLen), "key", key, "error", err)
		return status.Errorf(codes.Internal, "build config for node %q: %v", clipN(node.GetId(), maxIDLen), err)
	}
	st.node, st.nodeID, st.key = node, node.GetId(), key
	s.nodeKeys.Store(node, key)
	// The metadata is read: from here on the node is known by its key
	// (cachedHash), and the stream keeps its node for its life. Dropping
	// the parsed Struct (up to 64 KiB) keeps a stream's cost small.
	node.Metadata = nil
	s.metrics.ConnectedProxies.Inc()
	s.log.Debug("proxy connected", "node", clipN(node.GetId(), maxIDLen), "key", key)
	return nil
}

// join adds a stream to the group of key, building its snapshot if it is
// the first. Builds of different groups run concurrently.
func (s *Server) join(key string, info NodeInfo) error {
	s.mu.Lock()
	if g, ok := s.groups[key]; ok {
		g.refs++
		s.mu.Unlock()
		<-g.ready
		if g.err != nil {
			s.leave(key)
		}
		return g.err
	}
	g := &group{key: key, info: info, refs: 1, ready: make(chan struct{})}
	s.groups[key] = g
	s.metrics.Snapshots.Inc()
	for {
		mesh, gen := s.mesh, s.meshGen
		s.mu.Unlock()
		snap, err := s.build(info, mesh)
		s.mu.Lock()
		if err != nil {
			g.err = err
			break
		}
		if gen != s.meshGen {
			continue // the settings changed during the build
		}
		if err := s.shard(key).SetSnapshot(s.ctx, key, snap); err != nil {
			g.err = fmt.Errorf("set snapshot: %w", err)
		}
		break
	}
	close(g.ready)
	err := g.err
	s.mu.Unlock()
	if err != nil {
		s.leave(key)
	}
	return err
}

// leave drops one stream from a group; the last one clears the snapshot.
func (s *Server) leave(key string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	g, ok := s.groups[key]
	if !ok {
		return
	}
	g.refs--
	if g.refs > 0 {
		return
	}
	delete(s.groups, key)
	s.shard(key).ClearSnapshot(key)
	s.metrics.Snapshots.Dec()
}

func (s *Server) build(info NodeInfo, mesh MeshSettings) (snap *cache.Snapshot, err error) {
	start := time.Now()
	s.onWorker(func() { snap, err = buildSnapshot(info, mesh, s.intern) })
	s.metrics.BuildDuration.Observe(time.Since(start).Seconds())
	return snap, err
}

func (s *Server) onResponse(_ context.Context, id int64, _ *discoveryv3.DiscoveryRequest, resp *discoveryv3.DiscoveryResponse) {
	if v, ok := s.streams.Load(id); ok {
		v.(*streamState).sent[resp.GetTypeUrl()] = sent{nonce: resp.GetNonce(), version: resp.GetVersionInfo()}
	}
	s.metrics.Responses.WithLabelValues(TypeName(resp.GetTypeUrl())).Inc()
}

func (s *Server) onClosed(id int64, _ *corev3.Node) {
	v, ok := s.streams.LoadAndDelete(id)
	if !ok {
		return
	}
	st := v.(*streamState)
	if st.node == nil {
		return
	}
	s.nodeKeys.Delete(st.node)
	s.metrics.ConnectedProxies.Dec()
	s.leave(st.key)
	s.log.Debug("proxy disconnected", "node", clipN(st.nodeID, maxIDLen), "key", st.key)
}

// SetMesh applies new mesh settings: every cached snapshot is rebuilt and
// set, which pushes it to that group's open streams. Equal settings are a
// no-op; it reports whether anything changed.
func (s *Server) SetMesh(mesh MeshSettings) (bool, error) {
	if err := mesh.Validate(); err != nil {
		return false, err
	}
	start := time.Now()
	s.mu.Lock()
	if reflect.DeepEqual(mesh, s.mesh) {
		s.mu.Unlock()
		return false, nil
	}
	s.mesh = mesh
	s.meshGen++
	gen := s.meshGen
	var groups []*group
	for _, g := range s.groups {
		select {
		case <-g.ready:
			if g.err == nil {
				groups = append(groups, g)
			}
		default: // still building: it sees the new generation and rebuilds
		}
	}
	s.mu.Unlock()

	// Build and hand over in batches: each batch's new snapshots replace
	// the old ones before the next batch is built, so a push holds at most
	// one batch twice (all of them at once doubled the server's memory for
	// a moment, past GOMEMLIMIT with 10,000 groups). Within a batch the
	// builds run in parallel and the hand-over comes after them, so the
	// streams woken by the first ones do not slow down the later builds.
	var built time.Duration
	pushed := 0
	for lo := 0; lo < len(groups); lo += pushBatch {
		batch := groups[lo:min(lo+pushBatch, len(groups))]
		bstart := time.Now()
		snaps := make([]*cache.Snapshot, len(batch))
		errs := make([]error, len(batch))
		var wg sync.WaitGroup
		next := atomic.Int64{}
		for range min(runtime.GOMAXPROCS(0), len(batch)) {
			wg.Go(func() {
				for i := int(next.Add(1) - 1); i < len(batch); i = int(next.Add(1) - 1) {
					snaps[i], errs[i] = s.build(batch[i].info, mesh)
				}
			})
		}
		wg.Wait()
		built += time.Since(bstart)
		for i, err := range errs {
			if err != nil {
				return true, fmt.Errorf("rebuild snapshot %s: %w", batch[i].key, err)
			}
		}
		s.mu.Lock()
		if s.meshGen != gen {
			s.mu.Unlock()
			return true, nil // a newer SetMesh took over
		}
		for i, g := range batch {
			if s.groups[g.key] != g {
				continue // its last stream closed meanwhile
			}
			if err := s.shard(g.key).SetSnapshot(s.ctx, g.key, snaps[i]); err != nil {
				s.mu.Unlock()
				return true, fmt.Errorf("set snapshot %s: %w", g.key, err)
			}
			pushed++
		}
		s.mu.Unlock()
	}
	d := time.Since(start)
	s.metrics.PushDuration.Observe(d.Seconds())
	s.log.Info("mesh settings applied", "snapshots", pushed, "duration", d, "build", built)
	return true, nil
}

// pushBatch is how many groups a settings push rebuilds before handing
// them over.
const pushBatch = 256

// maxIDLen bounds a node id in logs and errors: a pod name (253) and a
// namespace (63) with the dot between them.
const maxIDLen = 317

// clipN bounds a client-supplied string in logs and errors.
func clipN(s string, n int) string {
	if len(s) <= n {
		return strings.ToValidUTF8(s, "?")
	}
	return strings.ToValidUTF8(s[:n], "?") + "..."
}
