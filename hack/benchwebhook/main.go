// Command benchwebhook runs the shared benchmark kit's null webhook and
// sidecar-injector's webhook one after the other on this machine, drives
// each with admitload over HTTP/2 at several concurrencies, validates every
// reply (admitload) and the injected pod (here), and writes a table of the
// webhook's figures as ratios to the null webhook. Run it through
// hack/bench-webhook.sh (make bench-webhook).
package main

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"
)

type options struct {
	kit         string
	out         string
	duration    time.Duration
	warmup      time.Duration
	reps        int
	concurrency []int
	profile     string
	flags       []string // extra flags of the webhook
}

func main() {
	var o options
	var conc string
	flag.StringVar(&o.kit, "kit", "", "the benchmark kit directory (holding admitload/ and nullhook/)")
	flag.StringVar(&o.out, "out", "benchmark-webhook.md", "file the generated Markdown is written to (the script puts it into docs/benchmarks.md)")
	flag.DurationVar(&o.duration, "duration", 10*time.Second, "measured time of each run")
	flag.DurationVar(&o.warmup, "warmup", time.Second, "unmeasured warm-up of each run")
	flag.IntVar(&o.reps, "reps", 3, "repetitions (medians are reported)")
	flag.StringVar(&conc, "concurrency", "1,16,64", "comma-separated admitload -c levels")
	flag.StringVar(&o.profile, "profile", "", "write a CPU profile of the webhook during its first c=16 run to this file")
	webhookFlags := flag.String("webhook-flags", "", "extra flags for the webhook, space-separated (to compare settings; the report names them)")
	flag.Parse()
	o.flags = strings.Fields(*webhookFlags)
	var err error
	if o.concurrency, err = parseInts(conc); err != nil {
		fail(fmt.Errorf("-concurrency %q: %w", conc, err))
	}
	switch {
	case o.kit == "":
		fail(errors.New("-kit is required"))
	case o.duration <= 0 || o.duration > 10*time.Minute:
		fail(fmt.Errorf("-duration %s: want 1s-10m", o.duration))
	case o.reps < 1 || o.reps > 20:
		fail(fmt.Errorf("-reps %d: want 1-20", o.reps))
	}
	if err := run(o); err != nil {
		fail(err)
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "benchwebhook:", err)
	os.Exit(1)
}

func parseInts(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 || n > 1024 {
			return nil, fmt.Errorf("%q: want 1-1024", f)
		}
		out = append(out, n)
	}
	return out, nil
}

// server is one webhook under test.
type server struct {
	name string // "null" or "webhook"
	path string // admission path admitload posts to
	args func(tlsAddr, healthAddr, cert, key string) []string
	bin  string
}

func run(o options) error {
	work, err := os.MkdirTemp("", "bench-webhook-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	logf("work directory %s", work)

	// Build the three programs (the kit's modules are standalone).
	admitload := filepath.Join(work, "admitload")
	nullhook := filepath.Join(work, "nullhook")
	injector := filepath.Join(work, "sidecar-injector-webhook")
	for _, b := range []struct{ dir, out string }{
		{filepath.Join(o.kit, "admitload"), admitload},
		{filepath.Join(o.kit, "nullhook"), nullhook},
		{".", injector},
	} {
		pkg := "."
		if b.dir == "." {
			// The webhook's own binary, built as the image builds it.
			pkg = "./cmd/sidecar-injector-webhook"
		}
		cmd := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w", "-o", b.out, pkg)
		cmd.Dir = b.dir
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOWORK=off")
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		logf("building %s", b.out)
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("build %s in %s: %w", pkg, b.dir, err)
		}
	}
	cert, key := filepath.Join(work, "tls.crt"), filepath.Join(work, "tls.key")
	if err := writeSelfSigned(cert, key); err != nil {
		return err
	}
	podJSON, err := exec.Command(admitload, "-print-pod").Output()
	if err != nil {
		return fmt.Errorf("admitload -print-pod: %w", err)
	}

	servers := []server{
		{name: "null", path: "/inject", bin: nullhook, args: func(tlsAddr, _, cert, key string) []string {
			return []string{"-addr", tlsAddr, "-cert", cert, "-key", key}
		}},
		{name: "webhook", path: "/mutate", bin: injector, args: func(tlsAddr, healthAddr, cert, key string) []string {
			args := []string{"--tls-cert-file", cert, "--tls-key-file", key,
				"--listen-address", tlsAddr, "--health-address", healthAddr, "--drain-delay", "0s"}
			if o.profile != "" {
				args = append(args, "--enable-pprof")
			}
			return append(args, o.flags...)
		}},
	}

	env := environment()
	var results []result
	var patchCheck string
	profiled := false
	for rep := 1; rep <= o.reps; rep++ {
		for _, s := range servers {
			rs, check, err := runServer(o, s, rep, work, admitload, cert, key, podJSON, o.profile != "" && !profiled && s.name == "webhook")
			if err != nil {
				return err
			}
			if s.name == "webhook" && o.profile != "" {
				profiled = true
			}
			if check != "" {
				patchCheck = check
			}
			results = append(results, rs...)
		}
	}
	table := summarize(results, o.concurrency)
	md := render(o, env, table, patchCheck)
	fmt.Print(md)
	if err := os.MkdirAll(filepath.Dir(o.out), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(o.out, []byte(md), 0o644); err != nil {
		return err
	}
	logf("wrote %s", o.out)
	return nil
}

// runServer starts one server, runs every concurrency level against it and
// stops it. The first webhook run also validates the injected pod.
func runServer(o options, s server, rep int, work, admitload, cert, key string, podJSON []byte, profile bool) ([]result, string, error) {
	tlsAddr, err := freeAddr()
	if err != nil {
		return nil, "", err
	}
	healthAddr, err := freeAddr()
	if err != nil {
		return nil, "", err
	}
	logPath := filepath.Join(work, fmt.Sprintf("%s-%d.log", s.name, rep))
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, "", err
	}
	defer logFile.Close()
	cmd := exec.Command(s.bin, s.args(tlsAddr, healthAddr, cert, key)...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		return nil, "", fmt.Errorf("start %s: %w", s.name, err)
	}
	stopped := false
	stop := func() error {
		if stopped {
			return nil
		}
		stopped = true
		_ = cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case <-done:
			return nil
		case <-time.After(15 * time.Second):
			_ = cmd.Process.Kill()
			<-done
			return fmt.Errorf("%s did not stop within 15s of SIGTERM", s.name)
		}
	}
	defer stop()
	if err := waitServing(tlsAddr, 15*time.Second); err != nil {
		return nil, "", fmt.Errorf("%s (log %s): %w", s.name, logPath, err)
	}

	var out []result
	check := ""
	for _, c := range o.concurrency {
		args := []string{"-url", "https://" + tlsAddr + s.path, "-h2", "-c", strconv.Itoa(c),
			"-d", o.duration.String(), "-warmup", o.warmup.String(), "-server-pid", strconv.Itoa(cmd.Process.Pid),
			"-json", "-label", fmt.Sprintf("%s c=%d rep=%d", s.name, c, rep)}
		dump := ""
		if s.name == "webhook" && rep == 1 && c == o.concurrency[0] {
			dump = filepath.Join(work, "patch.json")
			args = append(args, "-dump-patch", dump)
		}
		var prof chan error
		if profile && c == 16 {
			prof = make(chan error, 1)
			secs := max(1, int((o.duration-time.Second)/time.Second))
			go func() {
				time.Sleep(o.warmup + 500*time.Millisecond)
				prof <- fetchProfile("http://"+healthAddr+"/debug/pprof/profile?seconds="+strconv.Itoa(secs), o.profile)
			}()
		}
		load := loadAverage()
		logf("%s c=%d rep=%d (load average %s)", s.name, c, rep, load)
		var stdout, stderr bytes.Buffer
		al := exec.Command(admitload, args...)
		al.Stdout, al.Stderr = &stdout, &stderr
		runErr := al.Run()
		var r result
		if err := json.Unmarshal(stdout.Bytes(), &r); err != nil {
			return nil, "", fmt.Errorf("admitload %s c=%d: %v (%v)\n%s%s", s.name, c, err, runErr, stdout.String(), stderr.String())
		}
		if runErr != nil || r.Errors > 0 || r.WarmupErrors > 0 || r.Requests == 0 {
			return nil, "", fmt.Errorf("admitload %s c=%d: %d errors (%v), first: %v; exit %v", s.name, c, r.Errors+r.WarmupErrors, r.ErrorKinds, r.FirstErrors, runErr)
		}
		if r.Proto != "HTTP/2.0" {
			return nil, "", fmt.Errorf("admitload %s c=%d: protocol %s, want HTTP/2.0", s.name, c, r.Proto)
		}
		r.Server, r.C, r.Rep, r.Load = s.name, c, rep, load
		out = append(out, r)
		logf("  %.0f req/s, p50 %.2f ms, p99 %.2f ms, server %.0f µs/req, peak RSS %.1f MiB", r.RPS, r.P50, r.P99, r.ServerCPUPerReq, float64(r.ServerHWMKiB)/1024)
		if dump != "" {
			if check, err = checkInjection(podJSON, dump); err != nil {
				return nil, "", fmt.Errorf("the webhook's patch: %w", err)
			}
			logf("  %s", check)
		}
		if prof != nil {
			if err := <-prof; err != nil {
				return nil, "", fmt.Errorf("CPU profile: %w", err)
			}
			logf("  CPU profile written to %s", o.profile)
		}
	}
	return out, check, stop()
}

func fetchProfile(url, path string) error {
	resp, err := http.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return fmt.Errorf("GET %s: HTTP %d", url, resp.StatusCode)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// waitServing waits until a TLS handshake with addr succeeds.
func waitServing(addr string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		d := &net.Dialer{Timeout: time.Second}
		conn, err := tls.DialWithDialer(d, "tcp", addr, &tls.Config{InsecureSkipVerify: true}) // our own throw-away certificate
		if err == nil {
			conn.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not serving TLS on %s after %s: %w", addr, timeout, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// writeSelfSigned writes a throw-away ECDSA certificate for 127.0.0.1.
func writeSelfSigned(certPath, keyPath string) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "bench-webhook"},
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return err
	}
	kd, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return err
	}
	if err := os.WriteFile(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		return err
	}
	return os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kd}), 0o600)
}

// environment describes the machine for the report.
func environment() string {
	model := "unknown CPU"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "model name"); ok {
				model = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
				break
			}
		}
	}
	goVersion := runtime.Version()
	if out, err := exec.Command("go", "env", "GOVERSION").Output(); err == nil {
		goVersion = strings.TrimSpace(string(out))
	}
	return fmt.Sprintf("%d CPUs (%s), %s/%s, %s", runtime.NumCPU(), model, runtime.GOOS, runtime.GOARCH, goVersion)
}

func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "bench-webhook: "+format+"\n", args...)
}
