package controller

import (
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
	metadatafake "k8s.io/client-go/metadata/fake"

	"github.com/sidecar-injector/sidecar-injector/envoy"
	"github.com/sidecar-injector/sidecar-injector/pkg/inject"
	"github.com/sidecar-injector/sidecar-injector/test/testenv"
)

// With xds.caCert set, envoy-config carries the CA next to a bootstrap
// whose xds cluster verifies the server against it; without, plaintext.
func TestEnvoyConfigCarriesXDSCA(t *testing.T) {
	ca, err := testenv.NewCA("xds test", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	for _, withCA := range []bool{false, true} {
		cfg := inject.DefaultConfig()
		if withCA {
			cfg.XDS.CACert = string(ca.CertPEM)
		}
		in, err := inject.New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		d, err := newDesired(in, envoy.DefaultBootstrapConfig(), "")
		if err != nil {
			t.Fatal(err)
		}
		got, ok := d.data[XDSCAKey]
		if withCA != ok || (withCA && got != string(ca.CertPEM)) {
			t.Errorf("caCert set %v: envoy-config %s present %v", withCA, XDSCAKey, ok)
		}
		boot := d.data[inject.ConfigMapKey]
		if hasTLS := strings.Contains(boot, inject.ConfigMountPath+"/"+XDSCAKey); hasTLS != withCA {
			t.Errorf("caCert set %v: the bootstrap trusts the CA file: %v", withCA, hasTLS)
		}
	}
	bad := inject.DefaultConfig()
	bad.XDS.CACert = "not a certificate"
	if err := bad.Validate(); err == nil || !strings.Contains(err.Error(), "xds.caCert") {
		t.Errorf("a bad xds.caCert: %v, want an error naming it", err)
	}
}

// With cert-manager the CA is not in the injector config (xds.tls only):
// the controller reads it from --xds-ca-file, puts it into every
// envoy-config next to a bootstrap that verifies the xDS server against
// it, and picks up a new file (a rotated CA) without a restart, with the
// same config hash. Without the file and without xds.caCert, nothing is
// written: a bootstrap with TLS and no CA would fail every proxy.
func TestXDSCAFromFile(t *testing.T) {
	t.Parallel()
	caA, err := testenv.NewCA("xds ca A", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	caB, err := testenv.NewCA("xds ca B", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "ca.crt")
	// Written as the kubelet updates a Secret volume: a new file renamed
	// over the old one.
	write := func(b []byte) {
		tmp := filepath.Join(dir, "tmp")
		if err := os.WriteFile(tmp, b, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, path); err != nil {
			t.Fatal(err)
		}
	}
	write(caA.CertPEM)

	icfg := inject.DefaultConfig()
	icfg.XDS.TLS = true
	in, err := inject.New(icfg)
	if err != nil {
		t.Fatal(err)
	}
	wantBoot, err := envoy.RenderBootstrap(BootstrapFor(envoy.DefaultBootstrapConfig(), &icfg))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(wantBoot), inject.ConfigMountPath+"/"+XDSCAKey) || !strings.Contains(string(wantBoot), icfg.XDS.Address) {
		t.Fatalf("the bootstrap for xds.tls does not verify against %s:\n%s", XDSCAKey, wantBoot)
	}
	cs := fake.NewClientset(namespace("shop", map[string]string{inject.NamespaceLabel: "enabled"}))
	md := metadatafake.NewSimpleMetadataClient(metaScheme(t))
	cfg := testConfig()
	cfg.XDSCAFile = path
	c, err := New(cfg, cs, md, StaticConfig(in), envoy.DefaultBootstrapConfig(), prometheus.NewRegistry(), slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	runSingle(t, c, cs)
	carries := func(ca []byte) func() error {
		return func() error {
			cm, err := cs.CoreV1().ConfigMaps("shop").Get(t.Context(), inject.ConfigMapName, metav1.GetOptions{})
			if err != nil {
				return err
			}
			if got := cm.Data[XDSCAKey]; got != string(ca) {
				return fmt.Errorf("%s is %.60q, want the file's CA", XDSCAKey, got)
			}
			if got := cm.Data[inject.ConfigMapKey]; got != string(wantBoot) {
				return fmt.Errorf("bootstrap:\n%s\nwant:\n%s", got, wantBoot)
			}
			return nil
		}
	}
	eventually(t, "envoy-config with CA A from the file", carries(caA.CertPEM))
	if d := c.desired.Load(); d.hash != in.Hash() {
		t.Errorf("config hash %s, want the webhook's %s", d.hash, in.Hash())
	}

	write([]byte("not a certificate\n")) // a bad file keeps the CA in use
	write(caB.CertPEM)
	eventually(t, "envoy-config with CA B after the file changed", carries(caB.CertPEM))
	if d := c.desired.Load(); d.hash != in.Hash() {
		t.Errorf("config hash %s after a CA change, want the same %s (a stable marker)", d.hash, in.Hash())
	}

	// xds.tls without a CA: refused, with how to fix it.
	if _, err := newDesired(in, envoy.DefaultBootstrapConfig(), ""); err == nil || !strings.Contains(err.Error(), "--xds-ca-file") {
		t.Errorf("xds.tls with no CA: %v, want an error naming --xds-ca-file", err)
	}
}

// A bad --xds-ca-file keeps the CA in use, and a private key is refused.
func TestCAFileRead(t *testing.T) {
	t.Parallel()
	ca, err := testenv.NewCA("xds ca", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "ca.crt")
	f := &caFile{path: path}
	if _, err := f.read(); err == nil {
		t.Error("a missing file: no error")
	}
	if err := os.WriteFile(path, ca.CertPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if got, err := f.read(); err != nil || got != string(ca.CertPEM) {
		t.Fatalf("read: %.40q, %v", got, err)
	}
	if err := os.WriteFile(path, append(append([]byte{}, ca.CertPEM...), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: []byte{1, 2, 3}})...), 0o600); err != nil {
		t.Fatal(err)
	}
	if got, err := f.read(); err == nil || !strings.Contains(err.Error(), "never a key") || got != string(ca.CertPEM) {
		t.Errorf("a file with a key: %.40q, %v; want the previous CA and an error", got, err)
	}
}
