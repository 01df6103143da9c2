// Package version holds the build's version, stamped at link time with
// -ldflags "-X github.com/sidecar-injector/sidecar-injector/internal/version.version=v1.2.3".
package version

import "runtime/debug"

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
