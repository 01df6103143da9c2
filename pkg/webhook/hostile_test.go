package webhook

import (
	"bytes"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/sidecar-injector/sidecar-injector/internal/poll"
)

// reviewsGet200 sends n valid reviews on a fresh client (its own
// connection) and fails unless every one is answered 200.
func reviewsGet200(t *testing.T, h *harness, http2 bool, n int) {
	t.Helper()
	c := h.client(http2)
	defer c.CloseIdleConnections()
	review := reviewBody(t, admissionV1, podRequest(t, loadPod(t)))
	for i := range n {
		req, _ := http.NewRequest(http.MethodPost, h.base+"/mutate", bytes.NewReader(review))
		req.Header.Set("Content-Type", "application/json")
		resp, b := h.do(c, req)
		if resp.StatusCode != 200 || !decodeAnswer(t, b).Response.Allowed {
			t.Fatalf("review %d on a fresh connection: HTTP %d %s", i, resp.StatusCode, b)
		}
	}
}

// Row 34: streams that send their headers and then no body hold no
// admission slot: two HTTP/2 connections with 250 such streams each, on a
// server whose in-flight cap is 8, while 10 real reviews get 200.
func TestBodylessStreamsHoldNoSlot(t *testing.T) {
	t.Parallel()
	h := newHarness(t, withConfig(func(c *Config) {
		c.MaxInFlight = 8
		c.MaxConcurrentStreams = 250
		c.MaxConnections = 8
		c.MemoryBudget = 256 << 20
		c.ReadTimeout = 2 * time.Minute // the streams must outlive a slow setup (-race, a busy machine)
	}))
	h.waitReady()
	addr := strings.TrimPrefix(h.base, "https://")
	const conns, streams = 2, 250
	for range conns {
		conn, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: h.ca.pool, NextProtos: []string{"h2"}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		if _, err := io.WriteString(conn, http2.ClientPreface); err != nil {
			t.Fatal(err)
		}
		fr := http2.NewFramer(conn, conn)
		var wmu sync.Mutex // the framer's writes are not safe for concurrent use
		wmu.Lock()
		if err := fr.WriteSettings(); err != nil {
			t.Fatal(err)
		}
		go func() { // read (and ack) what the server sends, until the conn closes
			for {
				f, err := fr.ReadFrame()
				if err != nil {
					return
				}
				if sf, ok := f.(*http2.SettingsFrame); ok && !sf.IsAck() {
					wmu.Lock()
					_ = fr.WriteSettingsAck()
					wmu.Unlock()
				}
			}
		}()
		var hb bytes.Buffer
		for i := range streams {
			hb.Reset()
			enc := hpack.NewEncoder(&hb)
			for _, f := range [][2]string{{":method", "POST"}, {":scheme", "https"}, {":authority", addr}, {":path", "/mutate"},
				{"content-type", "application/json"}, {"content-length", "2000"}} {
				_ = enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
			}
			if err := fr.WriteHeaders(http2.HeadersFrameParam{StreamID: uint32(2*i + 1), BlockFragment: hb.Bytes(), EndHeaders: true}); err != nil {
				t.Fatal(err)
			}
		}
		wmu.Unlock()
	}
	poll.True(t, time.Minute, "500 streams waiting for their bodies", func() bool { return h.srv.reading.Load() == conns*streams })
	reviewsGet200(t, h, true, 10)
	reviewsGet200(t, h, false, 10)
	if got := h.srv.reading.Load(); got != conns*streams {
		t.Errorf("%d streams still reading, want %d held throughout", got, conns*streams)
	}
}

// Row 34: 300 HTTP/1.1 connections trickling their bodies hold no slot
// either (the in-flight cap is 8): real reviews keep getting 200.
func TestTricklingBodiesHoldNoSlot(t *testing.T) {
	t.Parallel()
	h := newHarness(t, withConfig(func(c *Config) {
		c.MaxInFlight = 8
		// The tricklers' 300 connections and the real reviews', in the
		// memory budget.
		c.MaxConnections, c.MaxConcurrentStreams = 320, 4
		c.ReadTimeout = 2 * time.Minute // the tricklers must outlive a slow setup
		c.ReadHeaderTimeout = time.Minute
	}))
	h.waitReady()
	addr := strings.TrimPrefix(h.base, "https://")
	const n = 300
	dialing := make(chan struct{}, 8) // handshakes at once: a busy machine is slow at 300
	stop := make(chan struct{})
	var wg sync.WaitGroup
	t.Cleanup(func() { close(stop); wg.Wait() })
	var dialed atomic.Int32
	for range n {
		wg.Go(func() {
			dialing <- struct{}{}
			conn, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: h.ca.pool, NextProtos: []string{"http/1.1"}})
			<-dialing
			if err != nil {
				t.Errorf("dial: %v", err)
				return
			}
			defer conn.Close()
			dialed.Add(1)
			fmt.Fprintf(conn, "POST /mutate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n{")
			tick := time.NewTicker(200 * time.Millisecond)
			defer tick.Stop()
			for range 500 { // at most 100 s of trickling
				select {
				case <-stop:
					return
				case <-tick.C:
					if _, err := conn.Write([]byte(" ")); err != nil {
						return
					}
				}
			}
		})
	}
	poll.True(t, time.Minute, "300 connections trickling", func() bool { return h.srv.reading.Load() == n })
	reviewsGet200(t, h, false, 10)
	reviewsGet200(t, h, true, 10)
}

// The caps are checked together against the memory budget at start-up
// (row 35): caps whose sum cannot fit are an error naming every figure.
func TestCapsFitTheMemoryBudget(t *testing.T) {
	t.Parallel()
	base := DefaultConfig()
	base.TLSCertFile, base.TLSKeyFile = "c", "k"
	base.MemoryBudget = 128 << 20
	if err := base.Validate(); err != nil {
		t.Fatalf("the defaults do not fit 128 MiB: %v", err)
	}
	if b := base.Budget(); b.BodyBytes < DefaultMaxBodyBytes {
		t.Fatalf("body budget %d below one body", b.BodyBytes)
	}
	for _, tc := range []struct {
		name string
		f    func(*Config)
	}{
		{"many connections", func(c *Config) { c.MaxConnections = 4000 }},
		{"many streams", func(c *Config) { c.MaxConcurrentStreams = 250 }},
		{"many in flight", func(c *Config) { c.MaxInFlight = 10000 }},
		{"small budget", func(c *Config) { c.MemoryBudget = 32 << 20 }},
	} {
		c := base
		tc.f(&c)
		err := c.Validate()
		if err == nil || !strings.Contains(err.Error(), "do not fit the memory budget") || !strings.Contains(err.Error(), "--max-connections") {
			t.Errorf("%s: got %v, want the caps refused against the budget", tc.name, err)
		}
	}
}

// tinyPods is a JSON stream of n tiny pods.
func tinyPods(n int) []byte {
	var b bytes.Buffer
	for i := range n {
		fmt.Fprintf(&b, `{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p%d"},"spec":{"containers":[{"name":"a","image":"a"}]}}`+"\n", i)
	}
	return b.Bytes()
}

// Row 33: /explain with a 7 MiB stream of tiny pods is refused within its
// caps (body, pods), with peak heap under 64 MiB (it was 2.0 GB).
func TestExplainBounded(t *testing.T) {
	h := newHarness(t)
	h.waitReady()
	var peak atomic.Uint64
	stop := make(chan struct{})
	var sampler sync.WaitGroup
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	base := ms.HeapAlloc
	sampler.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			var m runtime.MemStats
			runtime.ReadMemStats(&m)
			if m.HeapAlloc > peak.Load() {
				peak.Store(m.HeapAlloc)
			}
			time.Sleep(2 * time.Millisecond) // sampling, not synchronising
		}
	})
	post := func(body io.Reader) (int, string) {
		req, _ := http.NewRequest(http.MethodPost, h.base+"/explain", body)
		req.Header.Set("Content-Type", "application/json")
		resp, b := h.do(h.h2, req)
		return resp.StatusCode, string(b)
	}
	big := tinyPods(70000) // about 7 MiB
	if len(big) < 7<<20 {
		big = append(big, bytes.Repeat([]byte(" "), 7<<20-len(big))...)
	}
	code, msg := post(io.MultiReader(bytes.NewReader(big))) // streamed: no Content-Length
	if code != http.StatusRequestEntityTooLarge || !strings.Contains(msg, "at most") {
		t.Errorf("7 MiB stream: HTTP %d %s, want 413", code, msg)
	}
	under := tinyPods(5000) // under the body cap, over the pod cap
	if len(under) >= maxExplainBodyBytes {
		t.Fatalf("test input %d bytes: want under the body cap", len(under))
	}
	code, msg = post(bytes.NewReader(under))
	if code != http.StatusRequestEntityTooLarge || !strings.Contains(msg, "too many pods") {
		t.Errorf("5,000 pods: HTTP %d %.200s, want 413 too many pods", code, msg)
	}
	code, msg = post(bytes.NewReader(tinyPods(maxExplainPods)))
	if code != 200 {
		t.Errorf("%d pods: HTTP %d %.200s, want 200", maxExplainPods, code, msg)
	}
	close(stop)
	sampler.Wait()
	grown := int64(peak.Load()) - int64(base)
	t.Logf("peak heap %d MiB above the %d MiB baseline", grown>>20, base>>20)
	if grown > 64<<20 {
		t.Errorf("peak heap grew %d MiB, want under 64 MiB", grown>>20)
	}
}
