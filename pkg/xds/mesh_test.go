package xds

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestLoadMeshSettings(t *testing.T) {
	t.Parallel()
	full := `apiVersion: sidecar.io/v1alpha1
kind: MeshConfig
connectTimeout: 2s
idleTimeout: 10m
inboundUpstream: podIP
accessLog:
  enabled: true
  format: json
circuitBreakers:
  maxConnections: 100
  maxPendingRequests: 10
  maxRequests: 1000
  maxRetries: 0
`
	want := DefaultMeshSettings()
	want.ConnectTimeout.Duration = 2 * time.Second
	want.IdleTimeout.Duration = 10 * time.Minute
	want.InboundUpstream = UpstreamPodIP
	want.AccessLog = AccessLog{Enabled: true, Format: AccessLogJSON}
	want.CircuitBreakers = CircuitBreakers{MaxConnections: 100, MaxPendingRequests: 10, MaxRequests: 1000}
	for name, tc := range map[string]struct {
		doc  string
		want MeshSettings
	}{
		"empty":         {"", DefaultMeshSettings()},
		"comments only": {"# nothing\n", DefaultMeshSettings()},
		"full":          {full, want},
		"json":          {`{"idleTimeout": "0s"}`, func() MeshSettings { m := DefaultMeshSettings(); m.IdleTimeout.Duration = 0; return m }()},
		"example file": {mustRead(t, filepath.Join("testdata", "mesh", "example.yaml")), func() MeshSettings {
			m := DefaultMeshSettings()
			m.AccessLog = AccessLog{Enabled: true, Format: AccessLogText, TextFormat: "[%START_TIME%] %DOWNSTREAM_REMOTE_ADDRESS% -> %UPSTREAM_HOST% %DURATION%ms"}
			return m
		}()},
	} {
		got, err := LoadMeshSettings([]byte(tc.doc))
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if diff := cmp.Diff(tc.want, got); diff != "" {
			t.Errorf("%s (-want +got):\n%s", name, diff)
		}
	}
}

func mustRead(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestLoadMeshSettingsErrors(t *testing.T) {
	t.Parallel()
	for name, tc := range map[string]struct{ doc, want string }{
		"unknown field":        {"connectTimeout: 1s\ntimeout: 2s\n", `unknown field "timeout"`},
		"unknown nested field": {"accessLog: {enabled: true, path: /dev/stdout}\n", `unknown field "path"`},
		"duplicate key":        {"idleTimeout: 1s\nidleTimeout: 2s\n", "idleTimeout"},
		"wrong kind":           {"kind: InjectorConfig\n", `kind: "InjectorConfig": want MeshConfig`},
		"wrong apiVersion":     {"apiVersion: v1\n", `apiVersion: "v1": want sidecar.io/v1alpha1`},
		"duration number":      {"connectTimeout: 5\n", `connectTimeout: want a duration string like "5s"`},
		"duration garbage":     {"idleTimeout: soon\n", `idleTimeout: want a duration like "5s" or "1h", got "soon"`},
		"connect too long":     {"connectTimeout: 2h\n", "connectTimeout: 2h0m0s: want 1ms to 1h"},
		"connect zero":         {"connectTimeout: 0s\n", "connectTimeout: 0s: want 1ms to 1h"},
		"idle too short":       {"idleTimeout: 10ms\n", "idleTimeout: 10ms: want 0s (never) or 1s to 168h"},
		"upstream":             {"inboundUpstream: localhost\n", `inboundUpstream: "localhost": want loopback or podIP`},
		"log format":           {"accessLog: {format: xml}\n", `accessLog.format: "xml": want text or json`},
		"text format for json": {"accessLog: {format: json, textFormat: '%START_TIME%'}\n", "accessLog.textFormat: set with format json"},
		"unbalanced percent":   {"accessLog: {textFormat: '%START_TIME'}\n", "accessLog.textFormat: unbalanced '%'"},
		"zero connections":     {"circuitBreakers: {maxConnections: 0}\n", "circuitBreakers.maxConnections: 0 would refuse"},
		"negative limit":       {"circuitBreakers: {maxRequests: -1}\n", "maxRequests"},
		"limit too big":        {"circuitBreakers: {maxRequests: 4294967296}\n", "maxRequests"},
		"not YAML":             {"connectTimeout: [", "mesh config"},
		"list":                 {"- a\n", "mesh config"},
		"too big":              {"# " + strings.Repeat("x", MaxMeshFileSize), "at most 1048576 are allowed"},
	} {
		_, err := LoadMeshSettings([]byte(tc.doc))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want one containing %q", name, err, tc.want)
		}
	}
	// Several wrong fields are all named at once.
	_, err := LoadMeshSettings([]byte("connectTimeout: 0s\ninboundUpstream: x\n"))
	if err == nil || !strings.Contains(err.Error(), "connectTimeout") || !strings.Contains(err.Error(), "inboundUpstream") {
		t.Errorf("two errors: %v", err)
	}
}

// FuzzLoadMeshSettings: never a panic; accepted settings are valid, survive
// a JSON round trip and build a snapshot that passes ValidateDeep and
// Consistent (BuildSnapshot checks both).
func FuzzLoadMeshSettings(f *testing.F) {
	f.Add([]byte(""))
	f.Add([]byte("connectTimeout: 250ms\nidleTimeout: 0s\n"))
	f.Add([]byte("accessLog: {enabled: true, format: json}\ncircuitBreakers: {maxConnections: 1}\n"))
	f.Add([]byte("accessLog: {enabled: true, textFormat: '%START_TIME% 100%%'}\ninboundUpstream: podIP\n"))
	if files, err := filepath.Glob(filepath.Join("testdata", "mesh", "*.yaml")); err == nil {
		for _, p := range files {
			if b, err := os.ReadFile(p); err == nil {
				f.Add(b)
			}
		}
	}
	info := NodeInfo{InboundPort: 10001, OutboundPort: 10002, StatsPort: 10090, AdminPort: 9901, AppPorts: []uint32{8080}, IPv6: true}
	f.Fuzz(func(t *testing.T, doc []byte) {
		m, err := LoadMeshSettings(doc)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "mesh config") {
				t.Fatalf("error without the mesh config prefix: %v", err)
			}
			return
		}
		if err := m.Validate(); err != nil {
			t.Fatalf("accepted settings fail Validate: %v", err)
		}
		b, err := json.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		m2, err := LoadMeshSettings(b)
		if err != nil {
			t.Fatalf("round trip of %s: %v", b, err)
		}
		if diff := cmp.Diff(m, m2); diff != "" {
			t.Fatalf("round trip (-first +second):\n%s", diff)
		}
		if _, err := BuildSnapshot(info, m); err != nil {
			t.Fatalf("accepted settings build no snapshot: %v", err)
		}
	})
}
