package xds

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/sidecar-injector/sidecar-injector/internal/testca"
)

// selfSigned writes a certificate for xds.test and its key into dir, issued
// by a new CA (internal/testca), and returns the CA's certificate.
func selfSigned(t *testing.T, dir, cn string) *x509.Certificate {
	t.Helper()
	ca, err := testca.New(cn+" CA", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	kp, err := ca.Issue(testca.Leaf{CommonName: cn, DNSNames: []string{"xds.test"}, Validity: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if err := kp.WriteFiles(filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")); err != nil {
		t.Fatal(err)
	}
	return ca.Cert
}

func TestTLSServingAndReload(t *testing.T) {
	dir := t.TempDir()
	first := selfSigned(t, dir, "first")
	cfg := DefaultConfig()
	cfg.ListenAddress, cfg.HealthAddress = "127.0.0.1:0", "127.0.0.1:0"
	cfg.TLSCertFile, cfg.TLSKeyFile = filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	cfg.FilePollInterval = 200 * time.Millisecond
	cfg.ShutdownDelay = 0
	reg := prometheus.NewRegistry()
	app, err := New(cfg, slog.New(slog.DiscardHandler), reg, reg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- app.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()

	handshake := func(trust *x509.Certificate) error {
		pool := x509.NewCertPool()
		pool.AddCert(trust)
		conn, err := grpc.NewClient(app.GRPCAddr().String(), grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: pool, ServerName: "xds.test"})))
		if err != nil {
			return err
		}
		defer conn.Close()
		sctx, scancel := context.WithTimeout(ctx, 5*time.Second)
		defer scancel()
		stream, err := discoveryv3.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(sctx)
		if err != nil {
			return err
		}
		if err := stream.Send(&discoveryv3.DiscoveryRequest{TypeUrl: resource.ClusterType, Node: testNode(t, "tls.default", 8080)}); err != nil {
			return err
		}
		_, err = stream.Recv()
		return err
	}
	if err := handshake(first); err != nil {
		t.Fatalf("TLS ADS with the first certificate: %v", err)
	}
	// Plaintext to the TLS port is refused.
	plain, err := grpc.NewClient(app.GRPCAddr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	pctx, pcancel := context.WithTimeout(ctx, 3*time.Second)
	if s, err := discoveryv3.NewAggregatedDiscoveryServiceClient(plain).StreamAggregatedResources(pctx); err == nil {
		if _, err := s.Recv(); err == nil {
			t.Error("plaintext stream served on the TLS port")
		}
	}
	pcancel()
	plain.Close()

	// A half-written pair (key of another cert) keeps the old certificate.
	if err := os.WriteFile(cfg.TLSCertFile, []byte("-----BEGIN CERTIFICATE-----\nbroken\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "reload error counted", func() bool { return metricValue(t, app.metrics.TLSReloads.WithLabelValues("error")) >= 1 })
	if err := handshake(first); err != nil {
		t.Fatalf("old certificate not kept after a bad reload: %v", err)
	}
	// A new pair is picked up without a restart.
	second := selfSigned(t, dir, "second")
	waitFor(t, "reload counted", func() bool { return metricValue(t, app.metrics.TLSReloads.WithLabelValues("success")) >= 1 })
	if err := handshake(second); err != nil {
		t.Fatalf("TLS with the rotated certificate: %v", err)
	}
}
