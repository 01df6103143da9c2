package controller

import (
	"strings"
	"testing"
	"time"

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
		d, err := newDesired(in, envoy.DefaultBootstrapConfig())
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
