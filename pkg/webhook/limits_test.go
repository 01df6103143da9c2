package webhook

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/sidecar-injector/sidecar-injector/pkg/inject"
)

// countingReader serves n bytes (first, then spaces) and counts what was
// read; the count may be read while the transport still reads.
type countingReader struct {
	n     int64
	first []byte
	read  atomic.Int64
}

func (r *countingReader) Read(p []byte) (int, error) {
	done := r.read.Load()
	if done >= r.n {
		return 0, io.EOF
	}
	k := min(int64(len(p)), r.n-done)
	for i := range p[:k] {
		if off := done + int64(i); off < int64(len(r.first)) {
			p[i] = r.first[off]
		} else {
			p[i] = ' '
		}
	}
	r.read.Add(k)
	return int(k), nil
}

// Row 2: a wrong Content-Type is refused before the body is read. With
// "Expect: 100-continue" over HTTP/1.1 the client sends the body only when
// the handler starts reading it, so a body never read is never sent.
func TestContentTypeRefusedWithoutReadingBody(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.waitReady()
	body := &countingReader{n: 1 << 20}
	req, err := http.NewRequest(http.MethodPost, h.base+"/mutate", body)
	if err != nil {
		t.Fatal(err)
	}
	req.ContentLength = body.n
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Expect", "100-continue")
	resp, b := h.do(h.h1, req)
	if resp.StatusCode != http.StatusUnsupportedMediaType {
		t.Fatalf("HTTP %d, want 415: %s", resp.StatusCode, b)
	}
	if n := body.read.Load(); n != 0 {
		t.Errorf("the client sent %d body bytes: the server asked for the body of a request it refuses", n)
	}
}

// Row 4: bodies over the cap get 413 after at most limit+1 bytes, also when
// streamed without a Content-Length; the heap does not grow with the input.
func TestBodyCapStreamed(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.waitReady()
	review := reviewBody(t, admissionV1, podRequest(t, loadPod(t)))
	// The allocation of a body just over the cap is the reference: a body
	// nine times larger must not allocate more than that plus some slack.
	var refAlloc uint64
	for _, tc := range []struct {
		name   string
		client *http.Client
		size   int64
	}{
		{"HTTP/1.1 chunked, limit+1", h.h1, DefaultMaxBodyBytes + 1},
		{"HTTP/1.1 chunked, 64 MiB", h.h1, 64 << 20},
		{"HTTP/2 stream, 64 MiB", h.h2, 64 << 20},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := h.counter(ResultError, ReasonBodyTooLarge)
			// The review first, then spaces: valid JSON up to the cap.
			body := &countingReader{n: tc.size, first: review[:len(review)-1]}
			req, err := http.NewRequest(http.MethodPost, h.base+"/mutate", io.NopCloser(body)) // no length: chunked
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Content-Type", "application/json")
			var ms0, ms1 runtime.MemStats
			runtime.ReadMemStats(&ms0)
			resp, err := tc.client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			runtime.ReadMemStats(&ms1)
			if resp.StatusCode != http.StatusRequestEntityTooLarge {
				t.Fatalf("HTTP %d, want 413: %.300s", resp.StatusCode, b)
			}
			if !json.Valid(b) {
				t.Errorf("413 body is not JSON: %q", b)
			}
			// Transports and the kernel buffer some megabytes ahead; what
			// matters is that 64 MiB were not all consumed.
			if sent, slack := body.read.Load(), int64(DefaultMaxBodyBytes+16<<20); sent > slack {
				t.Errorf("client sent %d bytes before the 413; want at most about the cap %d", sent, DefaultMaxBodyBytes)
			}
			alloc := ms1.TotalAlloc - ms0.TotalAlloc
			if refAlloc == 0 {
				refAlloc = alloc
			} else if alloc > refAlloc+refAlloc/2+8<<20 {
				t.Errorf("a %d MiB body allocated %d MiB, a body just over the cap %d MiB: the heap grows with the input", tc.size>>20, alloc>>20, refAlloc>>20)
			}
			t.Logf("%d MiB sent of %d MiB; %d MiB allocated in the process", body.read.Load()>>20, tc.size>>20, alloc>>20)
			if got := h.counter(ResultError, ReasonBodyTooLarge) - before; got != 1 {
				t.Errorf("body_too_large counted %v times, want 1", got)
			}
		})
	}
}

// Row 27: slowloris headers and trickling bodies are cut off at
// ReadHeaderTimeout / ReadTimeout; goroutines return to their baseline and
// other requests keep their latency.
func TestSlowClientsCutOff(t *testing.T) {
	t.Parallel()
	const headerTimeout, readTimeout = 600 * time.Millisecond, 1200 * time.Millisecond
	h := newHarness(t, withConfig(func(c *Config) {
		c.ReadHeaderTimeout, c.ReadTimeout, c.WriteTimeout = headerTimeout, readTimeout, 5*time.Second
	}))
	h.waitReady()
	review := reviewBody(t, admissionV1, podRequest(t, loadPod(t)))
	addr := strings.TrimPrefix(h.base, "https://")

	// Baseline: the server idle, a connection pool warmed up then closed.
	h.post("/mutate", "application/json", review)
	h.h2.CloseIdleConnections()
	baseline := settleGoroutines(0)

	var wg sync.WaitGroup
	var cut atomic.Int32
	const slow = 8
	start := time.Now()
	for i := range slow {
		wg.Go(func() {
			conn, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: h.ca.pool, NextProtos: []string{"http/1.1"}})
			if err != nil {
				t.Errorf("dial: %v", err)
				return
			}
			defer conn.Close()
			var lines []string
			if i%2 == 0 { // slowloris: headers one byte at a time, never finished
				lines = []string{"POST /mutate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nX-Slow: " + strings.Repeat("a", 200)}
			} else { // trickle: complete headers, then the body one byte at a time
				lines = []string{fmt.Sprintf("POST /mutate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n", len(review)), string(review)}
			}
			done := make(chan struct{})
			go func() { // the writer trickles until the server hangs up
				defer close(done)
				for j, l := range lines {
					step := 1
					if i%2 == 1 && j == 0 {
						step = len(l)
					}
					for k := 0; k < len(l); k += step {
						if _, err := conn.Write([]byte(l[k:min(k+step, len(l))])); err != nil {
							return
						}
						time.Sleep(50 * time.Millisecond)
					}
				}
			}()
			conn.SetReadDeadline(time.Now().Add(20 * time.Second))
			resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
			if err == nil {
				// A trickled body is answered (408) before the hang-up.
				io.Copy(io.Discard, resp.Body)
				if resp.StatusCode != http.StatusRequestTimeout && resp.StatusCode != http.StatusBadRequest {
					t.Errorf("slow client %d: HTTP %d, want 408 or a hang-up", i, resp.StatusCode)
				}
				_, err = conn.Read(make([]byte, 1))
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				t.Errorf("slow client %d: the server never cut the connection", i)
				return
			}
			cut.Add(1)
			conn.Close()
			<-done
		})
	}

	// Meanwhile, normal requests keep working, each well inside the timeouts.
	var worst time.Duration
	for time.Since(start) < headerTimeout+300*time.Millisecond {
		t0 := time.Now()
		resp, b := h.post("/mutate", "application/json", review)
		if d := time.Since(t0); d > worst {
			worst = d
		}
		if resp.StatusCode != 200 || !decodeAnswer(t, b).Response.Allowed {
			t.Fatalf("a normal request failed while slow clients were connected: HTTP %d", resp.StatusCode)
		}
		time.Sleep(20 * time.Millisecond)
	}
	wg.Wait()
	elapsed := time.Since(start)
	if cut.Load() != slow {
		t.Errorf("%d of %d slow connections were cut", cut.Load(), slow)
	}
	if worst >= headerTimeout {
		t.Errorf("a normal request took %s while slow clients were connected (header timeout %s)", worst, headerTimeout)
	}
	t.Logf("%d slow connections cut within %s; normal requests meanwhile: worst %s", slow, elapsed.Round(time.Millisecond), worst)

	h.h2.CloseIdleConnections()
	if after := settleGoroutines(baseline); after > baseline {
		t.Errorf("goroutines did not return to the baseline: %d, baseline %d", after, baseline)
	}
	if got := h.counter(ResultError, ReasonReadError); got < slow/2 {
		t.Errorf("read_error counted %v times, want at least %d (the trickled bodies)", got, slow/2)
	}
}

// settleGoroutines waits (bounded) for the goroutine count to drop to
// target (or to stop changing when target is 0) and returns it.
func settleGoroutines(target int) int {
	deadline := time.Now().Add(10 * time.Second)
	last, stable := runtime.NumGoroutine(), 0
	for time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
		n := runtime.NumGoroutine()
		if target > 0 && n <= target {
			return n
		}
		if n == last {
			stable++
			if target == 0 && stable >= 5 {
				return n
			}
		} else {
			stable = 0
		}
		last = n
	}
	return last
}

// Row 28: above maxInFlight the excess is answered fast with 429, the
// in-flight gauge never exceeds the cap, and held requests still complete.
func TestFloodAboveMaxInFlight(t *testing.T) {
	t.Parallel()
	const maxInFlight = 4
	// Hold every slot with a request whose engine call blocks (a slot is
	// taken once the body is read: a slow body holds none, row 34).
	release := make(chan struct{})
	var calls atomic.Int32
	h := newHarness(t, withConfig(func(c *Config) { c.MaxInFlight = maxInFlight }), withServer(func(s *Server) {
		s.inject = func(in *inject.Injector, pod *corev1.Pod, ov inject.Overrides) (inject.Result, error) {
			if calls.Add(1) <= maxInFlight {
				<-release
			}
			return in.Inject(pod, ov)
		}
	}))
	h.waitReady()
	review := reviewBody(t, admissionV1, podRequest(t, loadPod(t)))
	inFlight := func() float64 {
		return gatherValue(t, h.reg, "sidecar_injector_admission_in_flight", nil)
	}

	var held sync.WaitGroup
	heldOK := atomic.Int32{}
	for range maxInFlight {
		held.Go(func() {
			req, _ := http.NewRequest(http.MethodPost, h.base+"/mutate", bytes.NewReader(review))
			req.Header.Set("Content-Type", "application/json")
			resp, err := h.h2.Do(req)
			if err != nil {
				t.Errorf("held request: %v", err)
				return
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == 200 && decodeAnswer(t, b).Response.Allowed {
				heldOK.Add(1)
			}
		})
	}
	deadline := time.Now().Add(10 * time.Second)
	for inFlight() < maxInFlight && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if got := inFlight(); got != maxInFlight {
		t.Fatalf("in-flight gauge %v, want %d held requests", got, maxInFlight)
	}

	// Flood: every request beyond the cap is refused at once, not queued:
	// all of them get 429 while the cap is still held (no wall-clock bound:
	// on a loaded machine the client's own queueing dominates).
	stopSampling := make(chan struct{})
	var peak atomic.Int64
	var sampler sync.WaitGroup
	sampler.Go(func() {
		for {
			select {
			case <-stopSampling:
				return
			default:
			}
			if v := int64(inFlight()); v > peak.Load() {
				peak.Store(v)
			}
			time.Sleep(time.Millisecond)
		}
	})
	const flood, workers = 400, 32
	var n429, nOther atomic.Int32
	var worst atomic.Int64
	var wg sync.WaitGroup
	next := atomic.Int32{}
	for range workers {
		wg.Go(func() {
			for next.Add(1) <= flood {
				t0 := time.Now()
				req, _ := http.NewRequest(http.MethodPost, h.base+"/mutate", bytes.NewReader(review))
				req.Header.Set("Content-Type", "application/json")
				resp, err := h.h2.Do(req)
				if err != nil {
					t.Errorf("flood request: %v", err)
					return
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if d := int64(time.Since(t0)); d > worst.Load() {
					worst.Store(d)
				}
				if resp.StatusCode == http.StatusTooManyRequests {
					n429.Add(1)
					if resp.Header.Get("Retry-After") == "" {
						t.Errorf("429 without Retry-After")
					}
				} else {
					nOther.Add(1)
				}
			}
		})
	}
	wg.Wait()
	close(stopSampling)
	sampler.Wait()
	if n429.Load() != flood || nOther.Load() != 0 {
		t.Errorf("flood: %d answered 429, %d otherwise; want all %d refused while the cap is held", n429.Load(), nOther.Load(), flood)
	}
	if p := peak.Load(); p > maxInFlight {
		t.Errorf("in-flight gauge reached %d, above the cap %d", p, maxInFlight)
	}
	if got := h.counter(ResultError, ReasonOverloaded); got != flood {
		t.Errorf("overloaded counted %v, want %d", got, flood)
	}
	t.Logf("%d requests refused with 429 while %d were held; slowest refusal %s", n429.Load(), maxInFlight, time.Duration(worst.Load()))

	// Release: the held requests complete and service resumes.
	close(release)
	held.Wait()
	if heldOK.Load() != maxInFlight {
		t.Errorf("%d of %d held requests were answered allowed", heldOK.Load(), maxInFlight)
	}
	resp, _ := h.post("/mutate", "application/json", review)
	if resp.StatusCode != 200 {
		t.Errorf("after the flood: HTTP %d", resp.StatusCode)
	}
}

// Row 29: TLS below 1.2, non-ECDHE or non-AEAD suites and plain HTTP are
// refused; HTTP/2 is negotiated, and can be turned off.
func TestTLSSettings(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.waitReady()
	addr := strings.TrimPrefix(h.base, "https://")
	dial := func(c *tls.Config) (*tls.ConnectionState, error) {
		c.RootCAs = h.ca.pool
		conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, c)
		if err != nil {
			return nil, err
		}
		defer conn.Close()
		st := conn.ConnectionState()
		return &st, nil
	}
	for _, tc := range []struct {
		name string
		cfg  *tls.Config
		ok   bool
	}{
		{"TLS 1.0", &tls.Config{MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS10}, false},
		{"TLS 1.1", &tls.Config{MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS11}, false},
		{"TLS 1.2 ECDHE AES-GCM", &tls.Config{MaxVersion: tls.VersionTLS12, CipherSuites: []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256}}, true},
		{"TLS 1.2 ECDHE ChaCha20", &tls.Config{MaxVersion: tls.VersionTLS12, CipherSuites: []uint16{tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256}}, true},
		{"TLS 1.2 ECDHE CBC (not AEAD)", &tls.Config{MaxVersion: tls.VersionTLS12, CipherSuites: []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA}}, false},
		{"TLS 1.2 RSA key exchange (not ECDHE)", &tls.Config{MaxVersion: tls.VersionTLS12, CipherSuites: []uint16{tls.TLS_RSA_WITH_AES_128_GCM_SHA256}}, false},
		{"TLS 1.3", &tls.Config{MinVersion: tls.VersionTLS13}, true},
	} {
		_, err := dial(tc.cfg)
		if (err == nil) != tc.ok {
			t.Errorf("%s: handshake error %v; want success %v", tc.name, err, tc.ok)
		}
	}

	// HTTP/2 by default.
	resp, _ := h.post("/mutate", "application/json", reviewBody(t, admissionV1, podRequest(t, loadPod(t))))
	if resp.Proto != "HTTP/2.0" {
		t.Errorf("protocol %s, want HTTP/2.0", resp.Proto)
	}

	// Plain HTTP to the TLS port: refused before any handler runs.
	before := totalRequests(t, h)
	plain, err := http.Post("http://"+addr+"/mutate", "application/json", strings.NewReader("{}"))
	if err == nil {
		b, _ := io.ReadAll(plain.Body)
		plain.Body.Close()
		if plain.StatusCode == 200 {
			t.Errorf("plain HTTP to the TLS port answered 200: %s", b)
		}
	}
	if after := totalRequests(t, h); after != before {
		t.Errorf("plain HTTP reached the admission handler")
	}

	// --tls-min-version=1.3 and --http2=false.
	h13 := newHarness(t, withConfig(func(c *Config) { c.TLSMinVersion = TLSVersion13; c.HTTP2 = false }))
	h13.waitReady()
	addr13 := strings.TrimPrefix(h13.base, "https://")
	if _, err := tls.Dial("tcp", addr13, &tls.Config{RootCAs: h13.ca.pool, MaxVersion: tls.VersionTLS12}); err == nil {
		t.Errorf("TLS 1.2 accepted with --tls-min-version=1.3")
	}
	conn, err := tls.Dial("tcp", addr13, &tls.Config{RootCAs: h13.ca.pool, NextProtos: []string{"h2", "http/1.1"}})
	if err != nil {
		t.Fatalf("TLS 1.3: %v", err)
	}
	if p := conn.ConnectionState().NegotiatedProtocol; p == "h2" {
		t.Errorf("h2 negotiated with --http2=false")
	}
	conn.Close()
}

func totalRequests(t *testing.T, h *harness) float64 {
	t.Helper()
	mfs, err := h.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	sum := 0.0
	for _, mf := range mfs {
		if mf.GetName() == "sidecar_injector_admission_requests_total" {
			for _, m := range mf.GetMetric() {
				sum += m.GetCounter().GetValue()
			}
		}
	}
	return sum
}

// Row 31: a panic inside the handler becomes an AdmissionReview carrying the
// uid, counts in sidecar_injector_panics_total, and serving continues.
func TestPanicRecovered(t *testing.T) {
	t.Parallel()
	var calls atomic.Int32
	h := newHarness(t, withServer(func(s *Server) {
		s.inject = func(in *inject.Injector, pod *corev1.Pod, ov inject.Overrides) (inject.Result, error) {
			if calls.Add(1) == 1 {
				var s []int
				_ = s[calls.Load()] // a real runtime panic: index out of range
			}
			return in.Inject(pod, ov)
		}
	}))
	h.waitReady()
	body := reviewBody(t, admissionV1, podRequest(t, loadPod(t)))
	resp, b := h.post("/mutate", "application/json", body)
	if resp.StatusCode != 200 {
		t.Fatalf("HTTP %d after a panic, want 200 with a review", resp.StatusCode)
	}
	a := decodeAnswer(t, b)
	if a.Response.UID != testUID || a.Response.Allowed || a.Response.Status == nil || a.Response.Status.Code != 500 {
		t.Errorf("answer to a panic: %+v; want the uid, allowed false, code 500", a.Response)
	}
	if !strings.Contains(a.Response.Status.Message, testUID) {
		t.Errorf("message %q does not name the request uid for the log lookup", a.Response.Status.Message)
	}
	if got := gatherValue(t, h.reg, "sidecar_injector_panics_total", nil); got != 1 {
		t.Errorf("sidecar_injector_panics_total = %v, want 1", got)
	}
	if got := h.counter(ResultError, ReasonPanic); got != 1 {
		t.Errorf("result error reason panic = %v, want 1", got)
	}
	if !strings.Contains(h.logs.String(), "index out of range") {
		t.Errorf("the panic is not in the log")
	}
	resp, b = h.post("/mutate", "application/json", body)
	if resp.StatusCode != 200 || !decodeAnswer(t, b).Response.Allowed {
		t.Errorf("serving did not continue after the panic: HTTP %d %s", resp.StatusCode, b)
	}
}

// Memory follows the bytes that arrive, not the Content-Length a slow client
// declares: 32 requests declaring 7 MiB each and sending a few bytes must not
// grow the heap by 32 × 7 MiB.
func TestDeclaredLengthDoesNotAllocate(t *testing.T) {
	t.Parallel()
	const n = 32
	h := newHarness(t, withConfig(func(c *Config) { c.MaxInFlight = n }))
	h.waitReady()
	addr := strings.TrimPrefix(h.base, "https://")
	var ms0, ms1 runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms0)
	var conns []*tls.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for range n {
		conn, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: h.ca.pool, NextProtos: []string{"http/1.1"}})
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, conn)
		fmt.Fprintf(conn, "POST /mutate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n{\"apiVersion\":", DefaultMaxBodyBytes)
	}
	eventually(t, "all slow requests reading their bodies", func() bool {
		return h.srv.reading.Load() == n
	})
	runtime.ReadMemStats(&ms1)
	grown := int64(ms1.HeapAlloc) - int64(ms0.HeapAlloc)
	if grown > n<<20 {
		t.Errorf("heap grew by %d MiB for %d requests that sent 14 bytes each", grown>>20, n)
	}
	t.Logf("heap grew by %d KiB for %d requests declaring 7 MiB each", grown>>10, n)
}
