package xds

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"reflect"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"golang.org/x/time/rate"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/status"

	"github.com/sidecar-injector/sidecar-injector/envoy/nodemeta"
	"github.com/sidecar-injector/sidecar-injector/internal/stack"
)

// Server serves snapshots built from each proxy's own metadata over ADS
// (state of the world; see adsServer): it creates a node group's snapshot
// on its first request, clears it when the group's last stream closes,
// pushes a new one to the group's streams when the mesh settings change,
// counts requests, ACKs and NACKs, and keeps a NACKed version from being
// sent again until the config changes.
type Server struct {
	log     *slog.Logger
	metrics *Metrics
	ctx     context.Context

	mu      sync.Mutex
	mesh    MeshSettings
	meshGen uint64
	groups  map[string]*group

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
	key     string
	info    NodeInfo
	members map[*stream]struct{} // under Server.mu
	ready   chan struct{}        // closed once the first build is done
	err     error                // of the first build
	snap    atomic.Pointer[groupSnapshot]
	// nacked holds "type version" pairs some proxy of the group rejected:
	// the first NACK of each is logged at Warn, the rest at Debug (a bad
	// config is rejected by every proxy of the group at once).
	nacked map[string]bool
}

// groupSnapshot is a group's snapshot as responses, by servedTypes index.
type groupSnapshot [len(servedTypes)]*response

// current is the group's snapshot; empty before its first build.
func (g *group) current() groupSnapshot {
	if p := g.snap.Load(); p != nil {
		return *p
	}
	return groupSnapshot{}
}

// NewServer makes a server with the given mesh settings. ctx bounds its
// workers and pushes; cancel it only when the gRPC server has stopped.
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
					stack.Grow[workerStack]()
					f()
				case <-ctx.Done():
					return
				}
			}
		}()
	}
	return s, nil
}

// GroupKeys lists the node groups held (each with its snapshot).
func (s *Server) GroupKeys() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	keys := make([]string, 0, len(s.groups))
	for k := range s.groups {
		keys = append(keys, k)
	}
	return keys
}

// XDS is the ADS service to register on a gRPC server, whose codec must be
// Codec().
func (s *Server) XDS() discoveryv3.AggregatedDiscoveryServiceServer { return adsServer{s: s} }

// Codec is the gRPC codec the server's responses and requests need.
func Codec() encoding.CodecV2 { return codec{} }

// workerStack is the stack room a worker asks for before each job: the
// collector halves the stacks of idle workers, and a job that grew it
// back deep in a decoder's recursion copied a deep stack (7% of the
// server's CPU with 20,000 proxies connecting).
type workerStack = [32 << 10]byte

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
func (s *Server) identify(st *stream, node *corev3.Node, metadataJSON []byte) error {
	if node == nil {
		node = &corev3.Node{}
	}
	var info NodeInfo
	var reason, claimed string
	var err error
	s.onWorker(func() {
		if metadataJSON != nil { // the node's Metadata, read by decodeWithMetadata
			md, perr := nodemeta.Parse(metadataJSON)
			info, reason, err = resolved(md, perr)
			claimed = md.PodIP
			return
		}
		info, reason, err = ResolveNode(node)
		claimed = node.GetMetadata().GetFields()["podIP"].GetStringValue()
	})
	if err != nil {
		s.metrics.InvalidMetadata.WithLabelValues(reason).Inc()
		s.warnings.Do(func() {
			s.log.Warn("node metadata unusable, serving the default snapshot", "rate_limited", true,
				"node", clipN(node.GetId(), maxIDLen), "reason", reason, "error", clipN(err.Error(), 512))
		})
	} else if s.checkPodIP && st.peer.IsValid() {
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
	st.node, st.nodeID, st.key = node, node.GetId(), key
	if err := s.join(st, info); err != nil {
		s.log.Error("snapshot build failed", "node", clipN(node.GetId(), maxIDLen), "key", key, "error", err)
		return status.Errorf(codes.Internal, "build config for node %q: %v", clipN(node.GetId(), maxIDLen), err)
	}
	// The metadata is read: from here on the node is known by its key, and
	// the stream keeps its node for its life. Dropping the parsed Struct
	// (up to 64 KiB) keeps a stream's cost small.
	node.Metadata = nil
	s.metrics.ConnectedProxies.Inc()
	s.log.Debug("proxy connected", "node", clipN(node.GetId(), maxIDLen), "key", key)
	return nil
}

// join adds a stream to the group of its key, building the group's
// snapshot if it is the first. Builds of different groups run
// concurrently.
func (s *Server) join(st *stream, info NodeInfo) error {
	s.mu.Lock()
	if g, ok := s.groups[st.key]; ok {
		g.members[st] = struct{}{}
		s.mu.Unlock()
		<-g.ready
		if g.err != nil {
			s.drop(g, st)
			return g.err
		}
		st.setGroup(g)
		return nil
	}
	g := &group{key: st.key, info: info, members: map[*stream]struct{}{st: {}}, ready: make(chan struct{})}
	s.groups[st.key] = g
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
		g.snap.Store(snap)
		break
	}
	close(g.ready)
	err := g.err
	s.mu.Unlock()
	if err != nil {
		s.drop(g, st)
		return err
	}
	st.setGroup(g)
	return nil
}

// leave drops a stream from its group; the last one clears the snapshot.
func (s *Server) leave(st *stream) { s.drop(st.g, st) }

func (s *Server) drop(g *group, st *stream) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(g.members, st)
	if len(g.members) > 0 || s.groups[g.key] != g {
		return
	}
	delete(s.groups, g.key)
	s.metrics.Snapshots.Dec()
}

// build builds a group's snapshot (on a worker: it recurses deeply) and
// makes its responses.
func (s *Server) build(info NodeInfo, mesh MeshSettings) (*groupSnapshot, error) {
	start := time.Now()
	var gs groupSnapshot
	var err error
	s.onWorker(func() {
		var snap *cache.Snapshot
		if snap, err = buildSnapshot(info, mesh, s.intern); err != nil {
			return
		}
		for i, typeURL := range servedTypes {
			if gs[i], err = newResponse(snap, typeURL); err != nil {
				return
			}
		}
	})
	s.metrics.BuildDuration.Observe(time.Since(start).Seconds())
	if err != nil {
		return nil, err
	}
	return &gs, nil
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
		snaps := make([]*groupSnapshot, len(batch))
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
		var woken []*stream
		s.mu.Lock()
		if s.meshGen != gen {
			s.mu.Unlock()
			return true, nil // a newer SetMesh took over
		}
		for i, g := range batch {
			if s.groups[g.key] != g {
				continue // its last stream closed meanwhile
			}
			g.snap.Store(snaps[i])
			for st := range g.members {
				woken = append(woken, st)
			}
			pushed++
		}
		s.mu.Unlock()
		for _, st := range woken {
			st.wake()
		}
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
