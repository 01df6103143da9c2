package controller

import (
	"bytes"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/sidecar-injector/sidecar-injector/pkg/inject"
)

// fileConfigSource is the injector config file, read again when its size
// or modification time changes (a kubelet ConfigMap update swaps a
// symlink, which os.Stat follows). The webhook's reloading source lives in
// pkg/webhook/internal and carries webhook metrics; the controller only
// needs this much, polled by its ConfigPoll tick.
type fileConfigSource struct {
	path string
	log  *slog.Logger

	mu    sync.Mutex
	cur   *inject.Injector
	data  []byte
	size  int64
	mtime time.Time
}

// NewFileConfigSource loads the injector config file (empty path: the
// built-in defaults, never reloaded). A first load that fails is an error;
// a later invalid file keeps the config in use and is logged.
func NewFileConfigSource(path string, log *slog.Logger) (ConfigSource, error) {
	if path == "" {
		in, err := inject.New(inject.DefaultConfig())
		if err != nil {
			return nil, err
		}
		return StaticConfig(in), nil
	}
	s := &fileConfigSource{path: path, log: log}
	if err := s.reload(); err != nil {
		return nil, err
	}
	return s, nil
}

// Injector reloads the file when it changed and returns the config in use.
func (s *fileConfigSource) Injector() *inject.Injector {
	if err := s.reload(); err != nil {
		s.log.Error("controller: injector config not reloaded; keeping the one in use", "error", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cur
}

func (s *fileConfigSource) reload() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	st, err := os.Stat(s.path)
	if err != nil {
		return fmt.Errorf("--config %q: %w", s.path, err)
	}
	if s.cur != nil && st.Size() == s.size && st.ModTime().Equal(s.mtime) {
		return nil
	}
	data, err := os.ReadFile(s.path)
	if err != nil {
		return fmt.Errorf("--config %q: %w", s.path, err)
	}
	s.size, s.mtime = st.Size(), st.ModTime()
	if s.cur != nil && bytes.Equal(data, s.data) {
		return nil
	}
	s.data = data // a bad file is reported once, not at every poll
	cfg, err := inject.LoadConfig(data)
	if err != nil {
		return fmt.Errorf("--config %q: %w", s.path, err)
	}
	in, err := inject.New(cfg)
	if err != nil {
		return fmt.Errorf("--config %q: %w", s.path, err)
	}
	s.cur = in
	return nil
}
