package webhook

import (
	"context"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"
	"k8s.io/apimachinery/pkg/version"

	"github.com/sidecar-injector/sidecar-injector/internal/kubeconfig"
)

func TestSanitize(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in   string
		max  int
		want string
	}{
		{"plain text", 120, "plain text"},
		{"  padded  ", 120, "padded"},
		{"line one\nline two\r\n\ttabbed", 120, "line one line two tabbed"},
		{"esc \x1b[31mred\x1b[0m", 120, "esc [31mred [0m"},
		{"bad \xff\xfe utf8", 120, "bad \ufffd\ufffd utf8"},
		{"bidi \u202egnp.exe", 120, "bidi gnp.exe"},
		{"many     spaces", 120, "many spaces"},
		{strings.Repeat("a", 130), 120, strings.Repeat("a", 117) + "..."},
		{strings.Repeat("é", 130), 120, strings.Repeat("é", 117) + "..."},
		{strings.Repeat("word ", 30), 20, "word word word wo..."},
		{"", 120, ""},
		{"\n\t\x00", 120, ""},
	} {
		got := sanitize(tc.in, tc.max)
		if got != tc.want {
			t.Errorf("sanitize(%q, %d) = %q, want %q", tc.in, tc.max, got, tc.want)
		}
		if n := utf8.RuneCountInString(got); n > tc.max || !utf8.ValidString(got) {
			t.Errorf("sanitize(%q) = %q: %d characters, valid %v", tc.in, got, n, utf8.ValidString(got))
		}
	}
}

func TestLimitWarnings(t *testing.T) {
	t.Parallel()
	seven := []string{"w1", "w2\n", "w3", "w4", "w5", "w6", "w7"}
	for _, tc := range []struct {
		in   []string
		want []string
	}{
		{nil, nil},
		{[]string{"one"}, []string{"one"}},
		{seven[:5], []string{"w1", "w2", "w3", "w4", "w5"}},
		{seven, []string{"w1", "w2", "w3", "w4", "3 more warnings not shown; run sidecar-injector explain for all"}},
		{[]string{"ok", " \n "}, []string{"ok"}},
	} {
		if diff := cmp.Diff(tc.want, limitWarnings(tc.in)); diff != "" {
			t.Errorf("limitWarnings(%q) (-want +got):\n%s", tc.in, diff)
		}
	}
}

func TestCheckContentType(t *testing.T) {
	t.Parallel()
	for ct, ok := range map[string]bool{
		"application/json":                 true,
		"application/json; charset=utf-8":  true,
		"Application/JSON;charset=UTF-8":   true,
		"application/json; charset=utf8":   true,
		"application/json; charset=latin1": false,
		"text/json":                        false,
		"application/yaml":                 false,
		"":                                 false,
		"application/json; ===":            false,
	} {
		if err := checkContentType(ct); (err == nil) != ok {
			t.Errorf("checkContentType(%q) = %v, want ok %v", ct, err, ok)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	valid := DefaultConfig()
	valid.TLSCertFile, valid.TLSKeyFile = "tls.crt", "tls.key"
	if err := valid.Validate(); err != nil {
		t.Fatalf("defaults with a pair: %v", err)
	}
	if err := DefaultConfig().Validate(); err == nil || !strings.Contains(err.Error(), "--tls-cert-file is required") {
		t.Errorf("defaults without a pair: %v", err)
	}
	for _, tc := range []struct {
		mutate func(*Config)
		want   string
	}{
		{func(c *Config) { c.ListenAddress = "9443" }, "--listen-address"},
		{func(c *Config) { c.HealthAddress = "" }, "--health-address"},
		{func(c *Config) { c.HealthAddress = c.ListenAddress }, "must differ"},
		{func(c *Config) { c.TLSMinVersion = "1.1" }, "--tls-min-version"},
		{func(c *Config) { c.MaxInFlight = 0 }, "--max-in-flight"},
		{func(c *Config) { c.ShutdownGrace = 0 }, "--shutdown-grace"},
		{func(c *Config) { c.DrainDelay = -time.Second }, "--drain-delay"},
		{func(c *Config) { c.ReloadInterval = 0 }, "--reload-interval"},
		{func(c *Config) { c.ReadHeaderTimeout = 0 }, "read header timeout"},
		{func(c *Config) { c.MaxBodyBytes = 10 }, "max body bytes"},
	} {
		c := valid
		tc.mutate(&c)
		err := c.Validate()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Validate() = %v, want an error naming %q", err, tc.want)
		}
	}
}

func TestFlags(t *testing.T) {
	t.Parallel()
	c := DefaultConfig()
	fs := flag.NewFlagSet("webhook", flag.ContinueOnError)
	c.AddFlags(fs)
	err := fs.Parse([]string{"--tls-cert-file=c", "--tls-key-file=k", "--config=cfg.yaml", "--listen-address=127.0.0.1:9443",
		"--health-address=:8081", "--tls-min-version=1.3", "--http2=false", "--max-in-flight=10", "--drain-delay=2s",
		"--shutdown-grace=20s", "--kubeconfig=kc", "--reload-interval=1m", "--enable-pprof"})
	if err != nil {
		t.Fatal(err)
	}
	want := DefaultConfig()
	want.TLSCertFile, want.TLSKeyFile, want.ConfigFile, want.Kubeconfig = "c", "k", "cfg.yaml", "kc"
	want.ListenAddress, want.HealthAddress, want.TLSMinVersion, want.HTTP2 = "127.0.0.1:9443", ":8081", "1.3", false
	want.MaxInFlight, want.DrainDelay, want.ShutdownGrace, want.ReloadInterval, want.EnablePprof = 10, 2*time.Second, 20*time.Second, time.Minute, true
	if diff := cmp.Diff(want, c); diff != "" {
		t.Errorf("flags (-want +got):\n%s", diff)
	}
	// Flags are kebab-case.
	fs.VisitAll(func(f *flag.Flag) {
		if strings.ToLower(f.Name) != f.Name || strings.Contains(f.Name, "_") {
			t.Errorf("flag %q is not kebab-case", f.Name)
		}
	})
}

func TestSupportsNativeSidecar(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		info    version.Info
		want    bool
		wantErr bool
	}{
		{version.Info{GitVersion: "v1.29.0"}, true, false},
		{version.Info{GitVersion: "v1.28.9"}, false, false},
		{version.Info{GitVersion: "v1.33.1-gke.1200"}, true, false},
		{version.Info{GitVersion: "v1.27.3+k3s1"}, false, false},
		{version.Info{Major: "1", Minor: "30+"}, true, false},
		{version.Info{Major: "1", Minor: "26"}, false, false},
		{version.Info{GitVersion: "weird", Major: "x"}, false, true},
	} {
		got, err := supportsNativeSidecar(tc.info)
		if (err != nil) != tc.wantErr || got != tc.want {
			t.Errorf("supportsNativeSidecar(%+v) = %v, %v; want %v (error %v)", tc.info, got, err, tc.want, tc.wantErr)
		}
	}
}

// NativeSidecarSupport reads /version through a kubeconfig's cluster from a
// loopback fake apiserver (TLS, bearer token).
func TestNativeSidecarSupport(t *testing.T) { // not parallel: t.Setenv
	var gitVersion atomic.Value
	gitVersion.Store("v1.30.2")
	var calls atomic.Int32
	fake := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		if r.URL.Path != "/version" || r.Header.Get("Authorization") != "Bearer test-token" {
			http.Error(w, "no", http.StatusUnauthorized)
			return
		}
		fmt.Fprintf(w, `{"major":"1","minor":"30","gitVersion":%q}`, gitVersion.Load())
	}))
	defer fake.Close()
	caPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: fake.Certificate().Raw})
	path := filepath.Join(t.TempDir(), "kubeconfig")
	writeFile(t, path, []byte(fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: test
  cluster: {server: %q, certificate-authority-data: %q}
users:
- name: test
  user: {token: test-token}
contexts:
- name: test
  context: {cluster: test, user: test}
current-context: test
`, fake.URL, base64Std(caPEM))))

	cluster, err := kubeconfig.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	got, err := NativeSidecarSupport(ctx, cluster, 1)
	if err != nil || got == nil || !*got {
		t.Errorf("1.30: %v, %v; want true", deref(got), err)
	}
	gitVersion.Store("v1.28.4")
	got, err = NativeSidecarSupport(ctx, cluster, 1)
	if err != nil || got == nil || *got {
		t.Errorf("1.28: %v, %v; want false", deref(got), err)
	}
	if _, err := kubeconfig.Load(filepath.Join(t.TempDir(), "missing")); err == nil || !strings.Contains(err.Error(), "--kubeconfig") {
		t.Errorf("missing kubeconfig: %v; want an error naming --kubeconfig", err)
	}
	// Outside a pod and without --kubeconfig: unknown, no error.
	t.Setenv("KUBERNETES_SERVICE_HOST", "")
	if _, err := kubeconfig.Load(""); !errors.Is(err, kubeconfig.ErrNoClusterConfig) {
		t.Errorf("no cluster config: %v; want ErrNoClusterConfig", err)
	}
	if got, err := NativeSidecarSupport(ctx, nil, 1); got != nil || err != nil {
		t.Errorf("no cluster config: %v, %v; want nil, nil", deref(got), err)
	}
}

func base64Std(b []byte) string { return base64.StdEncoding.EncodeToString(b) }

func deref(b *bool) any {
	if b == nil {
		return nil
	}
	return *b
}
