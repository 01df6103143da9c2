//go:build !unix

package testenv

import (
	"context"
	"log/slog"
)

// lockFile is a no-op where flock does not exist: concurrent builds there
// may both build, and the last one wins.
func lockFile(context.Context, string, *slog.Logger) (func(), error) {
	return func() {}, nil
}
