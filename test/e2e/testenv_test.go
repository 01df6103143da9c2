//go:build e2e

package e2e

import (
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/sidecar-injector/sidecar-injector/test/testenv"
)

// TestControlPlaneVersion: the binaries carry their version stamps (else the
// apiserver reports v0.0.0, Helm's .Capabilities.KubeVersion checks misfire
// and the webhook cannot tell that native sidecars are supported), and
// kubectl works with the kubeconfig the tool writes.
func TestControlPlaneVersion(t *testing.T) {
	t.Parallel()
	info, err := env.cs.Discovery().ServerVersion()
	if err != nil {
		t.Fatal(err)
	}
	if info.GitVersion != env.cp.Versions.Kubernetes || info.Major != "1" || info.Minor == "" {
		t.Errorf("apiserver version %s (major %q minor %q), want %s", info.GitVersion, info.Major, info.Minor, env.cp.Versions.Kubernetes)
	}
	out, _ := kubectl(t, nil, "version", "-o", "json")
	var v struct {
		ClientVersion struct{ GitVersion string } `json:"clientVersion"`
		ServerVersion struct{ GitVersion string } `json:"serverVersion"`
	}
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		t.Fatalf("kubectl version: %v\n%s", err, out)
	}
	want := env.cp.Versions.Kubernetes
	if v.ClientVersion.GitVersion != want || v.ServerVersion.GitVersion != want {
		t.Errorf("kubectl reports client %s, server %s; want %s for both", v.ClientVersion.GitVersion, v.ServerVersion.GitVersion, want)
	}
	helm, err := exec.CommandContext(t.Context(), env.cp.Binaries.Helm, "version", "--template", "{{.Version}}").Output()
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.TrimSpace(string(helm)); got != env.cp.Versions.Helm {
		t.Errorf("helm version %q, want %s", got, env.cp.Versions.Helm)
	}
}

// TestControlPlaneStop: a second control plane starts next to the suite's,
// and Stop ends exactly its processes, frees its port and removes its
// temporary directory, leaving the suite's running.
func TestControlPlaneStop(t *testing.T) {
	t.Parallel()
	log := slog.New(slog.NewTextHandler(testWriter{t}, nil))
	cp, err := testenv.Start(t.Context(), testenv.DefaultConfig(), env.cp.Binaries, log)
	if err != nil {
		t.Fatal(err)
	}
	procs := cp.Processes()
	if len(procs) != 3 {
		t.Fatalf("%d processes, want etcd, kube-apiserver and kube-controller-manager", len(procs))
	}
	u, err := url.Parse(cp.APIServerURL)
	if err != nil {
		t.Fatal(err)
	}
	if err := cp.Stop(); err != nil {
		t.Fatal(err)
	}
	for _, p := range procs {
		select {
		case <-p.Exited():
		default:
			t.Errorf("%s (pid %d) still running after Stop", p.Name, p.Pid())
		}
	}
	if c, err := net.DialTimeout("tcp", u.Host, time.Second); err == nil {
		c.Close()
		t.Errorf("something still listens on %s after Stop", u.Host)
	}
	if _, err := os.Stat(cp.Dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("work directory %s still there after Stop (stat: %v)", cp.Dir, err)
	}
	// The suite's control plane is untouched.
	for _, p := range env.cp.Processes() {
		if err := p.ExitError(); err != nil {
			t.Errorf("suite control plane: %v", err)
		}
	}
	if _, err := env.cs.Discovery().ServerVersion(); err != nil {
		t.Errorf("suite apiserver after stopping another control plane: %v", err)
	}
}

// testWriter sends log lines to t.Log.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
