package webhook

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"

	"github.com/sidecar-injector/sidecar-injector/pkg/inject"
)

// BenchmarkMutate is one injection through the handler (router, limits,
// decoding, engine, answer, metrics, log line), without TLS and HTTP/2:
// the webhook's own share of the per-request CPU.
func BenchmarkMutate(b *testing.B) {
	ca := newTestCA(b)
	dir := b.TempDir()
	cp, kp := ca.leaf(b, 1, time.Now().Add(time.Hour))
	cfg := DefaultConfig()
	cfg.TLSCertFile, cfg.TLSKeyFile = filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	writeFile(b, cfg.TLSCertFile, cp)
	writeFile(b, cfg.TLSKeyFile, kp)
	reg := prometheus.NewRegistry()
	devNull, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		b.Fatal(err)
	}
	defer devNull.Close()
	srv, err := New(cfg, Deps{Log: slog.New(slog.NewJSONHandler(devNull, nil)), Metrics: NewMetrics(reg), Gatherer: reg})
	if err != nil {
		b.Fatal(err)
	}
	handler := srv.Handler()
	body := reviewBody(b, admissionV1, podRequest(b, loadPod(b)))
	mutate := func() *httptest.ResponseRecorder {
		req := httptest.NewRequest(http.MethodPost, "/mutate", bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		rec := httptest.NewRecorder()
		handler.ServeHTTP(rec, req)
		return rec
	}
	// The measured work is the full injection: the answer carries the
	// engine's whole patch (a deny or a skip is also HTTP 200), and every
	// iteration gives that same answer.
	want := mutate().Body.Bytes()
	wantInjectionAnswer(b, srv, body, want)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	cpu0 := processCPU()
	for b.Loop() {
		rec := mutate()
		if rec.Code != http.StatusOK || !bytes.Equal(rec.Body.Bytes(), want) {
			b.Fatalf("HTTP %d, answer differs from the checked injection:\n%s", rec.Code, rec.Body.Bytes())
		}
	}
	// CPU time is steadier than wall time on a shared machine.
	b.ReportMetric(float64(processCPU()-cpu0)/float64(b.N), "cpu-ns/op")
}

// wantInjectionAnswer checks that answer allows the review's pod with a
// JSON Patch equal to the one the server's engine computes for it, and that
// the patch adds the proxy and the init container.
func wantInjectionAnswer(t testing.TB, srv *Server, review, answerJSON []byte) {
	t.Helper()
	var a answer
	if err := json.Unmarshal(answerJSON, &a); err != nil {
		t.Fatalf("answer is not an AdmissionReview: %v: %s", err, answerJSON)
	}
	if !a.Response.Allowed || a.Response.PatchType != "JSONPatch" {
		t.Fatalf("answer allowed=%v patchType=%q: want an allowed JSON Patch: %s", a.Response.Allowed, a.Response.PatchType, answerJSON)
	}
	var rev struct {
		Request struct {
			Namespace string     `json:"namespace"`
			Object    corev1.Pod `json:"object"`
		} `json:"request"`
	}
	if err := json.Unmarshal(review, &rev); err != nil {
		t.Fatal(err)
	}
	res, err := srv.Injector().Inject(&rev.Request.Object, inject.Overrides{
		Namespace: rev.Request.Namespace, NativeSidecarSupported: srv.native, InjectorVersion: srv.version})
	if err != nil || res.Decision != inject.DecisionInject {
		t.Fatalf("engine: %v, decision %q: the benchmark's pod must be injected", err, res.Decision)
	}
	engine, err := res.Patch.JSON()
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(patchOps(t, engine), patchOps(t, a.Response.Patch)); diff != "" {
		t.Fatalf("the answer's patch is not the engine's (-engine +answer):\n%s", diff)
	}
	var pod corev1.Pod
	if err := json.Unmarshal(applyAnswer(t, review, a), &pod); err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, c := range append(append([]corev1.Container{}, pod.Spec.InitContainers...), pod.Spec.Containers...) {
		names = append(names, c.Name)
	}
	if !slices.Contains(names, "envoy") || !slices.Contains(names, "iptables-init") || pod.Annotations[inject.StatusAnnotation] == "" {
		t.Fatalf("the patched pod has containers %q and status %q: want envoy, iptables-init and the status annotation",
			names, pod.Annotations[inject.StatusAnnotation])
	}
}

// processCPU is this process's user+system CPU time.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
