package memory

import (
	"bytes"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sidecar-injector/sidecar-injector/test/testenv"
)

// leanPeak is what the webhook process may reach (VmHWM) under 16
// concurrent reviews of a three-container pod: the target of issue 16, the
// webhook's binary and its working set together.
const leanPeak = 32 << 20

// The webhook binary the chart runs stays small under the load the
// benchmark applies (16 concurrent HTTP/2 reviews): at most 32 MiB peak
// RSS, every review injected. It was 64-67 MiB when the webhook was a
// subcommand of the binary that links the controller and the xDS server.
func TestWebhookLeanUnderLoad(t *testing.T) {
	c := startWebhook(t)
	idle := c.vmHWM(t)
	body := benchReview(t)
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		TLSClientConfig:   &tls.Config{RootCAs: c.pool, MinVersion: tls.VersionTLS12},
		ForceAttemptHTTP2: true,
	}}
	defer client.CloseIdleConnections()

	const workers, total = 16, 4000
	deadline := time.Now().Add(90 * time.Second)
	var sent, injected atomic.Int32
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for sent.Add(1) <= total && time.Now().Before(deadline) {
				if err := review(client, c.addr, body); err != nil {
					t.Error(err)
					return
				}
				injected.Add(1)
			}
		})
	}
	wg.Wait()
	peak := c.vmHWM(t)
	t.Logf("sidecar-injector-webhook: idle %.1f MiB, peak %.1f MiB after %d reviews (16 concurrent, HTTP/2)", float64(idle)/(1<<20), float64(peak)/(1<<20), injected.Load())
	if injected.Load() < total/4 {
		t.Errorf("only %d of %d reviews in 90 s", injected.Load(), total)
	}
	if peak > leanPeak {
		t.Errorf("peak RSS %.1f MiB, want at most %d MiB", float64(peak)/(1<<20), leanPeak>>20)
	}
}

// review sends one review and checks that it came back injected over HTTP/2.
func review(client *http.Client, addr string, body []byte) error {
	req, err := http.NewRequest(http.MethodPost, "https://"+addr+"/mutate", bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("review: %w", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("review: %w", err)
	}
	if resp.StatusCode != http.StatusOK || resp.ProtoMajor != 2 {
		return fmt.Errorf("review: %s over %s: %s", resp.Status, resp.Proto, b)
	}
	var out struct {
		Response struct {
			Allowed bool   `json:"allowed"`
			Patch   []byte `json:"patch"`
		} `json:"response"`
	}
	if err := json.Unmarshal(b, &out); err != nil {
		return fmt.Errorf("review reply: %w", err)
	}
	if !out.Response.Allowed || !bytes.Contains(out.Response.Patch, []byte(`"name":"iptables-init"`)) {
		return fmt.Errorf("review not injected: allowed %v, patch %s", out.Response.Allowed, base64.StdEncoding.EncodeToString(out.Response.Patch)[:min(80, len(out.Response.Patch))])
	}
	return nil
}

// benchReview is a CREATE review of the engine benchmark's three-container
// pod.
func benchReview(t *testing.T) []byte {
	t.Helper()
	root, err := testenv.FindRepoRoot(".")
	if err != nil {
		t.Fatal(err)
	}
	pod, err := os.ReadFile(filepath.Join(root, "pkg", "inject", "testdata", "bench", "pod-3-containers.json"))
	if err != nil {
		t.Fatal(err)
	}
	ns := "shop"
	var meta struct {
		Metadata struct {
			Namespace string `json:"namespace"`
		} `json:"metadata"`
	}
	if json.Unmarshal(pod, &meta) == nil && strings.TrimSpace(meta.Metadata.Namespace) != "" {
		ns = meta.Metadata.Namespace
	}
	b, err := json.Marshal(map[string]any{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": map[string]any{
		"uid": "lean-1", "kind": map[string]any{"group": "", "version": "v1", "kind": "Pod"},
		"resource":  map[string]any{"group": "", "version": "v1", "resource": "pods"},
		"namespace": ns, "operation": "CREATE", "object": json.RawMessage(pod)}})
	if err != nil {
		t.Fatal(err)
	}
	return b
}
