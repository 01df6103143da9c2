package serving

import (
	"context"
	"errors"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sidecar-injector/sidecar-injector/internal/poll"
	"github.com/sidecar-injector/sidecar-injector/internal/syncbuf"
)

// httpUnit is an HTTP unit on a loopback port with handler, and its URL.
func httpUnit(t *testing.T, name string, handler http.Handler) (Unit, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return HTTP(name, NewHTTPServer(handler, DefaultTimeouts(), quiet()), ln), "http://" + ln.Addr().String()
}

// run runs l with units in the background; the returned channel gets
// Run's result.
func run(ctx context.Context, l Lifecycle, units ...Unit) <-chan error {
	done := make(chan error, 1)
	go func() { done <- l.Run(ctx, units...) }()
	return done
}

func wait(t *testing.T, done <-chan error) error {
	t.Helper()
	select {
	case err := <-done:
		return err
	case <-time.After(20 * time.Second):
		t.Fatal("Run did not return within 20s")
		return nil
	}
}

func okHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok")) })
}

// SIGTERM: readiness goes false first, requests are still served during
// the drain delay, then the units stop and their ports close.
func TestLifecycleDrainsThenStops(t *testing.T) {
	t.Parallel()
	u, url := httpUnit(t, "test server", okHandler())
	var serving, draining atomic.Bool
	servingCalled := make(chan struct{})
	logs := &syncbuf.Buffer{}
	ctx, cancel := context.WithCancel(context.Background())
	done := run(ctx, Lifecycle{
		Log:        slogTo(logs),
		DrainDelay: 2 * time.Second,
		Grace:      5 * time.Second,
		Serving: func() {
			serving.Store(true)
			close(servingCalled)
		},
		Draining: func() {
			if !serving.Load() {
				t.Error("Draining called before Serving")
			}
			draining.Store(true)
		},
	}, u)
	<-servingCalled
	if code, _ := get(t, "GET", url); code != 200 {
		t.Fatalf("serving: HTTP %d", code)
	}
	cancel()
	poll.True(t, 10*time.Second, "Draining after the context ended", draining.Load)
	if code, _ := get(t, "GET", url); code != 200 {
		t.Errorf("during the drain: HTTP %d, want still served", code)
	}
	if err := wait(t, done); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if _, err := http.Get(url); err == nil {
		t.Error("the port still answers after Run returned")
	}
	for _, want := range []string{"still serving while endpoints are removed", "stopped"} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("log lacks %q:\n%s", want, logs.String())
		}
	}
}

// A unit that stops on its own stops the others at once (no drain delay:
// an hour here would time the test out) and its error is returned, named.
func TestLifecycleUnitFailureStopsTheRest(t *testing.T) {
	t.Parallel()
	u, url := httpUnit(t, "health server", okHandler())
	errLost := errors.New("lost the lease")
	release := make(chan struct{})
	task := Task("controller", func(ctx context.Context) error {
		select {
		case <-release:
			return errLost
		case <-ctx.Done():
			return errors.New("stopped instead of failing")
		}
	})
	drained := make(chan struct{})
	done := run(context.Background(), Lifecycle{Log: quiet(), DrainDelay: time.Hour, Grace: 5 * time.Second,
		Serving: func() { close(release) }, Draining: func() { close(drained) }}, task, u)
	err := wait(t, done)
	if !errors.Is(err, errLost) || !strings.HasPrefix(err.Error(), "controller: ") {
		t.Errorf("Run = %v, want the task's error named controller", err)
	}
	select {
	case <-drained:
	default:
		t.Error("Draining not called: readiness must go false on any shutdown")
	}
	if _, err := http.Get(url); err == nil {
		t.Error("the other unit still serves")
	}
}

// A request still running when the grace ends is cut, and Run says so.
func TestLifecycleGraceCutsWork(t *testing.T) {
	t.Parallel()
	started := make(chan struct{})
	unblock := make(chan struct{})
	defer close(unblock)
	u, url := httpUnit(t, "slow server", http.HandlerFunc(func(http.ResponseWriter, *http.Request) {
		close(started)
		<-unblock
	}))
	ctx, cancel := context.WithCancel(context.Background())
	done := run(ctx, Lifecycle{Log: quiet(), Grace: 100 * time.Millisecond}, u)
	clientErr := make(chan error, 1)
	go func() {
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
		}
		clientErr <- err
	}()
	<-started
	cancel()
	err := wait(t, done)
	if err == nil || !strings.Contains(err.Error(), "slow server: shutdown within 100ms") {
		t.Errorf("Run = %v, want the cut request reported", err)
	}
	if err := <-clientErr; err == nil {
		t.Error("the request in flight was answered, not cut")
	}
}

// The watches are in place before the units serve: a change made as soon
// as Serving is called is seen without waiting for the periodic check; a
// watch that cannot run does not hold the server up.
func TestLifecycleWatchesBeforeServing(t *testing.T) {
	t.Parallel()
	file := filepath.Join(t.TempDir(), "config.yaml")
	var calls atomic.Int32
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	servingCalled := make(chan struct{})
	done := run(ctx, Lifecycle{Log: quiet(), Grace: time.Second,
		Watches: []Watch{
			{Name: "config", Files: []string{file}, Interval: time.Hour, Debounce: 10 * time.Millisecond, Changed: func() { calls.Add(1) }},
			{Name: "broken", Files: []string{file}, Changed: func() {}}, // no interval: cannot run
		},
		Serving: func() { close(servingCalled) },
	}, Task("idle", func(ctx context.Context) error { <-ctx.Done(); return nil }))
	<-servingCalled
	if err := os.WriteFile(file, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	poll.True(t, 10*time.Second, "the change seen by the watch", func() bool { return calls.Load() > 0 })
	cancel()
	if err := wait(t, done); err != nil {
		t.Errorf("Run: %v", err)
	}
}

// A unit stopped before it began serving (SIGTERM at start-up) is not a
// failure.
func TestLifecycleCancelledAtOnce(t *testing.T) {
	t.Parallel()
	u, _ := httpUnit(t, "server", okHandler())
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := wait(t, run(ctx, Lifecycle{Log: quiet(), DrainDelay: time.Millisecond, Grace: time.Second}, u)); err != nil {
		t.Errorf("Run with a done context: %v", err)
	}
}
