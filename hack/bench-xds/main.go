// Command bench-xds is the load generator of the xDS scale benchmark
// (make bench-xds): it simulates N Envoy proxies, each one ADS stream with
// its own node id, over a few gRPC connections to one xds server on
// loopback, and measures
//
//   - connect: opening all N streams;
//   - first config: from the moment all streams are open until every proxy
//     has received CDS, ACKed it, received LDS and ACKed it (as Envoy does);
//   - push: from rewriting the mesh settings file until every proxy has
//     received and ACKed the new CDS and LDS versions;
//   - the server's RSS and CPU seconds (from /proc of -server-pid).
//
// Every phase is bounded by -timeout; only loopback addresses are accepted.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"runtime/debug"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/sidecar-injector/sidecar-injector/envoy"
	"github.com/sidecar-injector/sidecar-injector/envoy/nodemeta"
	"github.com/sidecar-injector/sidecar-injector/internal/stack"
)

type config struct {
	server     string
	health     string
	serverPID  int
	memLimit   int64
	n          int
	conns      int
	groups     int
	meshFile   string
	timeout    time.Duration
	jsonOutput bool
	cpuProfile string
}

// result is one run's figures.
type result struct {
	N             int     `json:"n"`
	Conns         int     `json:"conns"`
	Groups        int     `json:"groups"`
	MemoryLimit   int64   `json:"server_memory_limit_bytes"`
	ConnectS      float64 `json:"connect_seconds"`
	FirstConfigS  float64 `json:"first_config_seconds"`
	PushS         float64 `json:"push_seconds"`
	ServerPushS   float64 `json:"server_push_seconds"`
	RSSBaseKiB    int64   `json:"rss_base_kib"`
	RSSKiB        int64   `json:"rss_kib"`
	RSSPerProxy   float64 `json:"rss_per_proxy_kib"`
	RSSDeltaPer   float64 `json:"rss_delta_per_proxy_kib"`
	CPUConnectS   float64 `json:"server_cpu_connect_seconds"`
	CPUFirstS     float64 `json:"server_cpu_first_config_seconds"`
	CPUPushS      float64 `json:"server_cpu_push_seconds"`
	CPUTotalS     float64 `json:"server_cpu_total_seconds"`
	LoadgenCPUS   float64 `json:"loadgen_cpu_seconds"`
	Snapshots     float64 `json:"server_snapshots"`
	AfterCloseCxn float64 `json:"server_connected_after_close"`
}

func main() {
	var c config
	flag.StringVar(&c.server, "server", "127.0.0.1:18000", "xds gRPC address (loopback only)")
	flag.StringVar(&c.health, "health", "127.0.0.1:18080", "xds health address, for /metrics (loopback only)")
	flag.IntVar(&c.serverPID, "server-pid", 0, "pid of the xds server, for RSS and CPU from /proc")
	flag.Int64Var(&c.memLimit, "server-memory-limit", 0, "the server's --memory-limit in bytes, for the record")
	flag.IntVar(&c.n, "n", 1000, "simulated proxies (one ADS stream each)")
	flag.IntVar(&c.conns, "conns", 0, "gRPC connections the streams share (0: one per 16 streams, the server's --max-concurrent-streams)")
	flag.IntVar(&c.groups, "groups", 50, "distinct port layouts among the proxies (snapshots the server holds)")
	flag.StringVar(&c.meshFile, "mesh-file", "", "the server's --mesh-config file; rewritten for the push phase")
	flag.DurationVar(&c.timeout, "timeout", 120*time.Second, "bound of the whole run")
	flag.BoolVar(&c.jsonOutput, "json", false, "print the result as JSON")
	flag.StringVar(&c.cpuProfile, "cpu-profile", "", "write the load generator's own CPU profile to this file")
	render := flag.String("render", "", "print the JSON result in this file as a row of the docs/benchmarks.md table, and exit")
	flag.Parse()
	if *render != "" {
		if err := renderRow(*render); err != nil {
			fmt.Fprintln(os.Stderr, "bench-xds:", err)
			os.Exit(1)
		}
		return
	}
	if err := c.validate(); err != nil {
		fmt.Fprintln(os.Stderr, "bench-xds:", err)
		os.Exit(2)
	}
	if c.cpuProfile != "" {
		f, err := os.Create(c.cpuProfile)
		if err == nil {
			err = pprof.StartCPUProfile(f)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "bench-xds: -cpu-profile:", err)
			os.Exit(2)
		}
		defer f.Close()
		defer pprof.StopCPUProfile()
	}
	// The load generator shares the cores with the server: a higher GC
	// percent trades some of its memory (not measured) for CPU (measured:
	// both compete for the same two cores).
	debug.SetGCPercent(400)
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	defer cancel()
	r, err := run(ctx, c)
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench-xds:", err)
		os.Exit(1)
	}
	if c.jsonOutput {
		_ = json.NewEncoder(os.Stdout).Encode(r)
		return
	}

	fmt.Printf("N=%d conns=%d groups=%d snapshots=%.0f connect=%.2fs first_config=%.2fs push=%.2fs (server side %.3fs) "+
		"rss=%dKiB (base %dKiB) %.1fKiB/proxy (%.1f above base) server_cpu: connect=%.2fs first=%.2fs push=%.2fs total=%.2fs loadgen_cpu=%.2fs\n",
		r.N, r.Conns, r.Groups, r.Snapshots, r.ConnectS, r.FirstConfigS, r.PushS, r.ServerPushS,
		r.RSSKiB, r.RSSBaseKiB, r.RSSPerProxy, r.RSSDeltaPer, r.CPUConnectS, r.CPUFirstS, r.CPUPushS, r.CPUTotalS, r.LoadgenCPUS)
}

// renderRow prints a result as a row of the table in docs/benchmarks.md:
// | proxies | conns | snapshots | memory limit | connect | first config | push (server side) | RSS | RSS/proxy | server CPU | loadgen CPU |
func renderRow(path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var r result
	if err := json.Unmarshal(b, &r); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	limit := "none"
	if r.MemoryLimit > 0 {
		limit = fmt.Sprintf("%d Mi", r.MemoryLimit>>20)
	}
	fmt.Printf("| %d | %d | %.0f | %s | %.2f s | %.2f s | %.2f s (%.3f s) | %.0f MiB | %.1f KiB (%.1f above idle) | %.2f / %.2f / %.2f s | %.2f s |\n",
		r.N, r.Conns, r.Snapshots, limit, r.ConnectS, r.FirstConfigS, r.PushS, r.ServerPushS, float64(r.RSSKiB)/1024,
		r.RSSPerProxy, r.RSSDeltaPer, r.CPUConnectS, r.CPUFirstS, r.CPUPushS, r.LoadgenCPUS)
	return nil
}

func (c *config) validate() error {
	for _, a := range []string{c.server, c.health} {
		host, _, err := net.SplitHostPort(a)
		if err != nil {
			return fmt.Errorf("address %q: %w", a, err)
		}
		ip, err := netip.ParseAddr(host)
		if err != nil || !ip.IsLoopback() {
			return fmt.Errorf("address %q: want a loopback IP (127.0.0.1 or ::1); the benchmark never leaves the machine", a)
		}
	}
	if c.n < 1 || c.n > 100000 {
		return fmt.Errorf("-n %d: want 1-100000", c.n)
	}
	if c.conns == 0 {
		c.conns = (c.n + 15) / 16
	}
	if c.conns < 1 || c.conns > c.n {
		return fmt.Errorf("-conns %d: want 1-%d", c.conns, c.n)
	}
	if c.groups < 1 || c.groups > 40000 {
		return fmt.Errorf("-groups %d: want 1-40000 (one app port each, from 20000)", c.groups)
	}
	if c.meshFile == "" {
		return errors.New("-mesh-file: want the server's --mesh-config file")
	}
	if c.serverPID <= 0 {
		return errors.New("-server-pid: want the pid of the xds server")
	}
	return nil
}

// proxy is one simulated Envoy.
type proxy struct {
	id    int
	group int
	// first is its first request (CDS, with its node), encoded while the
	// streams open: an Envoy encodes its own requests on its own CPU, not
	// on the cores the server is measured on.
	first  encodedRequest
	stream grpc.ClientStream
	// acked versions by type, written by the proxy's goroutine.
	mu    sync.Mutex
	acked map[string]string
	// push phase: once both types are ACKed at versions other than base,
	// the proxy reports on pushDone, once.
	base     [2]string
	pushDone chan<- int
}

// nodes makes the nodes of the proxies, each with its own id and podIP:
// the metadata Struct of each group is made once (as the injector writes
// it, with envoy.MetadataStruct) and each proxy's shares its values but
// the podIP.
type nodes struct {
	groups    int
	templates []*structpb.Struct
}

func (ns *nodes) node(i int) (*corev3.Node, error) {
	if ns.templates == nil {
		ns.templates = make([]*structpb.Struct, ns.groups)
	}
	g := i % ns.groups
	if ns.templates[g] == nil {
		md := nodemeta.Metadata{
			Version: nodemeta.Version, InboundPort: 10001, OutboundPort: 10002, StatsPort: 10090, AdminPort: envoy.DefaultAdminPort,
			AppPorts:   []nodemeta.AppPort{{Port: appPort(g), Name: "http"}, {Port: 9090, Name: "metrics"}},
			PodIP:      "10.0.0.1",
			ConfigHash: "bench", InjectorVersion: "bench",
		}
		s, err := envoy.MetadataStruct(md)
		if err != nil {
			return nil, err
		}
		if _, ok := s.GetFields()[podIPKey]; !ok {
			return nil, fmt.Errorf("node metadata has no %q field", podIPKey)
		}
		ns.templates[g] = s
	}
	fields := maps.Clone(ns.templates[g].GetFields())
	fields[podIPKey] = structpb.NewStringValue(fmt.Sprintf("10.%d.%d.%d", 1+i>>16, (i>>8)&255, i&255))
	return &corev3.Node{Id: fmt.Sprintf("bench-%d.ns-%d", i, i%97), Cluster: fmt.Sprintf("ns-%d", i%97), Metadata: &structpb.Struct{Fields: fields}}, nil
}

// podIPKey is the metadata field of the pod's IP.
const podIPKey = "podIP"

// appPort is the app port of group g: each group has its own.
func appPort(g int) uint32 { return uint32(20000 + g) }

func run(ctx context.Context, c config) (*result, error) {
	r := &result{N: c.n, Conns: c.conns, Groups: c.groups, MemoryLimit: c.memLimit}
	cpu0, rss0, err := procStats(c.serverPID)
	if err != nil {
		return nil, err
	}
	r.RSSBaseKiB = rss0
	lg0 := selfCPU()

	conns := make([]*grpc.ClientConn, c.conns)
	for i := range conns {
		cc, err := grpc.NewClient(c.server, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			return nil, err
		}
		defer cc.Close()
		conns[i] = cc
	}

	// Phase 1: open every stream.
	streamCtx, closeStreams := context.WithCancel(ctx)
	defer closeStreams()
	proxies := make([]*proxy, c.n)
	ns := &nodes{groups: c.groups}
	start := time.Now()
	var openWG sync.WaitGroup
	var openErr atomic.Value
	sem := make(chan struct{}, 256)
	for i := range proxies {
		node, err := ns.node(i)
		if err != nil {
			return nil, err
		}
		first, err := proto.Marshal(&discoveryv3.DiscoveryRequest{TypeUrl: resource.ClusterType, Node: node})
		if err != nil {
			return nil, err
		}
		p := &proxy{id: i, group: i % c.groups, first: first, acked: map[string]string{}}
		proxies[i] = p
		openWG.Add(1)
		sem <- struct{}{}
		go func() {
			defer openWG.Done()
			defer func() { <-sem }()
			s, err := conns[p.id%len(conns)].NewStream(streamCtx, &discoveryv3.AggregatedDiscoveryService_ServiceDesc.Streams[0],
				discoveryv3.AggregatedDiscoveryService_StreamAggregatedResources_FullMethodName, grpc.ForceCodecV2(codec{}))
			if err != nil {
				openErr.Store(fmt.Errorf("open stream %d: %w", p.id, err))
				return
			}
			p.stream = s
		}()
	}
	openWG.Wait()
	if err, ok := openErr.Load().(error); ok {
		return nil, err
	}
	r.ConnectS = time.Since(start).Seconds()
	cpu1, _, err := procStats(c.serverPID)
	if err != nil {
		return nil, err
	}
	r.CPUConnectS = cpu1 - cpu0

	// Phase 2: every proxy does what Envoy does at start, all at once.
	contents := &contents{}
	firstDone := make(chan int, c.n)
	runErr := make(chan error, c.n)
	go0 := make(chan struct{})
	for _, p := range proxies {
		go func() {
			// A proxy's goroutine reads, checks and answers responses on
			// a 16 KiB stack; growing to it while shallow, before the
			// clock starts, keeps the generator's stack copying (6% of
			// its CPU) out of the server's measured time.
			stack.Grow[[8 << 10]byte]()
			<-go0
			if err := p.loop(contents, firstDone); streamCtx.Err() == nil { // loop returns only when its stream fails
				runErr <- fmt.Errorf("proxy %d: %w", p.id, err)
			}
		}()
	}
	t0 := time.Now()
	close(go0)
	if err := waitAll(ctx, firstDone, runErr, c.n, "first config"); err != nil {
		return nil, err
	}
	r.FirstConfigS = time.Since(t0).Seconds()
	cpu2, rss2, err := procStats(c.serverPID)
	if err != nil {
		return nil, err
	}
	r.CPUFirstS = cpu2 - cpu1
	base, err := checkGroups(proxies, nil)
	if err != nil {
		return nil, fmt.Errorf("first config: %w", err)
	}
	r.RSSKiB = rss2
	r.RSSPerProxy = float64(rss2) / float64(c.n)
	r.RSSDeltaPer = float64(rss2-rss0) / float64(c.n)
	pushDone := make(chan int, c.n)
	for _, p := range proxies {
		p.mu.Lock()
		p.base = [2]string{p.acked[resource.ClusterType], p.acked[resource.ListenerType]}
		p.pushDone = pushDone
		p.mu.Unlock()
	}
	pushSum0, _ := scrape(c.health, "sidecar_injector_xds_settings_push_duration_seconds_sum")
	r.Snapshots, _ = scrape(c.health, "sidecar_injector_xds_snapshots")

	// Phase 3: a settings change that alters both clusters and listeners.
	t1 := time.Now()
	if err := writeAtomic(c.meshFile, fmt.Sprintf("apiVersion: sidecar.io/v1alpha1\nkind: MeshConfig\nconnectTimeout: 3s\nidleTimeout: %ds\n", 1800+time.Now().Unix()%1000)); err != nil {
		return nil, err
	}
	if err := waitAll(ctx, pushDone, runErr, c.n, "push"); err != nil {
		return nil, err
	}
	r.PushS = time.Since(t1).Seconds()
	cpu3, rss3, err := procStats(c.serverPID)
	if err != nil {
		return nil, err
	}
	r.CPUPushS = cpu3 - cpu2
	if _, err := checkGroups(proxies, base); err != nil {
		return nil, fmt.Errorf("push: %w", err)
	}
	r.CPUTotalS = cpu3 - cpu0
	if rss3 > r.RSSKiB {
		r.RSSKiB = rss3
		r.RSSPerProxy = float64(rss3) / float64(c.n)
		r.RSSDeltaPer = float64(rss3-rss0) / float64(c.n)
	}
	if pushSum1, err := scrape(c.health, "sidecar_injector_xds_settings_push_duration_seconds_sum"); err == nil {
		r.ServerPushS = pushSum1 - pushSum0
	}
	r.LoadgenCPUS = selfCPU() - lg0

	// Close every stream: the server must drop every entry.
	closeStreams()
	for range 500 {
		v, err := scrape(c.health, "sidecar_injector_xds_connected_proxies")
		if err == nil && v == 0 {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	r.AfterCloseCxn, _ = scrape(c.health, "sidecar_injector_xds_connected_proxies")
	return r, nil
}

// loop is one proxy: CDS, ACK + LDS, ACK; then ACK whatever comes. Each
// response must carry its group's resources (checked once per distinct
// content by contents) before it is ACKed.
func (p *proxy) loop(contents *contents, firstDone chan<- int) error {
	send := func(typeURL, version, nonce string) error {
		return p.stream.SendMsg(&discoveryv3.DiscoveryRequest{TypeUrl: typeURL, VersionInfo: version, ResponseNonce: nonce})
	}
	if err := p.stream.SendMsg(p.first); err != nil {
		return err
	}
	reportedFirst := false
	for {
		var resp response
		if err := p.stream.RecvMsg(&resp); err != nil {
			return err
		}
		err := contents.check(&resp, appPort(p.group))
		resp.free()
		if err != nil {
			return err
		}
		if err := send(resp.typeURL, resp.version, resp.nonce); err != nil {
			return err
		}
		p.mu.Lock()
		first := p.acked[resp.typeURL] == ""
		p.acked[resp.typeURL] = resp.version
		haveBoth := p.acked[resource.ListenerType] != ""
		if p.pushDone != nil && p.acked[resource.ClusterType] != p.base[0] && p.acked[resource.ListenerType] != p.base[1] {
			p.pushDone <- p.id
			p.pushDone = nil
		}
		p.mu.Unlock()
		if resp.typeURL == resource.ClusterType && first {
			// Envoy asks for listeners once its clusters are in.
			if err := send(resource.ListenerType, "", ""); err != nil {
				return err
			}
		}
		if haveBoth && !reportedFirst {
			reportedFirst = true
			firstDone <- p.id
		}
	}
}

// checkGroups: every proxy of a group holds the same versions, and, when
// base is given (after the push), versions other than base's.
func checkGroups(proxies []*proxy, base map[int][2]string) (map[int][2]string, error) {
	got := map[int][2]string{}
	for _, p := range proxies {
		p.mu.Lock()
		v := [2]string{p.acked[resource.ClusterType], p.acked[resource.ListenerType]}
		p.mu.Unlock()
		if g, ok := got[p.group]; ok && g != v {
			return nil, fmt.Errorf("proxy %d of group %d holds versions %v, another of its group %v", p.id, p.group, v, g)
		}
		if b, ok := base[p.group]; ok && (v[0] == b[0] || v[1] == b[1]) {
			return nil, fmt.Errorf("proxy %d of group %d still holds versions %v after the push (before: %v)", p.id, p.group, v, b)
		}
		got[p.group] = v
	}
	return got, nil
}

func waitAll(ctx context.Context, done <-chan int, errs <-chan error, n int, phase string) error {
	for got := 0; got < n; {
		select {
		case <-done:
			got++
		case err := <-errs:
			return fmt.Errorf("%s: %w", phase, err)
		case <-ctx.Done():
			return fmt.Errorf("%s: %d of %d proxies done when -timeout ran out", phase, got, n)
		}
	}
	return nil
}

func writeAtomic(path, content string) error {
	tmp := filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".tmp")
	if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// procStats is a process's CPU seconds (user+system) and RSS in KiB.
func procStats(pid int) (cpu float64, rssKiB int64, err error) {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, 0, fmt.Errorf("server stats: %w", err)
	}
	// Fields after the ")" that closes the command name; utime and stime are
	// fields 14 and 15 of the whole line.
	s := string(stat)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	if len(fields) < 13 {
		return 0, 0, fmt.Errorf("server stats: short /proc/%d/stat", pid)
	}
	ut, _ := strconv.ParseFloat(fields[11], 64)
	st, _ := strconv.ParseFloat(fields[12], 64)
	const clkTck = 100 // USER_HZ on Linux
	status, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, fmt.Errorf("server stats: %w", err)
	}
	defer status.Close()
	sc := bufio.NewScanner(status)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			rssKiB, _ = strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
		}
	}
	return (ut + st) / clkTck, rssKiB, nil
}

func selfCPU() float64 {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}

// scrape reads one unlabelled sample from the server's /metrics.
func scrape(health, name string) (float64, error) {
	client := http.Client{Timeout: 5 * time.Second}
	resp, err := client.Get("http://" + health + "/metrics")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(body), "\n") {
		if rest, ok := strings.CutPrefix(line, name+" "); ok {
			return strconv.ParseFloat(strings.TrimSpace(rest), 64)
		}
	}
	return 0, fmt.Errorf("%s not in /metrics", name)
}
