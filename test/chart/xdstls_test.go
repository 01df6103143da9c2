package chart

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/protobuf/types/known/structpb"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	"github.com/sidecar-injector/sidecar-injector/envoy"
	"github.com/sidecar-injector/sidecar-injector/envoy/nodemeta"
	"github.com/sidecar-injector/sidecar-injector/pkg/controller"
	"github.com/sidecar-injector/sidecar-injector/pkg/inject"
	"github.com/sidecar-injector/sidecar-injector/pkg/xds"
)

// ADS over TLS against what the chart renders (DESIGN.md, RELIABILITY.md
// "Pod Security"): the xDS server serves the chart's certificate, the
// envoy-config bootstrap the controller renders from the chart's injector
// config makes the xds cluster verify it against the CA it carries, and a
// client verifying exactly as that bootstrap says (trusted CA, SNI and SAN)
// gets its CDS and LDS. Plaintext stays a value.
func TestXDSOverTLS(t *testing.T) {
	objs := split(t, render(t, ""))
	var secret corev1.Secret
	var injectorCfg string
	var xdsArgs []string
	for _, o := range objs {
		switch {
		case o.Kind == "Secret" && strings.HasSuffix(o.Name, "-webhook-tls"):
			if err := yaml.Unmarshal(o.Raw, &secret); err != nil {
				t.Fatal(err)
			}
		case o.Kind == "ConfigMap" && strings.HasSuffix(o.Name, "-injector"):
			var cm corev1.ConfigMap
			if err := yaml.Unmarshal(o.Raw, &cm); err != nil {
				t.Fatal(err)
			}
			injectorCfg = cm.Data["config.yaml"]
		case o.Kind == "Deployment" && strings.HasSuffix(o.Name, "-xds"):
			var d appsv1.Deployment
			if err := yaml.Unmarshal(o.Raw, &d); err != nil {
				t.Fatal(err)
			}
			xdsArgs = d.Spec.Template.Spec.Containers[0].Args
		}
	}
	if !slices.Contains(xdsArgs, "--tls-cert-file=/etc/sidecar-injector/tls/tls.crt") {
		t.Fatalf("the xds Deployment does not serve TLS by default: %v", xdsArgs)
	}
	cfg, err := inject.LoadConfig([]byte(injectorCfg))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.XDS.CACert == "" {
		t.Fatal("the chart's injector config carries no xds.caCert")
	}

	// The bootstrap the controller renders for that config.
	upstream := xdsUpstreamTLS(t, &cfg)
	caFile := upstream.GetCommonTlsContext().GetValidationContext().GetTrustedCa().GetFilename()
	if caFile != inject.ConfigMountPath+"/"+controller.XDSCAKey {
		t.Fatalf("the bootstrap trusts %q, want the CA the controller puts into envoy-config (%s/%s)", caFile, inject.ConfigMountPath, controller.XDSCAKey)
	}
	sni := upstream.GetSni()
	if sni != cfg.XDS.Address {
		t.Fatalf("SNI %q, want the xDS Service %q", sni, cfg.XDS.Address)
	}

	// The xDS server with the chart's Secret (the files its pod mounts).
	dir := t.TempDir()
	for _, k := range []string{"tls.crt", "tls.key"} {
		if err := os.WriteFile(filepath.Join(dir, k), secret.Data[k], 0o600); err != nil {
			t.Fatal(err)
		}
	}
	xcfg := xds.DefaultConfig()
	xcfg.ListenAddress, xcfg.HealthAddress = "127.0.0.1:0", "127.0.0.1:0"
	xcfg.TLSCertFile, xcfg.TLSKeyFile = filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	xcfg.ShutdownDelay = 0
	reg := prometheus.NewRegistry()
	app, err := xds.New(xcfg, slog.New(slog.NewTextHandler(io.Discard, nil)), reg, reg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- app.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			t.Error("xds server did not stop")
		}
	})

	// A client verifying as Envoy would with that bootstrap: the CA file's
	// content is xds.caCert (what envoy-config carries), the name is the SNI.
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM([]byte(cfg.XDS.CACert)) {
		t.Fatal("xds.caCert holds no certificate")
	}
	if string(secret.Data["ca.crt"]) != cfg.XDS.CACert {
		t.Error("xds.caCert is not the CA of the serving Secret")
	}
	conn, err := grpc.NewClient(app.GRPCAddr().String(), grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{
		RootCAs: pool, ServerName: sni, MinVersion: tls.VersionTLS12, NextProtos: []string{"h2"},
	})))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	md := nodemeta.Metadata{Version: nodemeta.Version, InboundPort: 10001, OutboundPort: 10002, StatsPort: 10090, AdminPort: 9901,
		AppPorts: []nodemeta.AppPort{{Port: 8080}}, PodIP: "127.0.0.1", ConfigHash: cfg.Hash(), InjectorVersion: "test"}
	s, err := envoy.MetadataStruct(md)
	if err != nil {
		t.Fatal(err)
	}
	rctx, rcancel := context.WithTimeout(ctx, 20*time.Second)
	defer rcancel()
	st, err := discoveryv3.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(rctx)
	if err != nil {
		t.Fatal(err)
	}
	node := envoyNode(s)
	for i, typ := range []string{resource.ClusterType, resource.ListenerType} {
		req := &discoveryv3.DiscoveryRequest{TypeUrl: typ}
		if i == 0 {
			req.Node = node
		}
		if err := st.Send(req); err != nil {
			t.Fatal(err)
		}
		resp, err := st.Recv()
		if err != nil {
			t.Fatalf("%s over TLS: %v", xds.TypeName(typ), err)
		}
		if len(resp.GetResources()) == 0 {
			t.Fatalf("%s over TLS: no resources", xds.TypeName(typ))
		}
		if err := st.Send(&discoveryv3.DiscoveryRequest{TypeUrl: typ, VersionInfo: resp.GetVersionInfo(), ResponseNonce: resp.GetNonce()}); err != nil {
			t.Fatal(err)
		}
	}

	// A client that does not trust the chart's CA is refused.
	bad, err := grpc.NewClient(app.GRPCAddr().String(), grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{
		RootCAs: x509.NewCertPool(), ServerName: sni, MinVersion: tls.VersionTLS12,
	})))
	if err != nil {
		t.Fatal(err)
	}
	defer bad.Close()
	bctx, bcancel := context.WithTimeout(ctx, 5*time.Second)
	defer bcancel()
	if bs, err := discoveryv3.NewAggregatedDiscoveryServiceClient(bad).StreamAggregatedResources(bctx); err == nil {
		if err := bs.Send(&discoveryv3.DiscoveryRequest{TypeUrl: resource.ClusterType, Node: node}); err == nil {
			if _, err := bs.Recv(); err == nil {
				t.Error("a client without the chart's CA got a config")
			}
		}
	}

	// Plaintext stays a value: no TLS args, no CA in the injector config.
	for _, o := range split(t, render(t, "", "--set", "xds.tls.enabled=false")) {
		if strings.Contains(string(o.Raw), "caCert:") || (o.Kind == "Deployment" && strings.HasSuffix(o.Name, "-xds") && strings.Contains(string(o.Raw), "--tls-cert-file")) {
			t.Errorf("xds.tls.enabled=false: %s %s still sets up xDS TLS", o.Kind, o.Name)
		}
	}
}

func envoyNode(md *structpb.Struct) *corev3.Node {
	return &corev3.Node{Id: "web-1.shop", Cluster: "shop", Metadata: md}
}

// With cert-manager xDS is TLS by default too: the xds Deployment serves
// the cert-manager Secret's tls.crt/tls.key (its Certificate names the xDS
// Service), the controller mounts only that Secret's ca.crt and reads it
// with --xds-ca-file, and the injector config says only xds.tls (the CA is
// not known at render time), so the bootstrap the controller renders from
// it verifies the server against the envoy-config CA.
func TestXDSOverTLSWithCertManager(t *testing.T) {
	t.Parallel()
	const caFlag = "--xds-ca-file=/etc/sidecar-injector/xds-ca/ca.crt"
	objs := split(t, render(t, "", "--set", "certificates.certManager.enabled=true"))
	var cfg inject.Config
	var xdsDep, ctrlDep appsv1.Deployment
	var dnsNames []string
	tlsSecret := ""
	for _, o := range objs {
		switch {
		case o.Kind == "ConfigMap" && strings.HasSuffix(o.Name, "-injector"):
			var cm corev1.ConfigMap
			if err := yaml.Unmarshal(o.Raw, &cm); err != nil {
				t.Fatal(err)
			}
			c, err := inject.LoadConfig([]byte(cm.Data["config.yaml"]))
			if err != nil {
				t.Fatal(err)
			}
			cfg = c
		case o.Kind == "Deployment" && strings.HasSuffix(o.Name, "-xds"):
			if err := yaml.Unmarshal(o.Raw, &xdsDep); err != nil {
				t.Fatal(err)
			}
		case o.Kind == "Deployment" && strings.HasSuffix(o.Name, "-controller"):
			if err := yaml.Unmarshal(o.Raw, &ctrlDep); err != nil {
				t.Fatal(err)
			}
		case o.Kind == "Certificate" && strings.HasSuffix(o.Name, "-webhook"):
			var c struct {
				Spec struct {
					SecretName string   `json:"secretName"`
					DNSNames   []string `json:"dnsNames"`
				} `json:"spec"`
			}
			if err := yaml.Unmarshal(o.Raw, &c); err != nil {
				t.Fatal(err)
			}
			dnsNames, tlsSecret = c.Spec.DNSNames, c.Spec.SecretName
		}
	}
	if tlsSecret == "" {
		t.Fatal("no cert-manager Certificate for the serving Secret")
	}

	// The injector config: TLS on, no inline CA; the bootstrap verifies
	// against the envoy-config CA.
	if !cfg.XDS.TLS || cfg.XDS.CACert != "" {
		t.Fatalf("injector config xds: tls %v, caCert %d bytes; want tls and no inline CA", cfg.XDS.TLS, len(cfg.XDS.CACert))
	}
	upstream := xdsUpstreamTLS(t, &cfg)
	if got := upstream.GetCommonTlsContext().GetValidationContext().GetTrustedCa().GetFilename(); got != inject.ConfigMountPath+"/"+controller.XDSCAKey {
		t.Errorf("the bootstrap trusts %q, want %s/%s", got, inject.ConfigMountPath, controller.XDSCAKey)
	}
	if !slices.Contains(dnsNames, cfg.XDS.Address) || upstream.GetSni() != cfg.XDS.Address {
		t.Errorf("the serving Certificate names %v, SNI %q: want both to name the xDS Service %s", dnsNames, upstream.GetSni(), cfg.XDS.Address)
	}

	// secretItems lists the keys a pod mounts from the serving Secret.
	secretItems := func(d appsv1.Deployment) (keys []string, dirs []string) {
		for _, v := range d.Spec.Template.Spec.Volumes {
			if v.Secret == nil || v.Secret.SecretName != tlsSecret {
				continue
			}
			if len(v.Secret.Items) == 0 {
				t.Errorf("%s mounts all of Secret %s", d.Name, tlsSecret)
			}
			for _, it := range v.Secret.Items {
				keys = append(keys, it.Key)
			}
			for _, c := range d.Spec.Template.Spec.Containers {
				for _, m := range c.VolumeMounts {
					if m.Name == v.Name {
						dirs = append(dirs, m.MountPath)
					}
				}
			}
		}
		slices.Sort(keys)
		return keys, dirs
	}

	// The xds server: the serving pair, nothing else.
	xdsArgs := xdsDep.Spec.Template.Spec.Containers[0].Args
	for _, a := range []string{"--tls-cert-file=/etc/sidecar-injector/tls/tls.crt", "--tls-key-file=/etc/sidecar-injector/tls/tls.key"} {
		if !slices.Contains(xdsArgs, a) {
			t.Errorf("the xds Deployment lacks %s: %v", a, xdsArgs)
		}
	}
	if keys, dirs := secretItems(xdsDep); !slices.Equal(keys, []string{"tls.crt", "tls.key"}) || !slices.Equal(dirs, []string{"/etc/sidecar-injector/tls"}) {
		t.Errorf("the xds Deployment mounts %v at %v from %s, want tls.crt and tls.key at /etc/sidecar-injector/tls", keys, dirs, tlsSecret)
	}

	// The controller: ca.crt only, read by --xds-ca-file.
	if args := ctrlDep.Spec.Template.Spec.Containers[0].Args; !slices.Contains(args, caFlag) {
		t.Errorf("the controller lacks %s: %v", caFlag, args)
	}
	if keys, dirs := secretItems(ctrlDep); !slices.Equal(keys, []string{"ca.crt"}) || !slices.Equal(dirs, []string{"/etc/sidecar-injector/xds-ca"}) {
		t.Errorf("the controller mounts %v at %v from %s, want only ca.crt at /etc/sidecar-injector/xds-ca", keys, dirs, tlsSecret)
	}
	for _, v := range ctrlDep.Spec.Template.Spec.Volumes {
		if v.Secret != nil && v.Secret.SecretName != tlsSecret {
			t.Errorf("the controller mounts Secret %s", v.Secret.SecretName)
		}
	}

	// Plaintext stays a value with cert-manager too.
	for _, o := range split(t, render(t, "", "--set", "certificates.certManager.enabled=true", "--set", "xds.tls.enabled=false")) {
		raw := string(o.Raw)
		if strings.Contains(raw, "--xds-ca-file") || strings.Contains(raw, "tls: true") || (o.Kind == "Deployment" && strings.HasSuffix(o.Name, "-xds") && strings.Contains(raw, "--tls-cert-file")) {
			t.Errorf("certManager with xds.tls.enabled=false: %s %s still sets up xDS TLS", o.Kind, o.Name)
		}
	}
}

// xdsUpstreamTLS renders the bootstrap the controller makes for cfg and
// returns the TLS context of its xds cluster, which must resolve by DNS.
func xdsUpstreamTLS(t *testing.T, cfg *inject.Config) *tlsv3.UpstreamTlsContext {
	t.Helper()
	b, err := envoy.Bootstrap(controller.BootstrapFor(envoy.DefaultBootstrapConfig(), cfg))
	if err != nil {
		t.Fatal(err)
	}
	var upstream tlsv3.UpstreamTlsContext
	for _, c := range b.GetStaticResources().GetClusters() {
		if c.GetName() == envoy.XDSCluster {
			if err := c.GetTransportSocket().GetTypedConfig().UnmarshalTo(&upstream); err != nil {
				t.Fatalf("the xds cluster has no TLS transport socket: %v", err)
			}
			if c.GetClusterDiscoveryType().(*clusterv3.Cluster_Type).Type != clusterv3.Cluster_STRICT_DNS {
				t.Errorf("the xds cluster resolves %v", c.GetClusterDiscoveryType())
			}
		}
	}
	return &upstream
}
