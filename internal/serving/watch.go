package serving

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/fsnotify/fsnotify"
)

// Watch is a set of files and what to do when they may have changed. It
// watches the files' directories, not the files: a kubelet Secret or
// ConfigMap volume updates by swapping a "..data" symlink, which a watch on
// the file itself never sees. Every event in a watched directory, after a
// short debounce, and every Interval as a fallback, calls Changed; Changed
// compares contents itself, so spurious calls are cheap.
type Watch struct {
	// Name says what is watched, in log lines ("certificate").
	Name string
	// Files are the files of interest; their directories are watched.
	Files []string
	// Interval is the periodic re-check (required, > 0).
	Interval time.Duration
	// Debounce is how long after the first event of a burst Changed runs
	// (required, > 0). Later events of the burst do not postpone it.
	Debounce time.Duration
	// Changed runs after events and every Interval, never concurrently.
	Changed func()
}

// Run calls w.Changed after file-system events in the files' directories
// and every Interval, until ctx is done. ready, if not nil, is called once
// the watches are in place (or known to be unavailable): a change made
// after it returns is seen. Without working file-system events Run falls
// back to the interval alone.
func (w Watch) Run(ctx context.Context, log *slog.Logger, ready func()) error {
	if w.Interval <= 0 || w.Debounce <= 0 {
		return fmt.Errorf("watch %s: interval %s and debounce %s must be positive", w.Name, w.Interval, w.Debounce)
	}
	log = log.With("watch", w.Name)
	var events <-chan fsnotify.Event
	var errs <-chan error
	fw, err := fsnotify.NewWatcher()
	if err != nil {
		log.Warn("file-system events unavailable; re-checking files periodically only", "interval", w.Interval, "error", err)
	} else {
		defer fw.Close()
		for _, dir := range dirs(w.Files) {
			if err := fw.Add(dir); err != nil {
				log.Warn("cannot watch directory; re-checking its files periodically only", "dir", dir, "interval", w.Interval, "error", err)
			}
		}
		events, errs = fw.Events, fw.Errors
	}
	if ready != nil {
		ready()
	}

	tick := time.NewTicker(w.Interval)
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
				debounce.Reset(w.Debounce)
			}
		case err, ok := <-errs:
			if !ok {
				errs = nil
				continue
			}
			log.Warn("file-system watch error; the periodic re-check still runs", "error", err)
		case <-debounce.C:
			pending = false
			w.Changed()
		case <-tick.C:
			w.Changed()
		}
	}
}

// startWatches runs every watch in its own goroutine and returns once all
// of them are in place; stop ends them and waits for them. A watch that
// cannot run is logged and does not hold up the others.
func startWatches(log *slog.Logger, watches []Watch) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	var running, established sync.WaitGroup
	for _, w := range watches {
		established.Add(1)
		var once sync.Once
		ready := func() { once.Do(established.Done) }
		running.Go(func() {
			defer ready()
			if err := w.Run(ctx, log, ready); err != nil {
				log.Error("file watch stopped", "watch", w.Name, "error", err)
			}
		})
	}
	established.Wait()
	return func() {
		cancel()
		running.Wait()
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
