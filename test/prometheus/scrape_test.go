package promtest

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	jsonpatch "github.com/evanphx/json-patch/v5"
	admissionv1 "k8s.io/api/admission/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/yaml"

	"github.com/sidecar-injector/sidecar-injector/test/adsclient"
	"github.com/sidecar-injector/sidecar-injector/test/testenv"
)

// Bounded waits: everything runs on loopback.
const (
	readyTimeout = 60 * time.Second
	scrapeWait   = 90 * time.Second
)

// TestPrometheusScrape runs a real Prometheus against a running webhook
// and xDS server. The scrape configuration is the usual Kubernetes
// pod-annotation one (keep prometheus.io/scrape=true, path from
// prometheus.io/path, port from prometheus.io/port), fed with the
// annotations of the chart's rendered pod templates; the processes listen
// on the ports those annotations name. After one admission request and one
// ADS exchange, Prometheus's HTTP API must show both targets up and our
// admission and xDS series; promtool check metrics must be clean on what
// both expose.
func TestPrometheusScrape(t *testing.T) {
	promBin := tool(t, "prometheus")
	promtool := tool(t, "promtool")
	ctx := t.Context()
	root := repoRoot(t)
	dir := t.TempDir()
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))

	bins, err := testenv.Build(ctx, testenv.DefaultBuildConfig(), log)
	if err != nil {
		t.Fatalf("build helm: %v", err)
	}
	ports, err := testenv.FreePorts(5)
	if err != nil {
		t.Fatal(err)
	}
	webhookTLS, webhookHealth, xdsGRPC, xdsHealth, promPort := ports[0], ports[1], ports[2], ports[3], ports[4]

	// The chart, rendered with the health ports we listen on.
	manifests, err := testenv.RenderChart(ctx, bins.Helm, filepath.Join(root, "charts", "sidecar-injector"), "mesh", "sidecar-injector", "v1.37.2",
		"--set", "webhook.healthPort="+strconv.Itoa(webhookHealth), "--set", "xds.healthPort="+strconv.Itoa(xdsHealth))
	if err != nil {
		t.Fatal(err)
	}
	annotations := podAnnotations(t, manifests)
	for _, c := range []string{"webhook", "xds", "controller"} {
		if annotations[c]["prometheus.io/scrape"] != "true" {
			t.Fatalf("the chart's %s pod template has no prometheus.io/scrape=true annotation: %v", c, annotations[c])
		}
	}
	// The controller needs a cluster, which this test has not: its series
	// are linted by TestControllerMetricsLint, its /metrics read by the e2e suite.
	delete(annotations, "controller")

	servers, err := testenv.BuildBinaries(t.Context(), "", root, dir)
	if err != nil {
		t.Fatal(err)
	}
	injector := servers.Injector
	ca, certFile, keyFile, err := testenv.LoopbackFiles(dir, "webhook", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	webhookArgs := []string{
		"--tls-cert-file", certFile, "--tls-key-file", keyFile,
		"--listen-address", "127.0.0.1:" + strconv.Itoa(webhookTLS),
		"--health-address", "127.0.0.1:" + strconv.Itoa(webhookHealth),
		"--log-format", "text", "--drain-delay", "0s"}
	wh := start(t, testenv.ProcessSpec{Name: "webhook", Path: servers.Webhook, Args: webhookArgs, LogFile: filepath.Join(dir, "webhook.log")},
		fmt.Sprintf("http://127.0.0.1:%d/readyz", webhookHealth))
	xs := start(t, testenv.ProcessSpec{Name: "xds", Path: injector, Args: []string{"xds",
		"--listen-address", "127.0.0.1:" + strconv.Itoa(xdsGRPC),
		"--health-address", "127.0.0.1:" + strconv.Itoa(xdsHealth),
		"--log-format", "text", "--shutdown-delay", "0s"}, LogFile: filepath.Join(dir, "xds.log")},
		fmt.Sprintf("http://127.0.0.1:%d/readyz", xdsHealth))

	// One admission request, then the injected pod's proxy fetches its
	// configuration over ADS (CDS and LDS, both ACKed).
	pod := admit(t, webhookTLS, ca.CertPEM)
	pod.Status.PodIP = "127.0.0.1" // the proxy connects from here (the server checks it)
	node, err := adsclient.NodeFromPod(pod)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := adsclient.Fetch(ctx, "127.0.0.1:"+strconv.Itoa(xdsGRPC), node, 10*time.Second); err != nil {
		t.Fatalf("ADS fetch for the injected pod: %v\n%s", err, xs.LogTail(20))
	}

	// promtool check metrics on what each process exposes.
	for name, port := range map[string]int{"webhook": webhookHealth, "xds": xdsHealth} {
		body := get(t, fmt.Sprintf("http://127.0.0.1:%d%s", port, annotations[name]["prometheus.io/path"]))
		out, err := run(t, body, promtool, "check", "metrics")
		if err != nil || strings.TrimSpace(out) != "" {
			t.Errorf("promtool check metrics on the %s's /metrics: %v\n%s", name, err, out)
		}
	}

	// Prometheus, configured from the annotations.
	cfg := scrapeConfig(t, annotations)
	cfgFile := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(cfgFile, cfg, 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := run(t, nil, promtool, "check", "config", cfgFile); err != nil {
		t.Fatalf("promtool check config: %v\n%s\n%s", err, out, cfg)
	}
	promURL := "http://127.0.0.1:" + strconv.Itoa(promPort)
	prom := start(t, testenv.ProcessSpec{Name: "prometheus", Path: promBin, Args: []string{
		"--config.file=" + cfgFile,
		"--storage.tsdb.path=" + filepath.Join(dir, "tsdb"),
		"--web.listen-address=127.0.0.1:" + strconv.Itoa(promPort),
	}, LogFile: filepath.Join(dir, "prometheus.log")}, promURL+"/-/ready")

	checks := []struct{ what, query string }{
		{"webhook target up", `up{job="webhook"} == 1`},
		{"xds target up", `up{job="xds"} == 1`},
		{"the admission request", `sum(sidecar_injector_admission_requests_total{job="webhook",result="injected"}) >= 1`},
		{"the admission latency histogram", `sum(sidecar_injector_admission_duration_seconds_count{job="webhook"}) >= 1`},
		{"the ADS requests (CDS and LDS)", `sum(sidecar_injector_xds_requests_total{job="xds",result="initial"}) >= 2`},
		// The CDS ACK precedes the LDS request on the stream; the LDS ACK
		// may be cut off by the client closing right after it.
		{"the CDS ACK", `sum(sidecar_injector_xds_requests_total{job="xds",result="ack"}) >= 1`},
		{"the xDS pushes", `sum(sidecar_injector_xds_responses_total{job="xds"}) >= 2`},
		{"the connected proxies gauge", `sidecar_injector_xds_connected_proxies{job="xds"}`},
		{"build info from both", `count(sidecar_injector_build_info) >= 2`},
	}
	deadline := time.Now().Add(scrapeWait)
	for _, c := range checks {
		var last string
		for {
			n, body, err := promQuery(ctx, promURL, c.query)
			if err == nil && n > 0 {
				t.Logf("prometheus: %s: %s", c.what, body)
				break
			}
			last = fmt.Sprintf("%v %s", err, body)
			if time.Now().After(deadline) {
				t.Fatalf("prometheus never showed %s (%s) within %s: last answer %s\nprometheus log:\n%s\ntargets: %s",
					c.what, c.query, scrapeWait, last, prom.LogTail(20), targets(ctx, promURL))
			}
			time.Sleep(500 * time.Millisecond)
		}
	}
	_ = wh
}

// podAnnotations returns the pod template annotations of the chart's
// Deployments by component (app.kubernetes.io/component).
func podAnnotations(t *testing.T, manifests []byte) map[string]map[string]string {
	t.Helper()
	out := map[string]map[string]string{}
	objs, err := testenv.SplitManifests(manifests)
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range objs {
		if o.Kind != "Deployment" {
			continue
		}
		var d appsv1.Deployment
		if err := yaml.Unmarshal(o.Raw, &d); err != nil {
			t.Fatal(err)
		}
		out[d.Spec.Template.Labels["app.kubernetes.io/component"]] = d.Spec.Template.Annotations
	}
	if len(out) != 3 || out["controller"] == nil {
		t.Fatalf("found Deployments for %d components, want webhook, controller and xds", len(out))
	}
	return out
}

// scrapeConfig is the common Kubernetes pod-annotation scrape
// configuration, one job per component. Each static target stands for the
// pod: it carries the pod annotations as the __meta labels Kubernetes
// service discovery would set, and the same relabeling turns them into the
// address and path Prometheus scrapes.
func scrapeConfig(t *testing.T, annotations map[string]map[string]string) []byte {
	t.Helper()
	relabel := []map[string]any{
		{"source_labels": []string{"__meta_kubernetes_pod_annotation_prometheus_io_scrape"}, "action": "keep", "regex": "true"},
		{"source_labels": []string{"__meta_kubernetes_pod_annotation_prometheus_io_path"}, "action": "replace", "target_label": "__metrics_path__", "regex": "(.+)"},
		{"source_labels": []string{"__address__", "__meta_kubernetes_pod_annotation_prometheus_io_port"}, "action": "replace",
			"regex": `([^:]+)(?::\d+)?;(\d+)`, "replacement": "$1:$2", "target_label": "__address__"},
	}
	var jobs []map[string]any
	for _, c := range []string{"webhook", "xds"} {
		labels := map[string]string{"namespace": "sidecar-injector"}
		for k, v := range annotations[c] {
			if strings.HasPrefix(k, "prometheus.io/") {
				labels["__meta_kubernetes_pod_annotation_"+strings.NewReplacer(".", "_", "/", "_").Replace(k)] = v
			}
		}
		jobs = append(jobs, map[string]any{
			"job_name":        c,
			"scrape_interval": "1s",
			"scrape_timeout":  "1s",
			"static_configs":  []map[string]any{{"targets": []string{"127.0.0.1"}, "labels": labels}},
			"relabel_configs": relabel,
		})
	}
	b, err := yaml.Marshal(map[string]any{
		"global":         map[string]any{"scrape_interval": "1s", "evaluation_interval": "1s"},
		"scrape_configs": jobs,
	})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// start starts a process, stops it when the test ends, and waits until
// readyURL answers 200.
func start(t *testing.T, spec testenv.ProcessSpec, readyURL string) *testenv.Process {
	t.Helper()
	p, err := testenv.StartProcess(spec)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := p.Stop(10 * time.Second); err != nil {
			t.Errorf("stop %s: %v", spec.Name, err)
		}
		if t.Failed() {
			t.Logf("last lines of %s:\n%s", spec.Name, p.LogTail(30))
		}
	})
	err = testenv.WaitFor(t.Context(), p, readyTimeout, func(ctx context.Context) error {
		return testenv.GetOK(ctx, readyURL)
	})
	if err != nil {
		t.Fatalf("%s not ready: %v\n%s", spec.Name, err, p.LogTail(30))
	}
	return p
}

func get(t *testing.T, u string) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s %v", u, resp.Status, err)
	}
	return b
}

// admit sends one pod CREATE review to /mutate and returns the pod with
// the answer's patch applied.
func admit(t *testing.T, port int, caPEM []byte) *corev1.Pod {
	t.Helper()
	pod := &corev1.Pod{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{Name: "web-1", Namespace: "shop"},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{
			Name: "web", Image: "nginx:1.27", Ports: []corev1.ContainerPort{{ContainerPort: 8080}},
		}}},
	}
	raw, err := json.Marshal(pod)
	if err != nil {
		t.Fatal(err)
	}
	review := admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Request: &admissionv1.AdmissionRequest{
			UID: "promtest-1", Kind: metav1.GroupVersionKind{Version: "v1", Kind: "Pod"},
			Resource:  metav1.GroupVersionResource{Version: "v1", Resource: "pods"},
			Namespace: "shop", Name: "web-1", Operation: admissionv1.Create,
			Object: runtime.RawExtension{Raw: raw},
		},
	}
	body, err := json.Marshal(review)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}
	resp, err := hc.Post(fmt.Sprintf("https://127.0.0.1:%d/mutate", port), "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out admissionv1.AdmissionReview
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&out); err != nil {
		t.Fatalf("/mutate answer: %s: %v", resp.Status, err)
	}
	if out.Response == nil || !out.Response.Allowed || len(out.Response.Patch) == 0 {
		t.Fatalf("/mutate answer %+v: want allowed with a patch", out.Response)
	}
	patch, err := jsonpatch.DecodePatch(out.Response.Patch)
	if err != nil {
		t.Fatal(err)
	}
	injected, err := patch.Apply(raw)
	if err != nil {
		t.Fatal(err)
	}
	var p corev1.Pod
	if err := json.Unmarshal(injected, &p); err != nil {
		t.Fatal(err)
	}
	return &p
}

// promQuery runs an instant query and returns the number of series in the
// result and the result itself.
func promQuery(ctx context.Context, base, q string) (int, string, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/api/v1/query?query="+url.QueryEscape(q), nil)
	if err != nil {
		return 0, "", err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	var r struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			Result []json.RawMessage `json:"result"`
		} `json:"data"`
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return 0, "", err
	}
	if err := json.Unmarshal(b, &r); err != nil {
		return 0, string(b), err
	}
	if r.Status != "success" {
		return 0, string(b), fmt.Errorf("query %s: %s", q, r.Error)
	}
	var parts []string
	for _, m := range r.Data.Result {
		parts = append(parts, string(m))
	}
	return len(r.Data.Result), strings.Join(parts, " "), nil
}

// targets is Prometheus's view of its targets, for failure messages.
func targets(ctx context.Context, base string) string {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/api/v1/targets", nil)
	if err != nil {
		return err.Error()
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	return string(b)
}
