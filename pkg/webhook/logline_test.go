package webhook

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
)

// TestDecisionLogLine: every pod CREATE gets one "admission" line at the
// default level with what a user needs to find it and why it came out so.
func TestDecisionLogLine(t *testing.T) {
	t.Parallel()
	ca := newTestCA(t)
	dir := t.TempDir()
	cp, kp := ca.leaf(t, 1, time.Now().Add(time.Hour))
	cfg := DefaultConfig()
	cfg.TLSCertFile, cfg.TLSKeyFile = filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	writeFile(t, cfg.TLSCertFile, cp)
	writeFile(t, cfg.TLSKeyFile, kp)
	var logs bytes.Buffer
	reg := prometheus.NewRegistry()
	srv, err := New(cfg, Deps{Log: slog.New(slog.NewJSONHandler(&logs, nil)), Metrics: NewMetrics(reg), Gatherer: reg})
	if err != nil {
		t.Fatal(err)
	}
	handler := srv.Handler()

	optedOut := loadPod(t)
	optedOut["metadata"].(map[string]any)["annotations"] = map[string]any{"sidecar.io/inject": "false"}
	badSetting := loadPod(t)
	badSetting["metadata"].(map[string]any)["annotations"] = map[string]any{"sidecar.io/inbound-port": "abc"}
	dry := podRequest(t, loadPod(t))
	dry["dryRun"] = true
	update := podRequest(t, loadPod(t))
	update["operation"] = "UPDATE"
	for _, tc := range []struct {
		name, path string
		req        request
		want       map[string]any // fields besides uid, namespace, pod, operation and duration_ms
		noLine     bool
	}{
		{name: "injected", path: "/mutate", req: podRequest(t, loadPod(t)),
			want: map[string]any{"decision": "injected", "reason": "namespace_enabled"}},
		{name: "dry run", path: "/mutate", req: dry,
			want: map[string]any{"decision": "injected", "reason": "namespace_enabled", "dry_run": true}},
		{name: "skipped", path: "/mutate", req: podRequest(t, optedOut),
			want: map[string]any{"decision": "skipped", "reason": "opted_out"}},
		{name: "denied", path: "/mutate", req: podRequest(t, badSetting),
			want: map[string]any{"decision": "denied", "reason": "invalid_setting",
				"message": `sidecar-injector: annotation sidecar.io/inbound-port: port "abc": want a number 1-65535`}},
		{name: "audited", path: "/audit", req: podRequest(t, badSetting),
			want: map[string]any{"decision": "audited", "reason": "invalid_setting", "audit": true, "warnings": 1.0}},
		{name: "not a CREATE: debug only", path: "/mutate", req: update, noLine: true},
	} {
		logs.Reset()
		req := httptest.NewRequest(http.MethodPost, tc.path, bytes.NewReader(reviewBody(t, admissionV1, tc.req)))
		req.Header.Set("Content-Type", "application/json")
		rec := httptest.NewRecorder()
		handler.ServeHTTP(rec, req)
		if rec.Code != http.StatusOK {
			t.Fatalf("%s: HTTP %d: %s", tc.name, rec.Code, rec.Body)
		}
		if tc.noLine {
			if logs.Len() != 0 {
				t.Errorf("%s: logged at the default level: %s", tc.name, logs.String())
			}
			continue
		}
		var line map[string]any
		if err := json.Unmarshal(logs.Bytes(), &line); err != nil {
			t.Fatalf("%s: want one JSON log line: %v: %s", tc.name, err, logs.String())
		}
		if _, ok := line["duration_ms"].(float64); !ok {
			t.Errorf("%s: no duration_ms: %s", tc.name, logs.String())
		}
		if _, ok := line["time"].(string); !ok {
			t.Errorf("%s: no time: %s", tc.name, logs.String())
		}
		for _, k := range []string{"duration_ms", "time"} {
			delete(line, k)
		}
		want := map[string]any{"level": "INFO", "msg": "admission", "uid": tc.req["uid"], "namespace": "shop",
			"pod": "checkout-5c7b9d4f8-", "operation": tc.req["operation"]}
		for k, v := range tc.want {
			want[k] = v
		}
		if diff := cmp.Diff(want, line); diff != "" {
			t.Errorf("%s: log line (-want +got):\n%s", tc.name, diff)
		}
	}
}
