package serving

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

func get(t *testing.T, method, url string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestHealthHandler(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	reg.MustRegister(prometheus.NewCounter(prometheus.CounterOpts{Name: "serving_test_total", Help: "A counter of the test."}))
	var notLive, notReady atomic.Value
	notLive.Store("")
	notReady.Store("")
	errOf := func(v *atomic.Value) error {
		if s := v.Load().(string); s != "" {
			return errors.New(s)
		}
		return nil
	}
	for _, pprof := range []bool{false, true} {
		h := Health{Gatherer: reg, Log: quiet(), Pprof: pprof,
			Live:  func(*http.Request) error { return errOf(&notLive) },
			Ready: func() error { return errOf(&notReady) }}
		srv := httptest.NewServer(h.Handler())
		defer srv.Close()
		for _, tc := range []struct {
			method, path, live, ready string
			wantCode                  int
			wantBody                  string
		}{
			{method: "GET", path: "/healthz", wantCode: 200, wantBody: "ok\n"},
			{method: "GET", path: "/readyz", wantCode: 200, wantBody: "ok\n"},
			{method: "GET", path: "/readyz", ready: "shutting down", wantCode: 503, wantBody: "not ready: shutting down\n"},
			{method: "GET", path: "/healthz", ready: "shutting down", wantCode: 200, wantBody: "ok\n"},
			{method: "GET", path: "/healthz", live: "lease not renewed", wantCode: 503, wantBody: "not healthy: lease not renewed\n"},
			{method: "GET", path: "/metrics", wantCode: 200, wantBody: "serving_test_total 0"},
			{method: "POST", path: "/readyz", wantCode: 405},
			{method: "GET", path: "/mutate", wantCode: 404},
			{method: "GET", path: "/debug/pprof/", wantCode: map[bool]int{false: 404, true: 200}[pprof]},
			{method: "GET", path: "/debug/pprof/heap?debug=1", wantCode: map[bool]int{false: 404, true: 200}[pprof]},
		} {
			notLive.Store(tc.live)
			notReady.Store(tc.ready)
			code, body := get(t, tc.method, srv.URL+tc.path)
			if code != tc.wantCode || !strings.Contains(body, tc.wantBody) {
				t.Errorf("pprof=%v, live %q, ready %q: %s %s = %d %q; want %d with %q", pprof, tc.live, tc.ready, tc.method, tc.path, code, body, tc.wantCode, tc.wantBody)
			}
		}
	}
}

// Nil checks mean always live and ready; a CPU profile (30 s) fits in the
// write timeout only when pprof is on.
func TestHealthDefaultsAndServer(t *testing.T) {
	t.Parallel()
	h := Health{Gatherer: prometheus.NewRegistry(), Log: quiet()}
	srv := httptest.NewServer(h.Handler())
	defer srv.Close()
	for _, p := range []string{"/healthz", "/readyz"} {
		if code, _ := get(t, "GET", srv.URL+p); code != 200 {
			t.Errorf("%s with no check: %d", p, code)
		}
	}
	limits := DefaultTimeouts()
	if s := h.Server(h.Handler(), limits); s.WriteTimeout != limits.Write || s.ReadHeaderTimeout != 10*time.Second || s.MaxHeaderBytes != 1<<20 || s.IdleTimeout != 90*time.Second {
		t.Errorf("health server limits %v %v %v %v, want %+v", s.ReadHeaderTimeout, s.WriteTimeout, s.IdleTimeout, s.MaxHeaderBytes, limits)
	}
	h.Pprof = true
	if s := h.Server(h.Handler(), limits); s.WriteTimeout < 60*time.Second {
		t.Errorf("health server with pprof: write timeout %v, want at least 60s", s.WriteTimeout)
	}
}
