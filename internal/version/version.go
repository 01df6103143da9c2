// Package version holds the build's version, stamped at link time with
// -ldflags "-X github.com/sidecar-injector/sidecar-injector/internal/version.version=v1.2.3".
package version

import (
	"runtime"
	"runtime/debug"

	"github.com/prometheus/client_golang/prometheus"
)

// version is set by the linker; empty in plain `go build`/`go run`.
var version string

// Get returns the injector version: the stamped one, else the module version
// from the build info, else "dev".
func Get() string {
	if version != "" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "dev"
}

// NewCollector is sidecar_injector_build_info of one component (webhook,
// xds): always 1, with the injector version, the Go version and the
// component as labels, so every process of the product answers the same
// query the same way.
func NewCollector(component string) prometheus.Collector {
	g := prometheus.NewGauge(prometheus.GaugeOpts{
		Name:        "sidecar_injector_build_info",
		Help:        "Always 1; labels carry the injector version, the Go version it was built with and the component.",
		ConstLabels: prometheus.Labels{"version": Get(), "goversion": runtime.Version(), "component": component},
	})
	g.Set(1)
	return g
}
