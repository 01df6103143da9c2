package webhook

import (
	"bytes"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/sidecar-injector/sidecar-injector/internal/need"
	"github.com/sidecar-injector/sidecar-injector/pkg/inject"
)

func scrape(t *testing.T, h *harness) ([]byte, map[string]*dto.MetricFamily) {
	t.Helper()
	resp, err := http.Get(h.health + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("GET /metrics: HTTP %d", resp.StatusCode)
	}
	text, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	p := expfmt.NewTextParser(model.LegacyValidation)
	mfs, err := p.TextToMetricFamilies(bytes.NewReader(text))
	if err != nil {
		t.Fatalf("/metrics does not parse: %v", err)
	}
	return text, mfs
}

func sample(mfs map[string]*dto.MetricFamily, name string, labels map[string]string) (float64, bool) {
	mf, ok := mfs[name]
	if !ok {
		return 0, false
	}
	for _, m := range mf.GetMetric() {
		if matchLabels(m, labels) {
			switch {
			case m.Counter != nil:
				return m.Counter.GetValue(), true
			case m.Gauge != nil:
				return m.Gauge.GetValue(), true
			case m.Untyped != nil:
				return m.Untyped.GetValue(), true
			case m.Histogram != nil:
				return float64(m.Histogram.GetSampleCount()), true
			}
		}
	}
	return 0, false
}

// The metrics, parsed with the Prometheus text parser: counters move for
// each result and reason seen, labels stay bounded, promtool is content.
func TestMetrics(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.waitReady()
	_, before := scrape(t, h)

	type want struct {
		result Result
		reason inject.Reason
	}
	sends := []struct {
		path, ctype string
		body        []byte
		want        want
	}{
		{"/mutate", "application/json", simple(nil)(t, h), want{ResultInjected, inject.ReasonNamespaceEnabled}},
		{"/mutate", "application/json", simple(func(p map[string]any, _ request) { obj(p, "spec")["hostNetwork"] = true })(t, h), want{ResultSkipped, inject.ReasonHostNetwork}},
		{"/mutate", "application/json", simple(func(p map[string]any, _ request) { setAnnotation(p, "sidecar.io/proxy-image", "x") })(t, h), want{ResultDenied, inject.ReasonForbiddenSetting}},
		{"/mutate", "application/json", simple(func(_ map[string]any, r request) { r["operation"] = "DELETE" })(t, h), want{ResultAllowed, ReasonNotCreate}},
		{"/mutate", "application/json", simple(func(_ map[string]any, r request) { r["namespace"] = "" })(t, h), want{ResultDenied, ReasonNoNamespace}},
		{"/audit", "application/json", simple(nil)(t, h), want{ResultAudited, inject.ReasonNamespaceEnabled}},
		{"/mutate", "application/json", []byte("nope"), want{ResultError, ReasonBadRequest}},
		{"/mutate", "text/plain", simple(nil)(t, h), want{ResultError, ReasonUnsupportedMediaType}},
	}
	for _, s := range sends {
		h.post(s.path, s.ctype, s.body)
	}
	text, after := scrape(t, h)

	counts := map[want]int{}
	for _, s := range sends {
		counts[s.want]++
	}
	for w, n := range counts {
		labels := map[string]string{"result": string(w.result), "reason": string(w.reason)}
		b, ok0 := sample(before, "sidecar_injector_admission_requests_total", labels)
		a, ok1 := sample(after, "sidecar_injector_admission_requests_total", labels)
		if !ok0 || !ok1 {
			t.Errorf("series %v missing before (%v) or after (%v): every valid pair must exist from the start", labels, ok0, ok1)
		}
		if a-b != float64(n) {
			t.Errorf("requests_total%v moved by %v, want %d", labels, a-b, n)
		}
	}
	// The histogram: the contract's buckets, one observation per request.
	hist := after["sidecar_injector_admission_duration_seconds"]
	if hist == nil || hist.GetType() != dto.MetricType_HISTOGRAM {
		t.Fatalf("sidecar_injector_admission_duration_seconds is not a histogram")
	}
	var total uint64
	for _, m := range hist.GetMetric() {
		var bounds []float64
		for _, b := range m.GetHistogram().GetBucket() {
			if !math.IsInf(b.GetUpperBound(), +1) {
				bounds = append(bounds, b.GetUpperBound())
			}
		}
		if diff := cmp.Diff(DurationBuckets(), bounds); diff != "" {
			t.Errorf("histogram buckets (-want +got):\n%s", diff)
		}
		total += m.GetHistogram().GetSampleCount()
	}
	if total != uint64(len(sends)) {
		t.Errorf("histogram counted %d observations, want %d", total, len(sends))
	}
	if DurationBuckets()[0] != 0.0005 || DurationBuckets()[len(DurationBuckets())-1] != 10 {
		t.Errorf("buckets must run from 0.5 ms to 10 s")
	}
	for name, wantV := range map[string]float64{
		"sidecar_injector_admission_in_flight": 0,
		"sidecar_injector_panics_total":        0,
		"sidecar_injector_ready":               1,
	} {
		if v, ok := sample(after, name, nil); !ok || v != wantV {
			t.Errorf("%s = %v (present %v), want %v", name, v, ok, wantV)
		}
	}
	if v, ok := sample(after, "sidecar_injector_build_info", map[string]string{}); !ok || v != 1 {
		t.Errorf("sidecar_injector_build_info = %v, want 1", v)
	}
	notAfter := float64(leafOf(t, mustRead(t, h.cfg.TLSCertFile)).NotAfter.Unix())
	if v, _ := sample(after, "sidecar_injector_certificate_expiry_timestamp_seconds", nil); v != notAfter {
		t.Errorf("certificate expiry %v, want the certificate's NotAfter %v", v, notAfter)
	}
	if v, _ := sample(after, "sidecar_injector_config_info", map[string]string{"hash": h.srv.config.get().hash}); v != 1 {
		t.Errorf("config_info for the hash in use = %v, want 1", v)
	}
	for _, name := range []string{"go_goroutines", "go_memstats_heap_alloc_bytes", "process_resident_memory_bytes", "process_cpu_seconds_total"} {
		if _, ok := after[name]; !ok {
			t.Errorf("%s missing: the Go and process collectors must be registered", name)
		}
	}
	for name := range after {
		if !strings.HasPrefix(name, "sidecar_injector_") && !strings.HasPrefix(name, "go_") && !strings.HasPrefix(name, "process_") {
			t.Errorf("metric %s outside the sidecar_injector_, go_ and process_ namespaces", name)
		}
	}

	promtoolCheck(t, text)
}

func mustRead(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// promtoolCheck runs `promtool check metrics` when promtool is installed
// (Debian package prometheus; `make deps` installs it when root).
func promtoolCheck(t *testing.T, text []byte) {
	t.Helper()
	path, err := exec.LookPath("promtool")
	if err != nil {
		need.Without(t, "promtool not found in PATH; `promtool check metrics` was not run (install Debian package prometheus, or run make deps as root)")
		return
	}
	cmd := exec.Command(path, "check", "metrics")
	cmd.Stdin = bytes.NewReader(text)
	out, err := cmd.CombinedOutput()
	if err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Errorf("promtool check metrics: %v\n%s", err, out)
	}
}

// Label values stay bounded: 2,000 requests over 1,000 namespaces, with
// invalid UTF-8 in pod fields, add no series; every label value is valid.
func TestMetricsCardinality(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.waitReady()
	series := func() int {
		mfs, err := h.reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, mf := range mfs {
			if strings.HasPrefix(mf.GetName(), "sidecar_injector_") {
				n += len(mf.GetMetric())
			}
		}
		return n
	}
	handler := h.srv.Handler()
	send := func(body []byte) {
		req := httptest.NewRequest(http.MethodPost, "/mutate", bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		rec := httptest.NewRecorder()
		handler.ServeHTTP(rec, req)
		if rec.Code != 200 {
			t.Fatalf("HTTP %d: %s", rec.Code, rec.Body)
		}
	}
	// One of each outcome first, so that lazily created pairs exist.
	for _, ns := range []string{"warm", "kube-system"} {
		send(inNamespace(ns)(t, h))
	}
	base := series()
	for i := range 2000 {
		ns := fmt.Sprintf("team-%04d", i%1000)
		body := simple(func(p map[string]any, r request) {
			r["namespace"] = ns
			obj(p, "metadata")["namespace"] = ns
			obj(p, "metadata")["generateName"] = fmt.Sprintf("pod-%d-BADUTF", i)
			setAnnotation(p, "sidecar.io/log-level", []string{"info", "debug", "BADUTF"}[i%3])
		})(t, h)
		send(bytes.ReplaceAll(body, []byte("BADUTF"), []byte("\xff\xfe")))
	}
	if got := series(); got != base {
		t.Errorf("sidecar_injector_* series grew from %d to %d over 2,000 requests in 1,000 namespaces", base, got)
	}
	_, mfs := scrape(t, h)
	allowed := map[string]bool{}
	for _, r := range append(inject.Reasons(), WebhookReasons()...) {
		allowed[string(r)] = true
	}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if lp.GetName() == "reason" && !allowed[lp.GetValue()] {
					t.Errorf("%s: reason %q outside the fixed set", mf.GetName(), lp.GetValue())
				}
				if strings.Contains(lp.GetValue(), "team-") || strings.Contains(lp.GetValue(), "pod-") {
					t.Errorf("%s: label %s=%q carries request data", mf.GetName(), lp.GetName(), lp.GetValue())
				}
			}
		}
	}
}
