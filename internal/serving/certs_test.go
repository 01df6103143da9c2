package serving

import (
	"bytes"
	"crypto/tls"
	"errors"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/sidecar-injector/sidecar-injector/internal/syncbuf"
	"github.com/sidecar-injector/sidecar-injector/internal/testca"
)

// value reads a counter or gauge.
func value(t *testing.T, m prometheus.Metric) float64 {
	t.Helper()
	var d dto.Metric
	if err := m.Write(&d); err != nil {
		t.Fatal(err)
	}
	if d.Counter != nil {
		return d.Counter.GetValue()
	}
	return d.Gauge.GetValue()
}

type certFixture struct {
	t                 *testing.T
	ca                *testca.CA
	certFile, keyFile string
	metrics           CertMetrics
	logs              *syncbuf.Buffer
	src               *CertSource
}

func newCertFixture(t *testing.T) *certFixture {
	t.Helper()
	ca, err := testca.New("serving-test-ca", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	f := &certFixture{t: t, ca: ca, certFile: filepath.Join(dir, "tls.crt"), keyFile: filepath.Join(dir, "tls.key"), logs: &syncbuf.Buffer{},
		metrics: CertMetrics{
			Reloads:    prometheus.NewCounterVec(prometheus.CounterOpts{Name: "reloads_total", Help: "h"}, []string{"result"}),
			LastReload: prometheus.NewGauge(prometheus.GaugeOpts{Name: "last_reload", Help: "h"}),
			Expiry:     prometheus.NewGauge(prometheus.GaugeOpts{Name: "expiry", Help: "h"}),
		}}
	f.src = NewCertSource(f.certFile, f.keyFile, slog.New(slog.NewTextHandler(f.logs, nil)), f.metrics)
	return f
}

func (f *certFixture) issue(serial int64) testca.KeyPair {
	f.t.Helper()
	kp, err := f.ca.Issue(testca.Leaf{CommonName: "serving.test", DNSNames: []string{"serving.test"}, Validity: time.Hour, Serial: serial})
	if err != nil {
		f.t.Fatal(err)
	}
	return kp
}

func (f *certFixture) write(certPEM, keyPEM []byte) {
	f.t.Helper()
	if err := errors.Join(testca.WriteFile(f.certFile, certPEM, 0o644), testca.WriteFile(f.keyFile, keyPEM, 0o600)); err != nil {
		f.t.Fatal(err)
	}
}

func (f *certFixture) reloads(result string) float64 {
	return value(f.t, f.metrics.Reloads.WithLabelValues(result))
}

// serial is the serial of the certificate handed to a handshake now, 0
// when there is none.
func (f *certFixture) serial() int64 {
	f.t.Helper()
	c, err := f.src.GetCertificate(&tls.ClientHelloInfo{})
	if err != nil {
		if !errors.Is(err, ErrNoCertificate) {
			f.t.Fatalf("GetCertificate: %v", err)
		}
		return 0
	}
	return c.Leaf.SerialNumber.Int64()
}

// A reload swaps in a good new pair and keeps the pair in use on anything
// else, counting each outcome once (an unchanged bad pair is not news).
func TestCertSourceReload(t *testing.T) {
	t.Parallel()
	f := newCertFixture(t)
	a, b, c := f.issue(1), f.issue(2), f.issue(3)
	steps := []struct {
		name        string
		write       func()
		wantChanged bool
		wantErr     string
		wantSerial  int64
		wantOK      float64 // success count after the step
		wantErrs    float64 // error count after the step
	}{
		{name: "no files yet", wantErr: "check --tls-cert-file and --tls-key-file", wantErrs: 1},
		{name: "files still missing: reported again", wantErr: "no such file", wantErrs: 2},
		{name: "first pair", write: func() { f.write(a.CertPEM, a.KeyPEM) }, wantChanged: true, wantSerial: 1, wantOK: 1, wantErrs: 2},
		{name: "unchanged", wantSerial: 1, wantOK: 1, wantErrs: 2},
		{name: "key of another certificate", write: func() { f.write(b.CertPEM, a.KeyPEM) }, wantErr: "not the certificate's", wantSerial: 1, wantOK: 1, wantErrs: 3},
		{name: "the same bad pair again: not reported twice", wantSerial: 1, wantOK: 1, wantErrs: 3},
		{name: "half-written certificate", write: func() { f.write(b.CertPEM[:len(b.CertPEM)/2], b.KeyPEM) }, wantErr: "half written", wantSerial: 1, wantOK: 1, wantErrs: 4},
		{name: "the same pair rewritten with other bytes: no news", write: func() { f.write(append(bytes.Clone(a.CertPEM), '\n'), a.KeyPEM) }, wantSerial: 1, wantOK: 1, wantErrs: 4},
		{name: "next pair", write: func() { f.write(b.CertPEM, b.KeyPEM) }, wantChanged: true, wantSerial: 2, wantOK: 2, wantErrs: 4},
		{name: "expired pair", write: func() {
			f.src.now = func() time.Time { return time.Now().Add(2 * time.Hour) }
			f.write(c.CertPEM, c.KeyPEM)
		}, wantErr: "expired", wantSerial: 2, wantOK: 2, wantErrs: 5},
	}
	for _, s := range steps {
		if s.write != nil {
			s.write()
		}
		changed, err := f.src.Reload()
		if s.wantErr == "" && err != nil || s.wantErr != "" && (err == nil || !strings.Contains(err.Error(), s.wantErr)) {
			t.Errorf("%s: Reload error %v, want one containing %q", s.name, err, s.wantErr)
		}
		if changed != s.wantChanged {
			t.Errorf("%s: Reload changed=%v, want %v", s.name, changed, s.wantChanged)
		}
		if got := f.serial(); got != s.wantSerial {
			t.Errorf("%s: serving serial %d, want %d", s.name, got, s.wantSerial)
		}
		if f.src.Loaded() != (s.wantSerial != 0) {
			t.Errorf("%s: Loaded()=%v", s.name, f.src.Loaded())
		}
		if ok, errs := f.reloads("success"), f.reloads("error"); ok != s.wantOK || errs != s.wantErrs {
			t.Errorf("%s: reloads success=%v error=%v, want %v and %v", s.name, ok, errs, s.wantOK, s.wantErrs)
		}
	}
	if got, want := value(t, f.metrics.Expiry), float64(b.Cert.NotAfter.Unix()); got != want {
		t.Errorf("expiry gauge %v, want the NotAfter of the pair in use %v", got, want)
	}
	if value(t, f.metrics.LastReload) == 0 {
		t.Error("last reload gauge not set")
	}
	for _, want := range []string{"serving certificate not loaded; /readyz stays 503", "keeping the previous one", "serving certificate loaded"} {
		if !strings.Contains(f.logs.String(), want) {
			t.Errorf("log lacks %q:\n%s", want, f.logs.String())
		}
	}
}

// Load is the first load of a server that cannot start without its pair:
// the error is returned, nothing is counted.
func TestCertSourceLoad(t *testing.T) {
	t.Parallel()
	f := newCertFixture(t)
	if err := f.src.Load(); err == nil {
		t.Fatal("Load without files succeeded")
	}
	a := f.issue(7)
	f.write(a.CertPEM, a.KeyPEM)
	if err := f.src.Load(); err != nil {
		t.Fatalf("Load: %v", err)
	}
	if f.serial() != 7 {
		t.Errorf("serving serial %d after Load, want 7", f.serial())
	}
	if ok, errs := f.reloads("success"), f.reloads("error"); ok != 0 || errs != 0 {
		t.Errorf("Load counted reloads: success=%v error=%v", ok, errs)
	}
	if got, want := value(t, f.metrics.Expiry), float64(a.Cert.NotAfter.Unix()); got != want {
		t.Errorf("expiry gauge %v after Load, want %v", got, want)
	}
}

func TestReadFileLimit(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "f")
	if err := testca.WriteFile(path, []byte("12345"), 0o600); err != nil {
		t.Fatal(err)
	}
	if b, err := ReadFileLimit(path, 5); err != nil || string(b) != "12345" {
		t.Errorf("ReadFileLimit(5) = %q, %v", b, err)
	}
	if _, err := ReadFileLimit(path, 4); err == nil || !strings.Contains(err.Error(), "larger than 4 bytes") {
		t.Errorf("ReadFileLimit(4) of 5 bytes: %v, want a size error", err)
	}
}

// Every server's TLS: at least 1.2 (1.3 on request) and, for 1.2, only
// ECDHE key exchange with AEAD ciphers.
func TestTLSConfig(t *testing.T) {
	t.Parallel()
	names := map[uint16]string{}
	for _, s := range append(tls.CipherSuites(), tls.InsecureCipherSuites()...) {
		names[s.ID] = s.Name
	}
	for _, tc := range []struct {
		min  string
		want uint16
	}{{TLS12, tls.VersionTLS12}, {TLS13, tls.VersionTLS13}, {"", tls.VersionTLS12}} {
		c := TLSConfig(tc.min, nil)
		if c.MinVersion != tc.want {
			t.Errorf("TLSConfig(%q).MinVersion = %x, want %x", tc.min, c.MinVersion, tc.want)
		}
		if len(c.CipherSuites) == 0 {
			t.Fatalf("TLSConfig(%q): no cipher suites: Go's defaults include non-AEAD ones", tc.min)
		}
		for _, id := range c.CipherSuites {
			n := names[id]
			if !strings.HasPrefix(n, "TLS_ECDHE_") || !(strings.Contains(n, "_GCM_") || strings.Contains(n, "CHACHA20_POLY1305")) {
				t.Errorf("TLSConfig(%q) allows %s (%x): want ECDHE with an AEAD cipher", tc.min, n, id)
			}
		}
	}
}
