package webhook

import (
	"bytes"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// errNoCertificate is returned to a TLS handshake before a pair is loaded.
var errNoCertificate = errors.New("no serving certificate loaded yet")

// certSource holds the serving pair and swaps it atomically when the files
// change. A bad new pair (half written, key not matching, expired) keeps the
// old one, is logged and counted as a reload error.
type certSource struct {
	certFile, keyFile string
	log               *slog.Logger
	metrics           *Metrics
	now               func() time.Time

	cur atomic.Pointer[tls.Certificate]

	mu         sync.Mutex // serialises reload
	lastDigest [sha256.Size]byte
	attempted  bool
}

func newCertSource(certFile, keyFile string, log *slog.Logger, m *Metrics) *certSource {
	return &certSource{certFile: certFile, keyFile: keyFile, log: log, metrics: m, now: time.Now}
}

// GetCertificate is tls.Config.GetCertificate: every new connection gets the
// pair in use at its handshake.
func (c *certSource) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	if cert := c.cur.Load(); cert != nil {
		return cert, nil
	}
	return nil, errNoCertificate
}

// loaded says whether a pair is in use.
func (c *certSource) loaded() bool { return c.cur.Load() != nil }

// reload reads both files and swaps in the pair when they changed and are
// valid. It returns whether a new pair was swapped in.
func (c *certSource) reload() (bool, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	certPEM, err1 := os.ReadFile(c.certFile)
	keyPEM, err2 := os.ReadFile(c.keyFile)
	if err := errors.Join(err1, err2); err != nil {
		return false, c.fail(nil, fmt.Errorf("read TLS pair: %w; check --tls-cert-file and --tls-key-file", err))
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
		return false, c.fail(&digest, fmt.Errorf("load TLS pair %q, %q: %w (a half-written or mismatched pair; the previous one stays in use)", c.certFile, c.keyFile, err))
	}
	leaf := pair.Leaf
	if leaf == nil {
		if leaf, err = x509.ParseCertificate(pair.Certificate[0]); err != nil {
			return false, c.fail(&digest, fmt.Errorf("parse TLS certificate %q: %w", c.certFile, err))
		}
		pair.Leaf = leaf
	}
	if now := c.now(); now.After(leaf.NotAfter) {
		return false, c.fail(&digest, fmt.Errorf("TLS certificate %q expired at %s; renew it (the previous pair stays in use)", c.certFile, leaf.NotAfter.UTC().Format(time.RFC3339)))
	}
	if old := c.cur.Load(); old != nil && bytes.Equal(old.Certificate[0], pair.Certificate[0]) && len(old.Certificate) == len(pair.Certificate) {
		// Same certificate re-encoded or the same key rewritten: swap anyway
		// (the key may differ) but it is not news.
		c.cur.Store(&pair)
		return false, nil
	}
	c.cur.Store(&pair)
	c.metrics.certReloads.WithLabelValues("success").Inc()
	c.metrics.certLastReload.Set(float64(c.now().UnixNano()) / 1e9)
	c.metrics.certExpiry.Set(float64(leaf.NotAfter.Unix()))
	c.log.Info("serving certificate loaded", "cert", c.certFile, "subject", leaf.Subject.String(),
		"dns_names", leaf.DNSNames, "not_after", leaf.NotAfter.UTC().Format(time.RFC3339))
	return true, nil
}

// fail counts and logs a reload error. digest, when set, is remembered so an
// unchanged bad pair is not reported again on every periodic check.
func (c *certSource) fail(digest *[sha256.Size]byte, err error) error {
	c.metrics.certReloads.WithLabelValues("error").Inc()
	if c.loaded() {
		c.log.Error("serving certificate reload failed; keeping the previous one", "error", err)
	} else {
		c.log.Error("serving certificate not loaded; /readyz stays 503 until it is", "error", err)
	}
	if digest == nil {
		// Unreadable files: retry (and report) on the next check.
		c.attempted = false
	}
	return err
}
