package webhook

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/sidecar-injector/sidecar-injector/internal/poll"
	"github.com/sidecar-injector/sidecar-injector/internal/syncbuf"
	"github.com/sidecar-injector/sidecar-injector/internal/testca"
	"github.com/sidecar-injector/sidecar-injector/pkg/inject"
)

// testCA signs serving certificates for 127.0.0.1 (internal/testca).
type testCA struct {
	ca   *testca.CA
	pool *x509.CertPool
}

func newTestCA(t testing.TB) *testCA {
	t.Helper()
	ca, err := testca.New("webhook test CA", 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return &testCA{ca: ca, pool: ca.Pool()}
}

// leaf returns PEM cert and key for 127.0.0.1 with the given serial.
func (ca *testCA) leaf(t testing.TB, serial int64, notAfter time.Time) (certPEM, keyPEM []byte) {
	t.Helper()
	kp, err := ca.ca.Issue(testca.Leaf{
		CommonName: "sidecar-injector.test",
		DNSNames:   []string{"sidecar-injector.test"},
		IPs:        []net.IP{net.ParseIP("127.0.0.1")},
		Serial:     serial,
		NotAfter:   notAfter,
	})
	if err != nil {
		t.Fatal(err)
	}
	return kp.CertPEM, kp.KeyPEM
}

// syncBuffer is a log sink safe for concurrent writers.
type syncBuffer = syncbuf.Buffer

// harness is a webhook serving on real loopback listeners.
type harness struct {
	t        testing.TB
	srv      *Server
	cfg      Config
	reg      *prometheus.Registry
	ca       *testCA
	logs     *syncBuffer
	base     string // https://127.0.0.1:port
	health   string // http://127.0.0.1:port
	h2       *http.Client
	h1       *http.Client
	cancel   context.CancelFunc
	done     chan error
	stopOnce sync.Once
	stopErr  error

	serverOpts []func(*Server)
}

type harnessOpt func(*harness, *Config)

// withCert writes no initial pair when false (the cert test adds it later).
func withoutCert() harnessOpt {
	return func(h *harness, c *Config) {
		os.Remove(c.TLSCertFile)
		os.Remove(c.TLSKeyFile)
	}
}

func withConfig(f func(*Config)) harnessOpt { return func(_ *harness, c *Config) { f(c) } }

// withServer changes the server after New, before it serves.
func withServer(f func(*Server)) harnessOpt {
	return func(h *harness, _ *Config) { h.serverOpts = append(h.serverOpts, f) }
}

func newHarness(t testing.TB, opts ...harnessOpt) *harness {
	t.Helper()
	h := &harness{t: t, ca: newTestCA(t), logs: &syncBuffer{}, reg: prometheus.NewRegistry()}
	dir := t.TempDir()
	cfg := DefaultConfig()
	cfg.TLSCertFile = filepath.Join(dir, "tls.crt")
	cfg.TLSKeyFile = filepath.Join(dir, "tls.key")
	cfg.ListenAddress, cfg.HealthAddress = "127.0.0.1:0", "127.0.0.1:0"
	cfg.DrainDelay = 0
	cfg.ShutdownGrace = 10 * time.Second
	cfg.ReloadInterval = 250 * time.Millisecond
	cfg.ReloadDebounce = 20 * time.Millisecond
	cp, kp := h.ca.leaf(t, 100, time.Now().Add(12*time.Hour))
	writeFile(t, cfg.TLSCertFile, cp)
	writeFile(t, cfg.TLSKeyFile, kp)
	for _, o := range opts {
		o(h, &cfg)
	}
	h.cfg = cfg
	log := slog.New(slog.NewJSONHandler(h.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	srv, err := New(cfg, Deps{Log: log, Metrics: NewMetrics(h.reg), Gatherer: h.reg})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	h.srv = srv
	for _, f := range h.serverOpts {
		f(srv)
	}
	tlsLn, err := net.Listen("tcp", cfg.ListenAddress)
	if err != nil {
		t.Fatal(err)
	}
	healthLn, err := net.Listen("tcp", cfg.HealthAddress)
	if err != nil {
		t.Fatal(err)
	}
	h.base = "https://" + tlsLn.Addr().String()
	h.health = "http://" + healthLn.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel = cancel
	h.done = make(chan error, 1)
	go func() { h.done <- srv.Serve(ctx, tlsLn, healthLn) }()
	h.h2 = h.client(true)
	h.h1 = h.client(false)
	t.Cleanup(func() {
		h.h2.CloseIdleConnections()
		h.h1.CloseIdleConnections()
		if err := h.stop(); err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return h
}

// stop cancels the run context and waits for Serve to return.
func (h *harness) stop() error {
	h.stopOnce.Do(func() {
		h.cancel()
		select {
		case h.stopErr = <-h.done:
		case <-time.After(h.cfg.DrainDelay + h.cfg.ShutdownGrace + 10*time.Second):
			h.stopErr = errors.New("Serve did not return after the run context was cancelled")
		}
	})
	return h.stopErr
}

func (h *harness) tlsConfig() *tls.Config {
	return &tls.Config{RootCAs: h.ca.pool, MinVersion: tls.VersionTLS12}
}

func (h *harness) client(http2 bool) *http.Client {
	protos := new(http.Protocols)
	if http2 {
		protos.SetHTTP2(true)
	} else {
		protos.SetHTTP1(true)
	}
	return &http.Client{
		Timeout: 20 * time.Second,
		Transport: &http.Transport{
			TLSClientConfig:       h.tlsConfig(),
			Protocols:             protos,
			ExpectContinueTimeout: 5 * time.Second,
			MaxIdleConnsPerHost:   64,
		},
	}
}

func (h *harness) waitReady() {
	h.t.Helper()
	poll.Until(h.t, 10*time.Second, "webhook ready", func() error {
		resp, err := http.Get(h.health + "/readyz")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("/readyz: HTTP %d", resp.StatusCode)
		}
		return nil
	})
}

// post sends body to path on the TLS port over HTTP/2.
func (h *harness) post(path, contentType string, body []byte) (*http.Response, []byte) {
	h.t.Helper()
	req, err := http.NewRequest(http.MethodPost, h.base+path, bytes.NewReader(body))
	if err != nil {
		h.t.Fatal(err)
	}
	req.Header.Set("Content-Type", contentType)
	return h.do(h.h2, req)
}

func (h *harness) do(c *http.Client, req *http.Request) (*http.Response, []byte) {
	h.t.Helper()
	resp, err := c.Do(req)
	if err != nil {
		h.t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		h.t.Fatalf("read answer: %v", err)
	}
	return resp, b
}

// counter returns sidecar_injector_admission_requests_total{result,reason}.
func (h *harness) counter(result Result, reason inject.Reason) float64 {
	h.t.Helper()
	return gatherValue(h.t, h.reg, "sidecar_injector_admission_requests_total", map[string]string{"result": string(result), "reason": string(reason)})
}

func gatherValue(t testing.TB, g prometheus.Gatherer, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if matchLabels(m, labels) {
				switch {
				case m.Counter != nil:
					return m.Counter.GetValue()
				case m.Gauge != nil:
					return m.Gauge.GetValue()
				case m.Histogram != nil:
					return float64(m.Histogram.GetSampleCount())
				}
			}
		}
	}
	return 0
}

func matchLabels(m *dto.Metric, want map[string]string) bool {
	n := 0
	for _, lp := range m.GetLabel() {
		if v, ok := want[lp.GetName()]; ok {
			if v != lp.GetValue() {
				return false
			}
			n++
		}
	}
	return n == len(want)
}

func writeFile(t testing.TB, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

// answer is a decoded AdmissionReview answer.
type answer struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Response   struct {
		UID       string `json:"uid"`
		Allowed   bool   `json:"allowed"`
		PatchType string `json:"patchType"`
		Patch     []byte `json:"patch"`
		Status    *struct {
			Status  string `json:"status"`
			Reason  string `json:"reason"`
			Code    int32  `json:"code"`
			Message string `json:"message"`
		} `json:"status"`
		Warnings []string `json:"warnings"`
	} `json:"response"`
}

func decodeAnswer(t testing.TB, b []byte) answer {
	t.Helper()
	var a answer
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&a); err != nil {
		t.Fatalf("answer is not an AdmissionReview: %v\n%s", err, b)
	}
	return a
}

// --- request bodies ---

// loadPod returns testdata/pod.json as a generic object.
func loadPod(t testing.TB) map[string]any {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "pod.json"))
	if err != nil {
		t.Fatal(err)
	}
	var p map[string]any
	if err := json.Unmarshal(b, &p); err != nil {
		t.Fatal(err)
	}
	return p
}

func obj(m map[string]any, key string) map[string]any {
	v, ok := m[key].(map[string]any)
	if !ok {
		v = map[string]any{}
		m[key] = v
	}
	return v
}

func containers(p map[string]any) []any { return obj(p, "spec")["containers"].([]any) }

func container(p map[string]any, i int) map[string]any { return containers(p)[i].(map[string]any) }

// request is an admission request in generic form.
type request map[string]any

func podRequest(t testing.TB, pod map[string]any) request {
	t.Helper()
	raw, err := json.Marshal(pod)
	if err != nil {
		t.Fatal(err)
	}
	return request{
		"uid":             "7f0e6f2a-1b8c-4d3e-9a5f-2c4b6d8e0a1c",
		"kind":            map[string]any{"group": "", "version": "v1", "kind": "Pod"},
		"resource":        map[string]any{"group": "", "version": "v1", "resource": "pods"},
		"requestKind":     map[string]any{"group": "", "version": "v1", "kind": "Pod"},
		"requestResource": map[string]any{"group": "", "version": "v1", "resource": "pods"},
		"namespace":       "shop",
		"operation":       "CREATE",
		"userInfo":        map[string]any{"username": "system:serviceaccount:kube-system:replicaset-controller"},
		"object":          json.RawMessage(raw),
		"oldObject":       nil,
		"dryRun":          false,
		"options":         map[string]any{"kind": "CreateOptions", "apiVersion": "meta.k8s.io/v1"},
	}
}

func reviewBody(t testing.TB, apiVersion string, req request) []byte {
	t.Helper()
	var r any = req
	if req == nil {
		r = nil
	}
	b, err := json.Marshal(map[string]any{"apiVersion": apiVersion, "kind": "AdmissionReview", "request": r})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// patchOps decodes a patch for assertions.
func patchOps(t testing.TB, patch []byte) []map[string]any {
	t.Helper()
	var ops []map[string]any
	if err := json.Unmarshal(patch, &ops); err != nil {
		t.Fatalf("patch is not a JSON array: %v", err)
	}
	return ops
}
