package xds

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fsnotify/fsnotify"
)

// watchFiles calls onChange whenever one of the files may have changed: on
// any event in their directories (a ConfigMap or Secret volume swaps a
// ..data symlink, so the file itself sees no event), debounced, and every
// poll interval in case an event is missed. It returns when ctx is done.
func watchFiles(ctx context.Context, log *slog.Logger, paths []string, poll time.Duration, onChange func()) {
	var dirs []string
	for _, p := range paths {
		if d := filepath.Dir(p); !slices.Contains(dirs, d) {
			dirs = append(dirs, d)
		}
	}
	var events <-chan fsnotify.Event
	var errs <-chan error
	if w, err := fsnotify.NewWatcher(); err != nil {
		log.Warn("file watch unavailable, polling only", "error", err, "interval", poll)
	} else {
		defer w.Close()
		for _, d := range dirs {
			if err := w.Add(d); err != nil {
				log.Warn("file watch unavailable, polling only", "dir", d, "error", err, "interval", poll)
			}
		}
		events, errs = w.Events, w.Errors
	}
	ticker := time.NewTicker(poll)
	defer ticker.Stop()
	debounce := time.NewTimer(time.Hour)
	debounce.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case _, ok := <-events:
			if !ok {
				events = nil
				continue
			}
			debounce.Reset(100 * time.Millisecond)
		case err, ok := <-errs:
			if !ok {
				errs = nil
				continue
			}
			log.Warn("file watch error", "error", err)
		case <-debounce.C:
			onChange()
		case <-ticker.C:
			onChange()
		}
	}
}

// readBounded reads at most limit bytes of a file; a longer file is an error.
func readBounded(path string, limit int64) ([]byte, error) {
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

// meshFile loads the mesh settings file and hands changes to the server.
type meshFile struct {
	path    string
	server  *Server
	log     *slog.Logger
	metrics *Metrics

	mu   sync.Mutex
	last []byte
}

// load reads the file for the first time.
func loadMeshFile(path string) (MeshSettings, []byte, error) {
	data, err := readBounded(path, MaxMeshFileSize)
	if err != nil {
		return MeshSettings{}, nil, fmt.Errorf("read mesh config: %w", err)
	}
	m, err := LoadMeshSettings(data)
	if err != nil {
		return MeshSettings{}, nil, fmt.Errorf("%s: %w", path, err)
	}
	return m, data, nil
}

// reload re-reads the file; bad contents keep the settings in force.
func (f *meshFile) reload() {
	f.mu.Lock()
	defer f.mu.Unlock()
	data, err := readBounded(f.path, MaxMeshFileSize)
	if err != nil {
		f.metrics.SettingsReloads.WithLabelValues("error").Inc()
		f.log.Error("mesh settings unreadable, keeping the previous ones", "path", f.path, "error", err)
		return
	}
	if bytes.Equal(data, f.last) {
		return
	}
	m, err := LoadMeshSettings(data)
	if err != nil {
		f.metrics.SettingsReloads.WithLabelValues("error").Inc()
		f.log.Error("mesh settings invalid, keeping the previous ones", "path", f.path, "error", err)
		return
	}
	changed, err := f.server.SetMesh(m)
	if err != nil {
		f.metrics.SettingsReloads.WithLabelValues("error").Inc()
		f.log.Error("mesh settings not applied", "path", f.path, "error", err)
		return
	}
	f.last = data
	if changed {
		f.metrics.SettingsReloads.WithLabelValues("success").Inc()
	} else {
		f.metrics.SettingsReloads.WithLabelValues("unchanged").Inc()
	}
}

// certSource serves the certificate pair from disk, reloading it when the
// files change; a half-written or mismatched pair keeps the old one.
type certSource struct {
	certFile, keyFile string
	log               *slog.Logger
	metrics           *Metrics

	cur               atomic.Pointer[tls.Certificate]
	mu                sync.Mutex
	lastCert, lastKey []byte
}

func (c *certSource) reload() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	certPEM, err := readBounded(c.certFile, 1<<20)
	if err != nil {
		return fmt.Errorf("read TLS certificate: %w", err)
	}
	keyPEM, err := readBounded(c.keyFile, 1<<20)
	if err != nil {
		return fmt.Errorf("read TLS key: %w", err)
	}
	if bytes.Equal(certPEM, c.lastCert) && bytes.Equal(keyPEM, c.lastKey) {
		return nil
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return fmt.Errorf("TLS pair %s, %s: %w", c.certFile, c.keyFile, err)
	}
	c.cur.Store(&pair)
	c.lastCert, c.lastKey = certPEM, keyPEM
	return nil
}

// onChange is the watcher's callback.
func (c *certSource) onChange() {
	c.mu.Lock()
	before := c.cur.Load()
	c.mu.Unlock()
	if err := c.reload(); err != nil {
		c.metrics.TLSReloads.WithLabelValues("error").Inc()
		c.log.Error("TLS certificate reload failed, keeping the previous one", "error", err)
		return
	}
	if c.cur.Load() != before {
		c.metrics.TLSReloads.WithLabelValues("success").Inc()
		c.log.Info("TLS certificate reloaded", "cert", c.certFile)
	}
}

func (c *certSource) getCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	if p := c.cur.Load(); p != nil {
		return p, nil
	}
	return nil, errors.New("no TLS certificate loaded")
}
