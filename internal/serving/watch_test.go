package serving

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/sidecar-injector/sidecar-injector/internal/poll"
)

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// start runs w in the background, waits until its watches are in place
// and returns the call counter.
func start(t *testing.T, w Watch) *atomic.Int32 {
	t.Helper()
	var calls atomic.Int32
	w.Changed = func() { calls.Add(1) }
	startWith(t, w)
	return &calls
}

// startWith runs w and returns once it is ready.
func startWith(t *testing.T, w Watch) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan struct{})
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx, quiet(), func() { close(ready) }) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Watch.Run: %v", err)
		}
	})
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("Watch.Run returned before it was ready: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("watch not ready after 10s")
	}
}

func waitCalls(t *testing.T, calls *atomic.Int32, atLeast int32) {
	t.Helper()
	poll.True(t, 10*time.Second, fmt.Sprintf("at least %d calls", atLeast), func() bool { return calls.Load() >= atLeast })
}

func TestEventsTriggerAfterDebounce(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	file := filepath.Join(dir, "tls.crt")
	// Each call records what the file held when it ran.
	var mu sync.Mutex
	var seen []string
	startWith(t, Watch{Name: "test", Files: []string{file}, Interval: time.Hour, Debounce: 50 * time.Millisecond, Changed: func() {
		b, _ := os.ReadFile(file)
		mu.Lock()
		seen = append(seen, string(b))
		mu.Unlock()
	}})
	mu.Lock()
	if len(seen) != 0 {
		t.Errorf("called before any change: %q", seen)
	}
	mu.Unlock()
	// A burst of writes is one call (two if the burst straddles a debounce).
	for i := range 5 {
		if err := os.WriteFile(file, []byte{'0' + byte(i)}, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	poll.True(t, 10*time.Second, "a call after the burst", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(seen) > 0
	})
	// A last write after the first call: every call for the burst comes
	// before the call that sees it.
	if err := os.WriteFile(file, []byte("end"), 0o600); err != nil {
		t.Fatal(err)
	}
	var before int
	poll.True(t, 10*time.Second, "a call that sees the last write", func() bool {
		mu.Lock()
		defer mu.Unlock()
		before = slices.Index(seen, "end")
		return before >= 0
	})
	if before > 2 {
		mu.Lock()
		t.Errorf("a burst of 5 writes gave %d calls (%q); want it gathered by the debounce", before, seen)
		mu.Unlock()
	}
}

// A kubelet volume update: ..data is swapped to a new directory.
func TestSymlinkSwapTriggers(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	for _, d := range []string{"..v1", "..v2"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, d, "tls.crt"), []byte(d), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	must(t, os.Symlink("..v1", filepath.Join(dir, "..data")))
	must(t, os.Symlink("..data/tls.crt", filepath.Join(dir, "tls.crt")))
	calls := start(t, Watch{Name: "test", Files: []string{filepath.Join(dir, "tls.crt")}, Interval: time.Hour, Debounce: 20 * time.Millisecond})
	must(t, os.Symlink("..v2", filepath.Join(dir, "..data_tmp")))
	must(t, os.Rename(filepath.Join(dir, "..data_tmp"), filepath.Join(dir, "..data")))
	waitCalls(t, calls, 1)
	b, err := os.ReadFile(filepath.Join(dir, "tls.crt"))
	if err != nil || string(b) != "..v2" {
		t.Fatalf("the test's swap did not work: %q, %v", b, err)
	}
}

// Without events (a directory that does not exist yet), the interval still
// triggers.
func TestIntervalFallback(t *testing.T) {
	t.Parallel()
	file := filepath.Join(t.TempDir(), "not-yet", "tls.crt")
	calls := start(t, Watch{Name: "test", Files: []string{file}, Interval: 30 * time.Millisecond, Debounce: time.Millisecond})
	waitCalls(t, calls, 3)
}

func TestOptionsChecked(t *testing.T) {
	t.Parallel()
	for _, w := range []Watch{{Interval: 0, Debounce: time.Second}, {Interval: time.Second, Debounce: 0}} {
		w.Changed = func() {}
		if err := w.Run(context.Background(), quiet(), nil); err == nil {
			t.Errorf("Watch{Interval: %s, Debounce: %s}.Run accepted", w.Interval, w.Debounce)
		}
	}
}

func TestDirs(t *testing.T) {
	t.Parallel()
	got := dirs([]string{"/a/b/tls.crt", "/a/b/tls.key", "", "/c/config.yaml"})
	if diff := cmp.Diff([]string{"/a/b", "/c"}, got); diff != "" {
		t.Errorf("dirs (-want +got):\n%s", diff)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func slogTo(w io.Writer) *slog.Logger { return slog.New(slog.NewTextHandler(w, nil)) }
