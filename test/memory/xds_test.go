package memory

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/sidecar-injector/sidecar-injector/envoy"
	"github.com/sidecar-injector/sidecar-injector/envoy/nodemeta"
	"github.com/sidecar-injector/sidecar-injector/test/testenv"
)

// startXDS runs `sidecar-injector xds` with the chart's memory limit (512Mi;
// the runtime keeps to 85% of it).
func startXDS(t *testing.T) *child {
	t.Helper()
	ports, err := testenv.FreePorts(2)
	if err != nil {
		t.Fatal(err)
	}
	args := []string{"xds", "--listen-address", "127.0.0.1:" + strconv.Itoa(ports[0]), "--health-address", "127.0.0.1:" + strconv.Itoa(ports[1]),
		"--log-format", "text", "--shutdown-delay", "0s", "--memory-limit", strconv.Itoa(512 << 20)}
	p := start(t, "xds", func(b testenv.ServerBinaries) string { return b.Injector }, args, fmt.Sprintf("http://127.0.0.1:%d/readyz", ports[1]))
	return &child{p: p, addr: "127.0.0.1:" + strconv.Itoa(ports[0]), health: "http://127.0.0.1:" + strconv.Itoa(ports[1])}
}

func proxyNode(t *testing.T, id string, appPorts ...uint32) *corev3.Node {
	t.Helper()
	md := nodemeta.Metadata{Version: nodemeta.Version, InboundPort: 10001, OutboundPort: 10002, StatsPort: 10090, AdminPort: 9901,
		PodIP: "127.0.0.1", ConfigHash: "memtest", InjectorVersion: "memtest"}
	for _, p := range appPorts {
		md.AppPorts = append(md.AppPorts, nodemeta.AppPort{Port: p})
	}
	s, err := envoy.MetadataStruct(md)
	if err != nil {
		t.Fatal(err)
	}
	return &corev3.Node{Id: id, Cluster: "default", Metadata: s}
}

// handshake opens a stream and takes CDS and LDS as Envoy does; the
// stream stays open until ctx ends.
func handshake(ctx context.Context, conn *grpc.ClientConn, node *corev3.Node) error {
	st, err := discoveryv3.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(ctx)
	if err != nil {
		return err
	}
	first := true
	for _, typ := range []string{resource.ClusterType, resource.ListenerType} {
		req := &discoveryv3.DiscoveryRequest{TypeUrl: typ}
		if first {
			req.Node, first = node, false
		}
		if err := st.Send(req); err != nil {
			return err
		}
		resp, err := st.Recv()
		if err != nil {
			return err
		}
		if err := st.Send(&discoveryv3.DiscoveryRequest{TypeUrl: typ, VersionInfo: resp.GetVersionInfo(), ResponseNonce: resp.GetNonce()}); err != nil {
			return err
		}
	}
	return nil
}

func dial(t *testing.T, addr string) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// Row X3: 10,000 streams with distinct 1-port metadata (10,000 groups).
// They took 1.77 GB; now about 470 MiB under the chart's 512Mi limit:
// about 160 MB of heap (equal resources shared between the groups'
// snapshots as their encodings, a stream's node metadata dropped once
// read) and 172 MB of goroutine stacks (two 8 KiB stacks a stream, in
// gRPC's and go-control-plane's per-stream goroutines; the deep work runs
// on the server's workers, so they do not grow), with the runtime kept to
// 85% of the limit so the binary's own pages fit beside it.
func TestXDSDistinctStreams(t *testing.T) {
	c := startXDS(t)
	const streams, perConn = 10000, 16 // --max-concurrent-streams
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	var ok, failed atomic.Int32
	var wg sync.WaitGroup
	sem := make(chan struct{}, 32) // handshakes at once
	for i := range streams {
		if i%perConn == 0 {
			conn := dial(t, c.addr)
			for j := range perConn {
				n := i + j
				wg.Go(func() {
					sem <- struct{}{}
					err := handshake(ctx, conn, proxyNode(t, fmt.Sprintf("p%d.default", n), uint32(20000+n)))
					<-sem
					if err != nil {
						if failed.Add(1) <= 3 {
							t.Errorf("stream %d: %v", n, err)
						}
						return
					}
					ok.Add(1)
				})
			}
		}
	}
	wg.Wait()
	hwm := c.vmHWM(t)
	if resp, err := http.Get(c.health + "/metrics"); err == nil {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		for _, l := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(l, "go_memstats_heap_alloc_bytes ") || strings.HasPrefix(l, "go_memstats_stack_inuse_bytes ") {
				t.Log(l)
			}
		}
	}
	t.Logf("%d streams in %d distinct groups got their config (%d failed); peak RSS %d MiB (%.1f KiB per stream)",
		ok.Load(), streams, failed.Load(), hwm>>20, float64(hwm)/1024/float64(streams))
	if ok.Load() != streams {
		t.Errorf("%d of %d streams got their config", ok.Load(), streams)
	}
	if hwm > 512<<20 {
		t.Errorf("peak RSS %d MiB, want at most 512 MiB (the chart's limit)", hwm>>20)
	}
}

// Row X3/X4: streams on one connection with distinct, maximal metadata
// (1,024 app ports) that never read: the server stays under 512 MiB (40
// such streams of 4,000 ports took 913 MB) and a normal client still gets
// its config. Streams beyond --max-concurrent-streams wait in the client.
func TestXDSGreedyStreamsOneConnection(t *testing.T) {
	c := startXDS(t)
	conn := dial(t, c.addr)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var opened atomic.Int32
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	for i := range 40 {
		wg.Go(func() {
			ports := make([]uint32, nodemeta.MaxAppPorts)
			for j := range ports {
				ports[j] = uint32(1 + i*1024 + j) // distinct per stream
			}
			st, err := discoveryv3.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(ctx)
			if err != nil {
				return // waited for a stream slot until the test ended
			}
			n := proxyNode(t, fmt.Sprintf("greedy%d.default", i), ports...)
			for _, typ := range []string{resource.ClusterType, resource.ListenerType} {
				if st.Send(&discoveryv3.DiscoveryRequest{TypeUrl: typ, Node: n}) != nil {
					return
				}
			}
			opened.Add(1) // and never reads
		})
	}
	deadline := time.Now().Add(30 * time.Second)
	for opened.Load() < 16 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	hctx, hcancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer hcancel()
	if err := handshake(hctx, dial(t, c.addr), proxyNode(t, "normal.default", 8080)); err != nil {
		t.Errorf("a normal client beside the greedy streams: %v", err)
	}
	hwm := c.vmHWM(t)
	t.Logf("%d greedy streams open on one connection; peak RSS %d MiB", opened.Load(), hwm>>20)
	if hwm > 512<<20 {
		t.Errorf("peak RSS %d MiB, want at most 512 MiB", hwm>>20)
	}
}
