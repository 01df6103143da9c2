package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestRunXDSFlags(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	badMesh := filepath.Join(dir, "mesh.yaml")
	if err := os.WriteFile(badMesh, []byte("connectTimeout: forever\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	local := []string{"--listen-address", "127.0.0.1:0", "--health-address", "127.0.0.1:0"}
	for name, tc := range map[string]struct {
		args  []string
		usage bool
		want  string
	}{
		"unknown flag":      {[]string{"--nope"}, true, "flag provided but not defined"},
		"extra argument":    {[]string{"serve"}, true, "unexpected arguments"},
		"bad log format":    {append(local, "--log-format", "xml"), false, `--log-format="xml": want json or text`},
		"bad log level":     {append(local, "--log-level", "loud"), false, `--log-level="loud"`},
		"bad address":       {[]string{"--listen-address", "18000", "--health-address", "127.0.0.1:0"}, false, `--listen-address "18000": want host:port`},
		"cert without key":  {append(local, "--tls-cert-file", "x.crt"), false, "--tls-cert-file and --tls-key-file go together"},
		"missing mesh file": {append(local, "--mesh-config", filepath.Join(dir, "none.yaml")), false, "none.yaml"},
		"invalid mesh file": {append(local, "--mesh-config", badMesh), false, `connectTimeout`},
		"bad stream limit":  {append(local, "--max-concurrent-streams", "-1"), true, "want a number"},
	} {
		var stderr bytes.Buffer
		err := runXDS(context.Background(), tc.args, stdio{in: strings.NewReader(""), out: &bytes.Buffer{}, err: &stderr})
		if err == nil {
			t.Errorf("%s: no error", name)
			continue
		}
		if tc.usage != errors.Is(err, errUsage) {
			t.Errorf("%s: error %v, usage error %v", name, err, tc.usage)
		}
		if msg := err.Error() + stderr.String(); !strings.Contains(msg, tc.want) {
			t.Errorf("%s: %q does not contain %q", name, msg, tc.want)
		}
	}
}

// The command serves until its context ends, then shuts down cleanly.
func TestRunXDSServesAndStops(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	var stderr bytes.Buffer
	done := make(chan error, 1)
	go func() {
		done <- runXDS(ctx, []string{"--listen-address", "127.0.0.1:0", "--health-address", "127.0.0.1:0",
			"--shutdown-delay", "0s", "--log-format", "text"}, stdio{in: strings.NewReader(""), out: &bytes.Buffer{}, err: &stderr})
	}()
	time.Sleep(300 * time.Millisecond)
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("runXDS: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("runXDS did not return after cancel")
	}
	if !strings.Contains(stderr.String(), "xds server listening") {
		t.Errorf("log lacks the listening line:\n%s", stderr.String())
	}
}
