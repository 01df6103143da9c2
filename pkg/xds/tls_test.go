package xds

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"log/slog"
	"math/big"
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
)

// selfSigned writes a certificate for 127.0.0.1 and its key into dir.
func selfSigned(t *testing.T, dir, cn string) *x509.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    time.Now().Add(-time.Minute),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:     []string{"xds.test"},
		IsCA:         true, BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	write := func(name string, block *pem.Block) {
		tmp := filepath.Join(dir, "."+name)
		if err := os.WriteFile(tmp, pem.EncodeToMemory(block), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	write("tls.key", &pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER})
	write("tls.crt", &pem.Block{Type: "CERTIFICATE", Bytes: der})
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert
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
