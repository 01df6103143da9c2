package webhook

import (
	"bytes"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sidecar-injector/sidecar-injector/pkg/inject"
)

// loadedConfig is an injector config prepared for many pods (its hash and
// parsed defaults computed once).
type loadedConfig struct {
	injector *inject.Injector
	hash     string
}

// configSource holds the injector config and swaps it atomically when its
// file changes. An invalid new file keeps the old config, is logged and
// counted as a reload error.
type configSource struct {
	file    string // empty: built-in defaults, never reloaded
	log     *slog.Logger
	metrics *Metrics
	now     func() time.Time

	cur atomic.Pointer[loadedConfig]

	mu   sync.Mutex // serialises reload
	last []byte     // content of the last attempt
	seen bool
}

func newConfigSource(file string, log *slog.Logger, m *Metrics) *configSource {
	return &configSource{file: file, log: log, metrics: m, now: time.Now}
}

// get returns the config in use (nil before the first successful load).
func (c *configSource) get() *loadedConfig { return c.cur.Load() }

// reload reads the file (or takes the defaults) and swaps in the config when
// it changed and is valid. It returns whether a new config was swapped in.
func (c *configSource) reload() (bool, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var data []byte
	if c.file != "" {
		var err error
		data, err = os.ReadFile(c.file)
		if err != nil {
			c.seen = false
			return false, c.fail(fmt.Errorf("read injector config: %w; check --config", err))
		}
	}
	if c.seen && bytes.Equal(data, c.last) {
		return false, nil
	}
	c.seen, c.last = true, data
	src := c.file
	if src == "" {
		src = "built-in defaults"
	}
	cfg, err := inject.LoadConfig(data)
	if err != nil {
		return false, c.fail(fmt.Errorf("load injector config %s: %w", src, err))
	}
	injector, err := inject.New(cfg)
	if err != nil {
		return false, c.fail(fmt.Errorf("load injector config %s: %w", src, err))
	}
	next := &loadedConfig{injector: injector, hash: injector.Hash()}
	old := c.cur.Swap(next)
	if old != nil && old.hash == next.hash {
		return false, nil // reformatted, same meaning
	}
	if old != nil {
		c.metrics.configInfo.DeleteLabelValues(old.hash)
	}
	c.metrics.configInfo.WithLabelValues(next.hash).Set(1)
	c.metrics.configReloads.WithLabelValues("success").Inc()
	c.metrics.configLastReload.Set(float64(c.now().UnixNano()) / 1e9)
	prev := ""
	if old != nil {
		prev = old.hash
	}
	c.log.Info("injector config loaded", "file", c.file, "config_hash", next.hash, "previous_hash", prev)
	return true, nil
}

func (c *configSource) fail(err error) error {
	c.metrics.configReloads.WithLabelValues("error").Inc()
	if c.cur.Load() != nil {
		c.log.Error("injector config reload failed; keeping the previous config", "error", err)
	} else {
		c.log.Error("injector config not loaded", "error", err)
	}
	return err
}

// Injector is the injector config in force (reloaded when its file
// changes), nil until one is loaded. The controller reads it to render the
// envoy-config ConfigMap and to tell current pods from stale ones.
func (s *Server) Injector() *inject.Injector {
	if lc := s.config.get(); lc != nil {
		return lc.injector
	}
	return nil
}
