package webhook

import (
	"bytes"
	"encoding/json"
	"flag"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	jsonpatch "github.com/evanphx/json-patch/v5"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	corev1 "k8s.io/api/core/v1"
	kjson "sigs.k8s.io/json"
)

var update = flag.Bool("update", false, "rewrite the seed reviews under testdata/reviews")

const seedDir = "testdata/reviews"

// seedReviews builds the fuzz seeds: one review per interesting shape.
func seedReviews(t *testing.T, h *harness) map[string][]byte {
	t.Helper()
	seeds := map[string][]byte{}
	add := func(name string, mutate func(p map[string]any, r request)) []byte {
		b := simple(mutate)(t, h)
		var pretty bytes.Buffer
		if err := json.Indent(&pretty, b, "", "  "); err != nil {
			t.Fatal(err)
		}
		seeds[name] = append(pretty.Bytes(), '\n')
		return b
	}
	create := add("create-v1", nil)
	seeds["create-v1beta1"] = bytes.Replace(seeds["create-v1"], []byte(admissionV1), []byte(admissionV1beta1), 1)
	add("update", func(_ map[string]any, r request) { r["operation"], r["oldObject"] = "UPDATE", r["object"] })
	add("delete", func(_ map[string]any, r request) {
		r["operation"], r["oldObject"], r["object"] = "DELETE", r["object"], nil
	})
	add("subresource", func(_ map[string]any, r request) { r["subResource"], r["operation"] = "status", "UPDATE" })
	add("host-network", func(p map[string]any, _ request) { obj(p, "spec")["hostNetwork"] = true })
	add("settings", func(p map[string]any, _ request) {
		setAnnotation(p, "sidecar.io/exclude-outbound-ip-ranges", "10.0.0.0/8,fd00::/8")
		setAnnotation(p, "sidecar.io/exclude-inbound-ports", "8001")
		setAnnotation(p, "sidecar.io/proxy-cpu", "200m")
		setAnnotation(p, "sidecar.io/native-sidecar", "false")
		setAnnotation(p, "sidecar.io/log-level", "debug")
		obj(p, "spec")["securityContext"] = map[string]any{"runAsNonRoot": true, "runAsUser": 1000}
		container(p, 0)["ports"] = []any{map[string]any{"name": "in", "containerPort": 10001}, map[string]any{"containerPort": 10090, "hostPort": 10002}}
	})
	add("conflicts", func(p map[string]any, _ request) {
		container(p, 0)["name"] = "envoy"
		setAnnotation(p, "sidecar.io/proxy-image", "x")
	})
	add("unknown-fields", func(p map[string]any, _ request) {
		obj(p, "spec")["futurePodField"] = map[string]any{"a": []any{1, "b"}}
		container(p, 0)["futureContainerField"] = true
		obj(p, "spec")["initContainers"] = []any{map[string]any{"name": "setup", "image": "setup:1", "restartPolicy": "Always"}}
	})
	// An injected pod, and the same with another config hash (re-injection
	// removes what the older status lists).
	_, b := h.post("/mutate", "application/json", create)
	injected := applyAnswer(t, create, decodeAnswer(t, b))
	var p map[string]any
	if err := json.Unmarshal(injected, &p); err != nil {
		t.Fatal(err)
	}
	add("injected", func(q map[string]any, _ request) {
		for k := range q {
			delete(q, k)
		}
		for k, v := range p {
			q[k] = v
		}
	})
	st := statusOf(t, injected)
	seeds["injected-older-config"] = bytes.Replace(seeds["injected"], []byte(st.ConfigHash), []byte("0123456789abcdef"), 1)
	return seeds
}

// TestSeedReviews keeps testdata/reviews current (-update rewrites it) and
// checks every seed is answered with a review.
func TestSeedReviews(t *testing.T) {
	h := newHarness(t)
	h.waitReady()
	seeds := seedReviews(t, h)
	if *update {
		if err := os.MkdirAll(seedDir, 0o755); err != nil {
			t.Fatal(err)
		}
		for name, b := range seeds {
			writeFile(t, filepath.Join(seedDir, name+".json"), b)
		}
	}
	files, err := filepath.Glob(filepath.Join(seedDir, "*.json"))
	if err != nil || len(files) < len(seeds) {
		t.Fatalf("%d seed files under %s, want %d (run go test ./pkg/webhook -run TestSeedReviews -update): %v", len(files), seedDir, len(seeds), err)
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		name := strings.TrimSuffix(filepath.Base(f), ".json")
		if _, ok := seeds[name]; !ok {
			t.Errorf("stale seed %s (run with -update)", f)
		}
		resp, body := h.post("/mutate", "application/json", b)
		if resp.StatusCode != 200 {
			t.Errorf("seed %s: HTTP %d: %s", name, resp.StatusCode, body)
		}
	}
}

// FuzzReview drives the HTTP handler end to end (the chi router, limits,
// decoding, the engine, the answer) with arbitrary bodies. Invariants: no
// panic (recovered ones count too), a non-200 only for malformed requests,
// every answer valid UTF-8 JSON, every review answered with its uid and
// version, warnings within the limits, and every patch applies to the
// request's raw object and yields a Pod.
func FuzzReview(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join(seedDir, "*.json"))
	if len(files) == 0 {
		f.Fatalf("no seeds under %s", seedDir)
	}
	for _, file := range files {
		b, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b, false)
		f.Add(b, true)
	}
	f.Add([]byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u","kind":{"kind":"Pod"},"operation":"CREATE","namespace":"n","object":{"metadata":{"name":"p"},"spec":{"containers":[{"name":"c"}]}}}}`), false)
	f.Add([]byte(`[[[[[[[[`), false)

	srv := fuzzServer(f)
	handler := srv.Handler()
	f.Fuzz(func(t *testing.T, body []byte, audit bool) {
		path := "/mutate"
		if audit {
			path = "/audit"
		}
		req := httptest.NewRequest(http.MethodPost, path, bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		rec := httptest.NewRecorder()
		handler.ServeHTTP(rec, req)
		out := rec.Body.Bytes()

		if n := counterValue(t, srv.metrics.panics); n != 0 {
			t.Fatalf("a panic was recovered (%v so far); input %q", n, body)
		}
		if !utf8.Valid(out) || !json.Valid(out) {
			t.Fatalf("answer is not valid UTF-8 JSON: %q", out)
		}
		switch rec.Code {
		case 200:
		case 400, 413:
			return
		default:
			t.Fatalf("HTTP %d: %s", rec.Code, out)
		}
		var in rawReview
		if err := kjson.UnmarshalCaseSensitivePreserveInts(body, &in); err != nil || in.Request == nil {
			t.Fatalf("HTTP 200 for a body that is not a review: %v", err)
		}
		a := decodeAnswer(t, out)
		if a.APIVersion != in.APIVersion || a.Response.UID != in.Request.UID {
			t.Fatalf("answer %s uid %q to a %s review with uid %q", a.APIVersion, a.Response.UID, in.APIVersion, in.Request.UID)
		}
		checkWarnings(t, a.Response.Warnings)
		if !a.Response.Allowed {
			if st := a.Response.Status; st == nil || (st.Code != 400 && st.Code != 403) || st.Message == "" {
				t.Fatalf("deny without a 400/403 status and message: %+v", a.Response.Status)
			}
			return
		}
		if len(a.Response.Patch) == 0 {
			return
		}
		if audit {
			t.Fatalf("a patch in audit mode")
		}
		// A typed decode merges duplicate keys field by field where JSON
		// Patch sees only the last one; the apiserver never sends
		// duplicates (it encodes the review itself), so for such input only
		// determinism is required (admission_test.go, row 23).
		if strictErrs, err := kjson.UnmarshalStrict(body, new(any), kjson.DisallowDuplicateFields); err != nil || len(strictErrs) > 0 {
			return
		}
		p, err := jsonpatch.DecodePatch(a.Response.Patch)
		if err != nil {
			t.Fatalf("patch does not decode: %v", err)
		}
		for _, op := range p {
			if k := op.Kind(); !slices.Contains([]string{"add", "replace", "remove"}, k) {
				t.Fatalf("patch op %q", k)
			}
		}
		patched, err := p.Apply(in.Request.Object)
		if err != nil {
			t.Fatalf("patch does not apply to the request's object: %v\npatch: %s", err, a.Response.Patch)
		}
		var pod corev1.Pod
		if err := kjson.UnmarshalCaseSensitivePreserveInts(patched, &pod); err != nil {
			t.Fatalf("the patched object is not a Pod: %v", err)
		}
		if !slices.ContainsFunc(append(pod.Spec.InitContainers, pod.Spec.Containers...), func(c corev1.Container) bool { return c.Name == "envoy" }) {
			t.Fatalf("an injected pod without envoy")
		}
	})
}

// counterValue reads a counter without a registry Gather (which would run
// the Go and process collectors on every fuzz execution).
func counterValue(t *testing.T, c prometheus.Counter) float64 {
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

// fuzzServer is a Server used through its handler only (no listeners).
func fuzzServer(f *testing.F) *Server {
	ca := newTestCA(f)
	dir := f.TempDir()
	cp, kp := ca.leaf(f, 1, time.Now().Add(time.Hour))
	cfg := DefaultConfig()
	cfg.TLSCertFile, cfg.TLSKeyFile = filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	writeFile(f, cfg.TLSCertFile, cp)
	writeFile(f, cfg.TLSKeyFile, kp)
	reg := prometheus.NewRegistry()
	srv, err := New(cfg, Deps{Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Metrics: NewMetrics(reg), Gatherer: reg})
	if err != nil {
		f.Fatal(err)
	}
	return srv
}
