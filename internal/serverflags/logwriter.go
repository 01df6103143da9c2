package serverflags

import (
	"context"
	"io"
	"log/slog"
	"sync"
	"time"
)

// A server logs a line per request (the webhook's decision log), and one
// write(2) per line was 2.6% of the webhook's CPU per request. Lines are
// therefore batched: written within logFlushDelay, or at once when the
// batch reaches logBatchBytes; a line at WARN or above is written at once,
// with the lines before it. A process killed outright loses at most the
// last logFlushDelay of INFO and DEBUG lines.
const (
	logFlushDelay = 100 * time.Millisecond
	logBatchBytes = 32 << 10
)

// logWriter batches writes to w.
type logWriter struct {
	mu      sync.Mutex
	w       io.Writer
	buf     []byte
	timer   *time.Timer
	pending bool // the timer is set
}

func newLogWriter(w io.Writer) *logWriter { return &logWriter{w: w} }

// Write keeps p for the next flush; a slog handler writes one whole line
// per call.
func (l *logWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.buf)+len(p) > logBatchBytes {
		l.flushLocked()
	}
	if len(p) >= logBatchBytes {
		return l.w.Write(p)
	}
	l.buf = append(l.buf, p...)
	if !l.pending {
		l.pending = true
		if l.timer == nil {
			l.timer = time.AfterFunc(logFlushDelay, l.Flush)
		} else {
			l.timer.Reset(logFlushDelay)
		}
	}
	return len(p), nil
}

// Flush writes what is kept. An error writing the log has nowhere to go:
// the lines are dropped, as an unbatched write would drop them.
func (l *logWriter) Flush() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.flushLocked()
}

func (l *logWriter) flushLocked() {
	if l.pending {
		l.timer.Stop()
		l.pending = false
	}
	if len(l.buf) > 0 {
		_, _ = l.w.Write(l.buf)
		l.buf = l.buf[:0]
	}
}

// flushAtWarn is a slog handler that writes the batch at once after a
// record at WARN or above.
type flushAtWarn struct {
	slog.Handler
	w *logWriter
}

func (h flushAtWarn) Handle(ctx context.Context, r slog.Record) error {
	err := h.Handler.Handle(ctx, r)
	if r.Level >= slog.LevelWarn {
		h.w.Flush()
	}
	return err
}

func (h flushAtWarn) WithAttrs(attrs []slog.Attr) slog.Handler {
	return flushAtWarn{h.Handler.WithAttrs(attrs), h.w}
}

func (h flushAtWarn) WithGroup(name string) slog.Handler {
	return flushAtWarn{h.Handler.WithGroup(name), h.w}
}
