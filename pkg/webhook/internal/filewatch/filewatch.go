// Package filewatch calls a function when files may have changed. It watches
// the files' directories, not the files: a kubelet Secret or ConfigMap volume
// updates by swapping a "..data" symlink, which a watch on the file itself
// never sees. Every event in a watched directory, after a short debounce, and
// every interval as a fallback, triggers the callback; the callback compares
// contents itself, so spurious calls are cheap.
package filewatch

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"time"

	"github.com/fsnotify/fsnotify"
)

// Options configure Watch.
type Options struct {
	// Files are the files of interest; their directories are watched.
	Files []string
	// Interval is the periodic re-check (required, > 0).
	Interval time.Duration
	// Debounce is how long after the first event of a burst the callback
	// runs (required, > 0). Later events of the burst do not postpone it.
	Debounce time.Duration
	// Log receives a warning when file-system events are unavailable.
	Log *slog.Logger
	// Ready, if set, is called once the watches are in place (or known to
	// be unavailable): a change made after it returns is seen.
	Ready func()
}

// Watch calls changed after file-system events in the files' directories and
// every Interval, until ctx is done. It never calls changed concurrently.
// Without working file-system events it falls back to the interval alone.
func Watch(ctx context.Context, o Options, changed func()) error {
	if o.Interval <= 0 || o.Debounce <= 0 {
		return fmt.Errorf("filewatch: interval %s and debounce %s must be positive", o.Interval, o.Debounce)
	}
	var events <-chan fsnotify.Event
	var errs <-chan error
	w, err := fsnotify.NewWatcher()
	if err != nil {
		o.Log.Warn("file-system events unavailable; re-checking files periodically only", "interval", o.Interval, "error", err)
	} else {
		defer w.Close()
		for _, dir := range dirs(o.Files) {
			if err := w.Add(dir); err != nil {
				o.Log.Warn("cannot watch directory; re-checking its files periodically only", "dir", dir, "interval", o.Interval, "error", err)
			}
		}
		events, errs = w.Events, w.Errors
	}
	if o.Ready != nil {
		o.Ready()
	}

	tick := time.NewTicker(o.Interval)
	defer tick.Stop()
	debounce := time.NewTimer(0)
	if !debounce.Stop() {
		<-debounce.C
	}
	pending := false
	for {
		select {
		case <-ctx.Done():
			return nil
		case _, ok := <-events:
			if !ok {
				events = nil
				continue
			}
			if !pending {
				pending = true
				debounce.Reset(o.Debounce)
			}
		case err, ok := <-errs:
			if !ok {
				errs = nil
				continue
			}
			o.Log.Warn("file-system watch error; the periodic re-check still runs", "error", err)
		case <-debounce.C:
			pending = false
			changed()
		case <-tick.C:
			changed()
		}
	}
}

// dirs returns the distinct directories of files, in a stable order.
func dirs(files []string) []string {
	var out []string
	for _, f := range files {
		if f == "" {
			continue
		}
		d := filepath.Dir(f)
		if !slices.Contains(out, d) {
			out = append(out, d)
		}
	}
	return out
}
