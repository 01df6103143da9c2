package main

import (
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	jsonpatch "github.com/evanphx/json-patch/v5"
)

// result is one admitload run (its -json output) plus where it came from.
type result struct {
	Server string `json:"-"`
	C      int    `json:"-"`
	Rep    int    `json:"-"`
	Load   string `json:"-"`

	Proto           string           `json:"proto"`
	Requests        int64            `json:"requests_ok"`
	Errors          int64            `json:"errors"`
	WarmupErrors    int64            `json:"warmup_errors"`
	ErrorKinds      map[string]int64 `json:"error_kinds"`
	FirstErrors     []string         `json:"first_errors"`
	RPS             float64          `json:"rps"`
	P50             float64          `json:"p50_ms"`
	P99             float64          `json:"p99_ms"`
	PatchBytes      float64          `json:"patch_bytes_avg"`
	PatchOps        int              `json:"patch_ops"`
	ServerCPUPerReq float64          `json:"server_cpu_us_per_req"`
	ClientCPUPerReq float64          `json:"client_cpu_us_per_req"`
	ServerHWMKiB    int64            `json:"server_vmhwm_kib"`
}

// figures are the medians over repetitions of one server at one level.
type figures struct {
	rps, p50, p99, cpu, rssMiB float64
	clientCPU                  float64
	cpuMin, cpuMax             float64
	patchBytes                 float64
	patchOps                   int
}

// row compares the webhook with the null webhook at one concurrency.
type row struct {
	c             int
	null, webhook figures
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Sorted(slices.Values(xs))
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func summarize(rs []result, levels []int) []row {
	fig := func(server string, c int) figures {
		var rps, p50, p99, cpu, rss, client []float64
		var f figures
		for _, r := range rs {
			if r.Server != server || r.C != c {
				continue
			}
			rps, p50, p99 = append(rps, r.RPS), append(p50, r.P50), append(p99, r.P99)
			cpu, rss = append(cpu, r.ServerCPUPerReq), append(rss, float64(r.ServerHWMKiB)/1024)
			client = append(client, r.ClientCPUPerReq)
			f.patchBytes, f.patchOps = r.PatchBytes, r.PatchOps
		}
		f.rps, f.p50, f.p99, f.cpu, f.rssMiB = median(rps), median(p50), median(p99), median(cpu), median(rss)
		f.clientCPU = median(client)
		if len(cpu) > 0 {
			f.cpuMin, f.cpuMax = slices.Min(cpu), slices.Max(cpu)
		}
		return f
	}
	var out []row
	for _, c := range levels {
		out = append(out, row{c: c, null: fig("null", c), webhook: fig("webhook", c)})
	}
	return out
}

func ratio(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
}

// Targets of the issue, at c=16.
const (
	targetThroughput = 0.80 // at least, × null
	targetCPU        = 1.2  // at most, × null (issue 16)
	targetP99        = 1.3  // at most, × null (issue 16)
	targetRSSMiB     = 32.0 // at most
)

func verdict(ok bool) string {
	if ok {
		return "met"
	}
	return "**missed**"
}

func render(o options, env string, rows []row, patchCheck string) string {
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	p("`make bench-webhook` (hack/bench-webhook.sh) on %s, %s. ", env, time.Now().UTC().Format("2006-01-02"))
	config := "default config"
	if len(o.flags) > 0 {
		config = "flags `" + strings.Join(o.flags, " ") + "`"
	}
	p("The shared kit's `nullhook` and `sidecar-injector-webhook` (the chart's webhook binary, %s, outside a cluster) ran one after the other, ", config)
	p("%d repetitions of each, driven by `admitload -h2` (HTTP/2 like kube-apiserver: one connection to the null webhook; to the webhook, one per 16 concurrent requests, its default cap of streams per connection) for %s after a %s warm-up ", o.reps, o.duration, o.warmup)
	p("at each concurrency; every reply was validated by admitload. Figures are medians over the repetitions; ")
	p("ratios are webhook ÷ null. Server CPU is user+system time of the server process over the measured window per request; ")
	p("peak RSS is the process's VmHWM after the run.\n\n")
	if patchCheck != "" {
		p("Full injection: %s.\n\n", patchCheck)
	}
	p("| c | req/s null | req/s webhook | ratio | p50 ms null | p50 ms webhook | ratio | p99 ms null | p99 ms webhook | ratio | CPU µs/req null | CPU µs/req webhook | ratio | peak RSS MiB null | peak RSS MiB webhook | ratio |\n")
	p("|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n")
	for _, r := range rows {
		n, w := r.null, r.webhook
		p("| %d | %.0f | %.0f | %.2f | %.2f | %.2f | %.2f | %.2f | %.2f | %.2f | %.0f | %.0f | %.2f | %.1f | %.1f | %.2f |\n",
			r.c, n.rps, w.rps, ratio(w.rps, n.rps), n.p50, w.p50, ratio(w.p50, n.p50), n.p99, w.p99, ratio(w.p99, n.p99),
			n.cpu, w.cpu, ratio(w.cpu, n.cpu), n.rssMiB, w.rssMiB, ratio(w.rssMiB, n.rssMiB))
	}
	for _, r := range rows {
		if r.c != 16 {
			continue
		}
		n, w := r.null, r.webhook
		p("\nTargets at c=16:\n\n")
		p("- throughput %.2f× null (target ≥ %.2f×): %s\n", ratio(w.rps, n.rps), targetThroughput, verdict(ratio(w.rps, n.rps) >= targetThroughput))
		p("- CPU per request %.2f× null (target ≤ %.1f×; per-repetition range %.0f-%.0f µs vs null %.0f-%.0f µs): %s\n",
			ratio(w.cpu, n.cpu), targetCPU, w.cpuMin, w.cpuMax, n.cpuMin, n.cpuMax, verdict(ratio(w.cpu, n.cpu) <= targetCPU))
		p("- p99 latency %.2f× null (target ≤ %.1f×): %s\n", ratio(w.p99, n.p99), targetP99, verdict(ratio(w.p99, n.p99) <= targetP99))
		p("- peak RSS %.1f MiB (target ≤ %.0f MiB): %s\n", w.rssMiB, targetRSSMiB, verdict(w.rssMiB <= targetRSSMiB))
		p("\nPatch sizes: null %d ops / %.0f bytes (a fixed, partial patch); webhook %d ops / %.0f bytes (the full injection).\n",
			n.patchOps, n.patchBytes, w.patchOps, w.patchBytes)
	}
	p("\nadmitload shares the machine's CPUs with the server, so throughput is bounded by the server's and the client's CPU per request together; ")
	p("the client works more per reply for the webhook's larger answer (base64 patch decoded and checked):\n\n")
	p("| c | client CPU µs/req with null | client CPU µs/req with webhook |\n|--:|--:|--:|\n")
	for _, r := range rows {
		p("| %d | %.0f | %.0f |\n", r.c, r.null.clientCPU, r.webhook.clientCPU)
	}
	p("\nAbsolute figures move from run to run on a shared machine; the ratios are the result.\n")
	return b.String()
}

// checkInjection applies the webhook's patch to admitload's pod and checks
// it is the full injection: iptables-init, envoy, the envoy-config volume
// and the status annotation.
func checkInjection(podJSON []byte, patchPath string) (string, error) {
	patchJSON, err := os.ReadFile(patchPath)
	if err != nil {
		return "", err
	}
	patch, err := jsonpatch.DecodePatch(patchJSON)
	if err != nil {
		return "", fmt.Errorf("decode: %w", err)
	}
	out, err := patch.Apply(podJSON)
	if err != nil {
		return "", fmt.Errorf("does not apply to admitload's pod: %w", err)
	}
	var pod struct {
		Metadata struct {
			Annotations map[string]string `json:"annotations"`
		} `json:"metadata"`
		Spec struct {
			InitContainers []struct {
				Name string `json:"name"`
			} `json:"initContainers"`
			Containers []struct {
				Name string `json:"name"`
			} `json:"containers"`
			Volumes []struct {
				Name string `json:"name"`
			} `json:"volumes"`
		} `json:"spec"`
	}
	if err := json.Unmarshal(out, &pod); err != nil {
		return "", err
	}
	var names []string
	for _, c := range pod.Spec.InitContainers {
		names = append(names, "init:"+c.Name)
	}
	for _, c := range pod.Spec.Containers {
		names = append(names, c.Name)
	}
	hasVolume := slices.ContainsFunc(pod.Spec.Volumes, func(v struct {
		Name string `json:"name"`
	}) bool {
		return v.Name == "envoy-config"
	})
	status := pod.Metadata.Annotations["sidecar.io/status"]
	hasEnvoy := slices.Contains(names, "init:envoy") || slices.Contains(names, "envoy")
	if !slices.Contains(names, "init:iptables-init") || !hasEnvoy || !hasVolume || status == "" {
		return "", fmt.Errorf("not a full injection: containers %v, envoy-config volume %v, status %q", names, hasVolume, status)
	}
	return fmt.Sprintf("the webhook's patch (%d ops) applied to admitload's pod gives containers %s, the envoy-config volume and the sidecar.io/status annotation",
		len(patch), strings.Join(names, ", ")), nil
}
