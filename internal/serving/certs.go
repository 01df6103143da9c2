package serving

import (
	"bytes"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// maxPEMSize bounds what is read of a certificate or key file.
const maxPEMSize = 1 << 20

// ErrNoCertificate is returned to a TLS handshake before a pair is loaded.
var ErrNoCertificate = errors.New("no serving certificate loaded yet")

// CertMetrics are where a CertSource reports; every field is optional, so
// each server keeps its own metric names.
type CertMetrics struct {
	// Reloads counts reloads by result (label "result": success, error).
	Reloads *prometheus.CounterVec
	// LastReload is when the pair in use was loaded (Unix time).
	LastReload prometheus.Gauge
	// Expiry is the NotAfter of the pair in use (Unix time).
	Expiry prometheus.Gauge
}

// CertSource holds a serving pair read from two files and swaps it
// atomically when they change. A bad new pair (half written, key not
// matching, expired) keeps the old one, is logged and counted as a reload
// error.
type CertSource struct {
	certFile, keyFile string
	log               *slog.Logger
	metrics           CertMetrics
	now               func() time.Time

	cur atomic.Pointer[tls.Certificate]

	mu         sync.Mutex // serialises reloads
	lastDigest [sha256.Size]byte
	attempted  bool
}

// NewCertSource reads nothing yet: call Load or Reload.
func NewCertSource(certFile, keyFile string, log *slog.Logger, m CertMetrics) *CertSource {
	return &CertSource{certFile: certFile, keyFile: keyFile, log: log, metrics: m, now: time.Now}
}

// Files are the certificate and key files, what to watch.
func (c *CertSource) Files() []string { return []string{c.certFile, c.keyFile} }

// GetCertificate is tls.Config.GetCertificate: every new connection gets
// the pair in use at its handshake.
func (c *CertSource) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	if cert := c.cur.Load(); cert != nil {
		return cert, nil
	}
	return nil, ErrNoCertificate
}

// Loaded says whether a pair is in use.
func (c *CertSource) Loaded() bool { return c.cur.Load() != nil }

// Load is the first load of a server that cannot start without its pair:
// the same checks as Reload, but a failure is only returned (the server
// stops with it) and nothing is counted.
func (c *CertSource) Load() error {
	_, err := c.reload(false)
	return err
}

// Reload reads both files and swaps in the pair when they changed and are
// valid; it counts and logs the outcome. It returns whether a new pair is
// in use. An unchanged pair, good or bad, is not news: no count, no log.
func (c *CertSource) Reload() (changed bool, err error) {
	return c.reload(true)
}

func (c *CertSource) reload(report bool) (bool, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	certPEM, err1 := ReadFileLimit(c.certFile, maxPEMSize)
	keyPEM, err2 := ReadFileLimit(c.keyFile, maxPEMSize)
	if err := errors.Join(err1, err2); err != nil {
		return false, c.fail(report, nil, fmt.Errorf("read TLS pair: %w; check --tls-cert-file and --tls-key-file", err))
	}
	h := sha256.New()
	h.Write(certPEM)
	h.Write([]byte{0})
	h.Write(keyPEM)
	var digest [sha256.Size]byte
	copy(digest[:], h.Sum(nil))
	if c.attempted && digest == c.lastDigest {
		return false, nil // nothing new (a spurious event or the periodic check)
	}
	c.attempted, c.lastDigest = true, digest

	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return false, c.fail(report, &digest, fmt.Errorf("load TLS pair %q, %q: %w (half written, or a key that is not the certificate's)", c.certFile, c.keyFile, err))
	}
	leaf := pair.Leaf
	if leaf == nil {
		if leaf, err = x509.ParseCertificate(pair.Certificate[0]); err != nil {
			return false, c.fail(report, &digest, fmt.Errorf("parse TLS certificate %q: %w", c.certFile, err))
		}
		pair.Leaf = leaf
	}
	if now := c.now(); now.After(leaf.NotAfter) {
		return false, c.fail(report, &digest, fmt.Errorf("TLS certificate %q expired at %s; renew it", c.certFile, leaf.NotAfter.UTC().Format(time.RFC3339)))
	}
	if old := c.cur.Load(); old != nil && bytes.Equal(old.Certificate[0], pair.Certificate[0]) && len(old.Certificate) == len(pair.Certificate) {
		// Same certificate re-encoded or the same key rewritten: swap anyway
		// (the key may differ) but it is not news.
		c.cur.Store(&pair)
		return false, nil
	}
	c.cur.Store(&pair)
	if report && c.metrics.Reloads != nil {
		c.metrics.Reloads.WithLabelValues("success").Inc()
	}
	if c.metrics.LastReload != nil {
		c.metrics.LastReload.Set(float64(c.now().UnixNano()) / 1e9)
	}
	if c.metrics.Expiry != nil {
		c.metrics.Expiry.Set(float64(leaf.NotAfter.Unix()))
	}
	c.log.Info("serving certificate loaded", "cert", c.certFile, "subject", leaf.Subject.String(),
		"dns_names", leaf.DNSNames, "not_after", leaf.NotAfter.UTC().Format(time.RFC3339))
	return true, nil
}

// fail counts and logs a reload error when report is set. digest, when
// set, is remembered so an unchanged bad pair is not reported again on
// every periodic check.
func (c *CertSource) fail(report bool, digest *[sha256.Size]byte, err error) error {
	if digest == nil {
		// Unreadable files: retry (and report) on the next check.
		c.attempted = false
	}
	if !report {
		return err
	}
	if c.metrics.Reloads != nil {
		c.metrics.Reloads.WithLabelValues("error").Inc()
	}
	if c.Loaded() {
		c.log.Error("serving certificate reload failed; keeping the previous one", "error", err)
	} else {
		c.log.Error("serving certificate not loaded; /readyz stays 503 until it is", "error", err)
	}
	return err
}

// ReadFileLimit reads at most limit bytes of a file; a longer file is an
// error (a watched file is never trusted to be small).
func ReadFileLimit(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("%s is larger than %d bytes", path, limit)
	}
	return data, nil
}
