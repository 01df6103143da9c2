package serverflags

import (
	"io"
	"log/slog"
	"os"
	"runtime/debug"
	"strings"
	"testing"
)

func TestGCConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		name    string
		mutate  func(*GCConfig)
		wantErr string
	}{
		{"defaults", func(*GCConfig) {}, ""},
		{"container limit", func(c *GCConfig) { c.MemoryLimit = 512 << 20 }, ""},
		{"negative limit", func(c *GCConfig) { c.MemoryLimit = -1 }, "--memory-limit=-1"},
		{"limit too small", func(c *GCConfig) { c.MemoryLimit = 1 << 20 }, "at least 16 MiB"},
		{"percent too low", func(c *GCConfig) { c.MemoryLimitPercent = 10 }, "--memory-limit-percent=10: want 50-100"},
		{"percent too high", func(c *GCConfig) { c.MemoryLimitPercent = 101 }, "--memory-limit-percent=101"},
		{"gc percent zero", func(c *GCConfig) { c.Percent = 0 }, "--gc-percent=0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := DefaultGCConfig(200)
			tc.mutate(&c)
			err := c.Validate()
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("Validate: %v", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("Validate = %v, want an error containing %q", err, tc.wantErr)
			}
		})
	}
}

// The runtime keeps to a share of the container's limit, so what it does
// not count still fits; GOMEMLIMIT, when set, wins.
func TestGCConfigApplyMemoryLimit(t *testing.T) {
	prevLimit, prevPercent := debug.SetMemoryLimit(-1), debug.SetGCPercent(-1)
	debug.SetGCPercent(prevPercent)
	t.Cleanup(func() { debug.SetMemoryLimit(prevLimit); debug.SetGCPercent(prevPercent) })
	log := slog.New(slog.NewTextHandler(io.Discard, nil))

	t.Setenv("GOGC", "100") // keep the GC percent of the test binary
	c := DefaultGCConfig(200)
	c.MemoryLimit = 512 << 20
	c.Apply(log)
	if got, want := debug.SetMemoryLimit(-1), int64(512<<20)/100*85; got != want {
		t.Errorf("runtime memory limit %d, want %d (85%% of 512 MiB)", got, want)
	}

	t.Setenv("GOMEMLIMIT", "100MiB")
	debug.SetMemoryLimit(prevLimit)
	c.Apply(log)
	if got := debug.SetMemoryLimit(-1); got != prevLimit {
		t.Errorf("with GOMEMLIMIT set, the limit changed to %d", got)
	}
}

// Start refuses bad GC flags before anything is applied, names a bad log
// flag, and otherwise returns the logger with the GC settings applied.
func TestProcessStart(t *testing.T) {
	prevPercent := debug.SetGCPercent(-1)
	debug.SetGCPercent(prevPercent)
	t.Cleanup(func() { debug.SetGCPercent(prevPercent) })
	t.Setenv("GOGC", "") // restored after the test; unset during it, so --gc-percent applies
	os.Unsetenv("GOGC")

	p := DefaultProcess(0)
	if _, _, err := p.Start(io.Discard); err == nil || !strings.Contains(err.Error(), "invalid flags:\n--gc-percent=0") {
		t.Errorf("bad GC flag: %v", err)
	}
	if got := debug.SetGCPercent(prevPercent); got != prevPercent {
		t.Errorf("a refused start set the GC percent to %d", got)
	}
	p = DefaultProcess(150)
	p.Log.Format = "xml"
	if _, _, err := p.Start(io.Discard); err == nil || !strings.Contains(err.Error(), `--log-format="xml"`) {
		t.Errorf("bad log flag: %v", err)
	}
	p.Log.Format = "text"
	if log, _, err := p.Start(io.Discard); err != nil || log == nil {
		t.Fatalf("Start: %v", err)
	}
	if got := debug.SetGCPercent(prevPercent); got != 150 {
		t.Errorf("GC percent %d after Start, want 150", got)
	}
}
