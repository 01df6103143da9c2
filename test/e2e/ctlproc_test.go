//go:build e2e

package e2e

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sidecar-injector/sidecar-injector/test/testenv"
)

// ctlProc is a `sidecar-injector controller` process under test.
type ctlProc struct {
	name   string
	proc   *testenv.Process
	health string // http://127.0.0.1:port
}

// startControllerProcess runs `sidecar-injector controller` with args
// (after --kubeconfig and --health-address) and waits for its /healthz.
func (s *suite) startControllerProcess(ctx context.Context, name string, args ...string) (*ctlProc, error) {
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		ports, err := testenv.FreePorts(1)
		if err != nil {
			return nil, err
		}
		c := &ctlProc{name: name, health: "http://127.0.0.1:" + strconv.Itoa(ports[0])}
		c.proc, err = testenv.StartProcess(testenv.ProcessSpec{
			Name: "controller-" + name,
			Path: s.injector,
			Args: append([]string{"controller", "--kubeconfig", s.cp.Kubeconfig,
				"--health-address", "127.0.0.1:" + strconv.Itoa(ports[0]), "--log-format", "text"}, args...),
			LogFile: filepath.Join(s.dir, "controller-"+name+".log"),
		})
		if err != nil {
			return nil, err
		}
		err = testenv.WaitFor(ctx, c.proc, waitTimeout, func(ctx context.Context) error {
			return testenv.GetOK(ctx, c.health+"/healthz")
		})
		if err == nil {
			return c, nil
		}
		_ = c.proc.Stop(5 * time.Second)
		lastErr = fmt.Errorf("controller %s not healthy: %w\n%s", name, err, c.proc.LogTail(20))
		if !strings.Contains(c.proc.LogTail(50), "address already in use") {
			break
		}
	}
	return nil, lastErr
}

// startControllerProc is startControllerProcess for one test.
func startControllerProc(t *testing.T, name string, args ...string) *ctlProc {
	t.Helper()
	c, err := env.startControllerProcess(t.Context(), name, args...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = c.proc.Stop(10 * time.Second)
		if t.Failed() {
			t.Logf("last lines of controller %s:\n%s", c.name, c.proc.LogTail(30))
		}
	})
	return c
}

// kill sends SIGKILL: no Lease release, no goodbye.
func (c *ctlProc) kill(t *testing.T) {
	t.Helper()
	if err := syscall.Kill(c.proc.Pid(), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	select {
	case <-c.proc.Exited():
	case <-time.After(10 * time.Second):
		t.Fatalf("controller %s did not die of SIGKILL", c.name)
	}
}

// metric reads an unlabelled series (or the first series whose labels
// contain labels) from the process's /metrics; -1 when it cannot be read.
func (c *ctlProc) metric(ctx context.Context, name, labels string) float64 {
	select {
	case <-c.proc.Exited():
		return -1
	default:
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.health+"/metrics", nil)
	if err != nil {
		return -1
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	var buf bytes.Buffer
	if _, err := buf.ReadFrom(resp.Body); err != nil {
		return -1
	}
	sc := bufio.NewScanner(&buf)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, name) {
			continue
		}
		rest := line[len(name):]
		if labels == "" && !strings.HasPrefix(rest, " ") {
			continue
		}
		if labels != "" && !(strings.HasPrefix(rest, "{") && strings.Contains(rest, labels)) {
			continue
		}
		f := strings.Fields(rest)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err != nil {
			return -1
		}
		return v
	}
	return -1
}
