package webhook

import (
	"bytes"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
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
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	cpu0 := processCPU()
	for b.Loop() {
		req := httptest.NewRequest(http.MethodPost, "/mutate", bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		rec := httptest.NewRecorder()
		handler.ServeHTTP(rec, req)
		if rec.Code != 200 {
			b.Fatalf("HTTP %d", rec.Code)
		}
	}
	// CPU time is steadier than wall time on a shared machine.
	b.ReportMetric(float64(processCPU()-cpu0)/float64(b.N), "cpu-ns/op")
}

// processCPU is this process's user+system CPU time.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
