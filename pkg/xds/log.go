package xds

import (
	"context"
	"fmt"
	"log/slog"
)

// cpLogger routes go-control-plane's logging to slog. Its Info lines (a
// stale nonce skipped, a watch opened) are per request, so they go to Debug.
type cpLogger struct{ l *slog.Logger }

func (c cpLogger) logf(level slog.Level, format string, args ...any) {
	if c.l.Enabled(context.Background(), level) {
		c.l.Log(context.Background(), level, "control plane", "detail", fmt.Sprintf(format, args...))
	}
}

func (c cpLogger) Debugf(format string, args ...any) { c.logf(slog.LevelDebug, format, args...) }
func (c cpLogger) Infof(format string, args ...any)  { c.logf(slog.LevelDebug, format, args...) }
func (c cpLogger) Warnf(format string, args ...any)  { c.logf(slog.LevelWarn, format, args...) }
func (c cpLogger) Errorf(format string, args ...any) { c.logf(slog.LevelError, format, args...) }
