package webhook

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
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

	"github.com/sidecar-injector/sidecar-injector/internal/poll"
)

func readyz(t testing.TB, h *harness) int {
	t.Helper()
	resp, err := http.Get(h.health + "/readyz")
	if err != nil {
		t.Fatalf("GET /readyz: %v", err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// eventually waits up to 10 s for cond (internal/poll).
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	poll.True(t, 10*time.Second, what, cond)
}

// /readyz is 503 until a certificate is loaded; the handshake fails until
// then; a pair appearing later is picked up without a restart.
func TestReadyOnlyWithCertificate(t *testing.T) {
	t.Parallel()
	h := newHarness(t, withoutCert())
	if got := readyz(t, h); got != http.StatusServiceUnavailable {
		t.Fatalf("/readyz %d without a certificate, want 503", got)
	}
	if got := gatherValue(t, h.reg, "sidecar_injector_ready", nil); got != 0 {
		t.Errorf("sidecar_injector_ready = %v without a certificate", got)
	}
	if _, err := h.h2.Post(h.base+"/mutate", "application/json", strings.NewReader("{}")); err == nil {
		t.Errorf("TLS handshake succeeded without a certificate")
	}
	if resp, err := http.Get(h.health + "/healthz"); err != nil || resp.StatusCode != 200 {
		t.Errorf("/healthz must answer 200 while not ready: %v", err)
	}
	cp, kp := h.ca.leaf(t, 7, time.Now().Add(time.Hour))
	writeFile(t, h.cfg.TLSKeyFile, kp)
	writeFile(t, h.cfg.TLSCertFile, cp)
	eventually(t, "readiness after the certificate appeared", func() bool { return readyz(t, h) == 200 })
	h.h2.CloseIdleConnections()
	resp, _ := h.post("/mutate", "application/json", reviewBody(t, admissionV1, podRequest(t, loadPod(t))))
	if resp.StatusCode != 200 || resp.TLS.PeerCertificates[0].SerialNumber.Int64() != 7 {
		t.Errorf("after the certificate appeared: HTTP %d", resp.StatusCode)
	}
	if got := gatherValue(t, h.reg, "sidecar_injector_ready", nil); got != 1 {
		t.Errorf("sidecar_injector_ready = %v when ready", got)
	}
}

// kubeletDir lays files out as a kubelet Secret volume does: the files are
// symlinks into ..data, itself a symlink to a timestamped directory, swapped
// atomically on update.
type kubeletDir struct {
	t   testing.TB
	dir string
	gen int
}

func (k *kubeletDir) write(files map[string][]byte) {
	k.t.Helper()
	k.gen++
	ts := fmt.Sprintf("..2026_01_01_00_00_%02d.%d", k.gen, k.gen)
	if err := os.Mkdir(filepath.Join(k.dir, ts), 0o755); err != nil {
		k.t.Fatal(err)
	}
	for name, data := range files {
		writeFile(k.t, filepath.Join(k.dir, ts, name), data)
	}
	old, _ := os.Readlink(filepath.Join(k.dir, "..data"))
	tmp := filepath.Join(k.dir, "..data_tmp")
	if err := os.Symlink(ts, tmp); err != nil {
		k.t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(k.dir, "..data")); err != nil {
		k.t.Fatal(err)
	}
	for name := range files {
		link := filepath.Join(k.dir, name)
		if _, err := os.Lstat(link); os.IsNotExist(err) {
			if err := os.Symlink(filepath.Join("..data", name), link); err != nil {
				k.t.Fatal(err)
			}
		}
	}
	if old != "" {
		os.RemoveAll(filepath.Join(k.dir, old))
	}
}

// Certificate rotation while a client loops: zero failed requests, new
// connections see the new certificate; a half-written or mismatched pair
// keeps the old one and counts a reload error.
func TestCertificateRotation(t *testing.T) {
	t.Parallel()
	ca := newTestCA(t)
	kd := &kubeletDir{t: t, dir: t.TempDir()}
	c1, k1 := ca.leaf(t, 1001, time.Now().Add(2*time.Hour))
	kd.write(map[string][]byte{"tls.crt": c1, "tls.key": k1})
	h := newHarness(t, withConfig(func(c *Config) {
		c.TLSCertFile = filepath.Join(kd.dir, "tls.crt")
		c.TLSKeyFile = filepath.Join(kd.dir, "tls.key")
		c.ReloadInterval = time.Hour // file-system events alone must do it
	}), func(h *harness, _ *Config) { h.ca = ca })
	h.waitReady()
	body := reviewBody(t, admissionV1, podRequest(t, loadPod(t)))

	// Clients loop: one HTTP/2 client on a long-lived connection and one
	// opening a new connection per request.
	fresh := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: ca.pool}, DisableKeepAlives: true}}
	var lastSerial, freshOK atomic.Int64
	var ok, failed atomic.Int64
	var firstErr atomic.Value
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i, c := range []*http.Client{h.h2, fresh} {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				req, _ := http.NewRequest(http.MethodPost, h.base+"/mutate", bytes.NewReader(body))
				req.Header.Set("Content-Type", "application/json")
				resp, err := c.Do(req)
				if err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, err.Error())
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, fmt.Sprintf("HTTP %d", resp.StatusCode))
					continue
				}
				ok.Add(1)
				if i == 1 {
					lastSerial.Store(resp.TLS.PeerCertificates[0].SerialNumber.Int64())
					freshOK.Add(1)
				}
			}
		})
	}
	reloads := func(result string) float64 {
		return gatherValue(t, h.reg, "sidecar_injector_certificate_reloads_total", map[string]string{"result": result})
	}
	waitSerial := func(serial int64) {
		t.Helper()
		eventually(t, fmt.Sprintf("new connections to see certificate %d", serial), func() bool { return lastSerial.Load() == serial })
	}
	waitSerial(1001)

	// 1. Kubelet-style atomic swap of the ..data symlink.
	c2, k2 := ca.leaf(t, 1002, time.Now().Add(3*time.Hour))
	kd.write(map[string][]byte{"tls.crt": c2, "tls.key": k2})
	waitSerial(1002)
	expiry := gatherValue(t, h.reg, "sidecar_injector_certificate_expiry_timestamp_seconds", nil)
	if want := float64(leafOf(t, c2).NotAfter.Unix()); expiry != want {
		t.Errorf("certificate expiry metric %v, want %v", expiry, want)
	}

	// 2. A mismatched pair (new cert, old key): kept out, counted.
	errs0 := reloads("error")
	c3, k3 := ca.leaf(t, 1003, time.Now().Add(4*time.Hour))
	kd.write(map[string][]byte{"tls.crt": c3, "tls.key": k2})
	eventually(t, "a reload error for the mismatched pair", func() bool { return reloads("error") > errs0 })
	// Connections made after the rejection: they must still get the old pair.
	afterReject := freshOK.Load()
	eventually(t, "new connections after the rejected pair", func() bool { return freshOK.Load() >= afterReject+3 })
	if s := lastSerial.Load(); s != 1002 {
		t.Errorf("serving certificate %d after a mismatched pair; want the old 1002 kept", s)
	}

	// 3. A half-written certificate: kept out, counted.
	errs1 := reloads("error")
	kd.write(map[string][]byte{"tls.crt": c3[:len(c3)/2], "tls.key": k3})
	eventually(t, "a reload error for the half-written certificate", func() bool { return reloads("error") > errs1 })
	if s := lastSerial.Load(); s != 1002 {
		t.Errorf("serving certificate %d after a half-written pair; want the old 1002 kept", s)
	}

	// 4. The complete pair: loaded.
	kd.write(map[string][]byte{"tls.crt": c3, "tls.key": k3})
	waitSerial(1003)
	close(stop)
	wg.Wait()
	if failed.Load() != 0 {
		t.Errorf("%d of %d requests failed during rotation; first: %v", failed.Load(), failed.Load()+ok.Load(), firstErr.Load())
	}
	if !strings.Contains(h.logs.String(), "keeping the previous one") {
		t.Errorf("the rejected pair was not logged")
	}
	t.Logf("%d requests during 3 rotations and 2 rejected pairs, %d failed; reloads ok=%v error=%v",
		ok.Load(), failed.Load(), reloads("success"), reloads("error"))
}

func leafOf(t testing.TB, certPEM []byte) *x509.Certificate {
	t.Helper()
	b, _ := pem.Decode(certPEM)
	c, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// The injector config is reloaded on change: the config hash in new pods
// changes with it; an invalid file keeps the old config.
func TestConfigReload(t *testing.T) {
	t.Parallel()
	var cfgFile string
	h := newHarness(t, withConfig(func(c *Config) {
		cfgFile = filepath.Join(filepath.Dir(c.TLSCertFile), "config", "injector.yaml")
		os.MkdirAll(filepath.Dir(cfgFile), 0o755)
		writeFile(t, cfgFile, []byte("apiVersion: sidecar.io/v1alpha1\nkind: InjectorConfig\nproxy:\n  logLevel: info\n"))
		c.ConfigFile = cfgFile
	}))
	h.waitReady()
	body := reviewBody(t, admissionV1, podRequest(t, loadPod(t)))
	hashOf := func() string {
		_, b := h.post("/mutate", "application/json", body)
		return statusOf(t, applyAnswer(t, body, decodeAnswer(t, b))).ConfigHash
	}
	reloads := func(result string) float64 {
		return gatherValue(t, h.reg, "sidecar_injector_config_reloads_total", map[string]string{"result": result})
	}
	h1 := hashOf()
	if gatherValue(t, h.reg, "sidecar_injector_config_info", map[string]string{"hash": h1}) != 1 {
		t.Errorf("sidecar_injector_config_info{hash=%q} is not 1", h1)
	}

	writeFile(t, cfgFile, []byte("apiVersion: sidecar.io/v1alpha1\nkind: InjectorConfig\nproxy:\n  logLevel: debug\n"))
	eventually(t, "the new config hash in injected pods", func() bool { return hashOf() != h1 })
	h2 := hashOf()
	if gatherValue(t, h.reg, "sidecar_injector_config_info", map[string]string{"hash": h2}) != 1 ||
		gatherValue(t, h.reg, "sidecar_injector_config_info", map[string]string{"hash": h1}) != 0 {
		t.Errorf("config_info does not show exactly the new hash %s", h2)
	}

	errs := reloads("error")
	writeFile(t, cfgFile, []byte("apiVersion: sidecar.io/v1alpha1\nkind: InjectorConfig\nproxy:\n  logLevel: loud\n"))
	eventually(t, "a config reload error", func() bool { return reloads("error") > errs })
	if got := hashOf(); got != h2 {
		t.Errorf("config hash %s after an invalid file; want the previous %s kept", got, h2)
	}
	if !strings.Contains(h.logs.String(), "proxy.logLevel") {
		t.Errorf("the invalid config's field is not named in the log")
	}
	if readyz(t, h) != 200 {
		t.Errorf("an invalid new config made the webhook unready; the old one is still good")
	}
}

// SIGTERM (the run context cancelled) during a load of 16 concurrent
// clients: readiness goes false, serving continues through the drain, and
// no request that reached the server fails.
func TestGracefulShutdownUnderLoad(t *testing.T) {
	t.Parallel()
	for _, proto := range []string{"HTTP/2", "HTTP/1.1"} {
		t.Run(proto, func(t *testing.T) {
			t.Parallel()
			const drain = 400 * time.Millisecond
			h := newHarness(t, withConfig(func(c *Config) { c.DrainDelay = drain }))
			h.waitReady()
			client := h.h2
			if proto == "HTTP/1.1" {
				client = h.h1
			}
			body := reviewBody(t, admissionV1, podRequest(t, loadPod(t)))
			var ok, okAfterCancel, errBeforeCancel atomic.Int64
			var cancelled atomic.Bool
			var firstErr atomic.Value
			var wg sync.WaitGroup
			for range 16 {
				wg.Go(func() {
					for n := 0; n < 100000; n++ {
						req, _ := http.NewRequest(http.MethodPost, h.base+"/mutate", bytes.NewReader(body))
						req.Header.Set("Content-Type", "application/json")
						wasCancelled := cancelled.Load()
						resp, err := client.Do(req)
						if err != nil {
							// Only an error seen before SIGTERM counts: with
							// MaxConcurrentStreams below 16 the client also
							// dials extra connections, and one it dials after
							// SIGTERM is refused once the drain ends. Requests
							// the server received are checked below (served ==
							// ok).
							if !cancelled.Load() {
								errBeforeCancel.Add(1)
								firstErr.CompareAndSwap(nil, err.Error())
							}
							return // the server is gone: stop this client
						}
						b, err := io.ReadAll(resp.Body)
						resp.Body.Close()
						if err != nil || resp.StatusCode != 200 || !decodeAnswer(t, b).Response.Allowed {
							t.Errorf("a request the server received failed: HTTP %d, %v", resp.StatusCode, err)
							return
						}
						ok.Add(1)
						if wasCancelled {
							okAfterCancel.Add(1)
						}
					}
				})
			}
			eventually(t, "load to build up", func() bool { return ok.Load() > 200 })
			cancelled.Store(true)
			h.cancel() // SIGTERM
			eventually(t, "readiness to go false", func() bool { return !h.srv.Ready() })
			if err := h.stop(); err != nil {
				t.Errorf("Serve after SIGTERM: %v", err)
			}
			wg.Wait()
			served := totalRequests(t, h)
			if errBeforeCancel.Load() > 0 {
				t.Errorf("%d requests failed before SIGTERM: %v", errBeforeCancel.Load(), firstErr.Load())
			}
			if float64(ok.Load()) != served {
				t.Errorf("the server answered %v requests, the clients received %d: requests in flight failed", served, ok.Load())
			}
			if okAfterCancel.Load() == 0 {
				t.Errorf("no request was served during the %s drain", drain)
			}
			t.Logf("%s: %d requests ok (%d after SIGTERM, during the drain), server counted %v", proto, ok.Load(), okAfterCancel.Load(), served)
		})
	}
}
