package filewatch

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// start runs Watch in the background and returns the call counter.
func start(t *testing.T, o Options) *atomic.Int32 {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var calls atomic.Int32
	done := make(chan error, 1)
	go func() { done <- Watch(ctx, o, func() { calls.Add(1) }) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Watch: %v", err)
		}
	})
	return &calls
}

func waitCalls(t *testing.T, calls *atomic.Int32, atLeast int32) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for calls.Load() < atLeast {
		if time.Now().After(deadline) {
			t.Fatalf("%d calls after 10s, want at least %d", calls.Load(), atLeast)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestEventsTriggerAfterDebounce(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	file := filepath.Join(dir, "tls.crt")
	calls := start(t, Options{Files: []string{file}, Interval: time.Hour, Debounce: 50 * time.Millisecond, Log: quiet()})
	time.Sleep(100 * time.Millisecond) // the watch is set up
	if calls.Load() != 0 {
		t.Fatalf("called %d times before any change", calls.Load())
	}
	// A burst of writes is one call.
	for i := range 5 {
		if err := os.WriteFile(file, []byte{byte(i)}, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	waitCalls(t, calls, 1)
	time.Sleep(200 * time.Millisecond)
	if n := calls.Load(); n > 2 {
		t.Errorf("a burst of 5 writes gave %d calls; want it gathered by the debounce", n)
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
	calls := start(t, Options{Files: []string{filepath.Join(dir, "tls.crt")}, Interval: time.Hour, Debounce: 20 * time.Millisecond, Log: quiet()})
	time.Sleep(100 * time.Millisecond)
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
	calls := start(t, Options{Files: []string{file}, Interval: 30 * time.Millisecond, Debounce: time.Millisecond, Log: quiet()})
	waitCalls(t, calls, 3)
}

func TestOptionsChecked(t *testing.T) {
	t.Parallel()
	for _, o := range []Options{{Interval: 0, Debounce: time.Second}, {Interval: time.Second, Debounce: 0}} {
		o.Log = quiet()
		if err := Watch(context.Background(), o, func() {}); err == nil {
			t.Errorf("Watch(%+v) accepted", o)
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
