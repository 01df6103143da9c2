package xds

import (
	"bytes"
	"fmt"
	"log/slog"
	"sync"

	"github.com/sidecar-injector/sidecar-injector/internal/serving"
)

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
	data, err := serving.ReadFileLimit(path, MaxMeshFileSize)
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
	data, err := serving.ReadFileLimit(f.path, MaxMeshFileSize)
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
