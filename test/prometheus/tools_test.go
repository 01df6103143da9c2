// Package promtest checks what Prometheus sees of the injector with the
// real Prometheus tools (the Debian prometheus package: prometheus and
// promtool): a live scrape of a running webhook and xDS server configured
// from the chart's prometheus.io annotations, promtool check metrics on
// what they expose, promtool test rules on the chart's alerts, and the
// Grafana dashboard's queries against the metrics we export.
package promtest

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"

	"github.com/sidecar-injector/sidecar-injector/internal/need"
	"github.com/sidecar-injector/sidecar-injector/pkg/controller"
	"github.com/sidecar-injector/sidecar-injector/pkg/webhook"
	"github.com/sidecar-injector/sidecar-injector/pkg/xds"
	"github.com/sidecar-injector/sidecar-injector/test/testenv"
)

// installOnce runs hack/install-deps.sh at most once per test binary.
var installOnce sync.Once

// tool finds a Prometheus binary (prometheus or promtool). As root it
// installs the Debian prometheus package when missing; otherwise the test
// is skipped, loudly (fails under SIDECAR_INJECTOR_REQUIRE_ALL=1).
func tool(t *testing.T, name string) string {
	t.Helper()
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	if os.Geteuid() == 0 {
		installOnce.Do(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
			defer cancel()
			cmd := exec.CommandContext(ctx, filepath.Join(repoRoot(t), "hack", "install-deps.sh"))
			out, err := cmd.CombinedOutput()
			t.Logf("hack/install-deps.sh: %v\n%s", err, out)
		})
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
		t.Fatalf("%s not found even after hack/install-deps.sh (apt-get install prometheus): see its output above", name)
	}
	need.Unmet(t, "%s not found and not root: install the Debian prometheus package (sudo make deps, or apt-get install prometheus) to run this test", name)
	return ""
}

func repoRoot(t *testing.T) string {
	t.Helper()
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	root, err := testenv.FindRepoRoot(wd)
	if err != nil {
		t.Fatal(err)
	}
	return root
}

// run runs a tool with a time limit and returns its combined output.
func run(t *testing.T, stdin []byte, path string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, path, args...)
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// describer is a prometheus.Registerer that records the names of every
// metric a constructor registers, whether or not it has samples yet.
type describer struct {
	mu    sync.Mutex
	names map[string]bool
}

var fqName = regexp.MustCompile(`fqName: "([^"]+)"`)

func (d *describer) Register(c prometheus.Collector) error {
	ch := make(chan *prometheus.Desc, 64)
	go func() {
		c.Describe(ch)
		close(ch)
	}()
	d.mu.Lock()
	defer d.mu.Unlock()
	for desc := range ch {
		if m := fqName.FindStringSubmatch(desc.String()); m != nil {
			d.names[m[1]] = true
		}
	}
	return nil
}

func (d *describer) MustRegister(cs ...prometheus.Collector) {
	for _, c := range cs {
		_ = d.Register(c)
	}
}

func (d *describer) Unregister(prometheus.Collector) bool { return false }

// exportedMetrics are the names of every series the webhook, the xDS
// server and the controller can expose, built with their own NewMetrics
// constructors: metric names, plus _bucket, _sum and _count for histograms
// and summaries (known from a real registry).
func exportedMetrics(t *testing.T) map[string]bool {
	t.Helper()
	d := &describer{names: map[string]bool{}}
	webhook.NewMetrics(d)
	xds.NewMetrics(d)
	controller.NewMetrics(d)

	typed := map[string]bool{} // names whose type is known from samples
	for _, newMetrics := range []func(prometheus.Registerer){
		func(r prometheus.Registerer) { webhook.NewMetrics(r) },
		func(r prometheus.Registerer) { xds.NewMetrics(r) },
		func(r prometheus.Registerer) { controller.NewMetrics(r) },
	} {
		reg := prometheus.NewRegistry()
		newMetrics(reg)
		fams, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range fams {
			typed[f.GetName()] = true
			if f.GetType().String() == "HISTOGRAM" || f.GetType().String() == "SUMMARY" {
				for _, s := range []string{"_bucket", "_sum", "_count"} {
					d.names[f.GetName()+s] = true
				}
			}
		}
	}
	for n := range d.names {
		if !typed[n] && !strings.HasSuffix(n, "_bucket") && !strings.HasSuffix(n, "_sum") && !strings.HasSuffix(n, "_count") {
			// No samples yet (a vector nobody has set): its type is unknown,
			// so histogram suffixes are allowed too.
			for _, s := range []string{"_bucket", "_sum", "_count"} {
				d.names[n+s] = true
			}
		}
	}
	if len(d.names) < 20 {
		t.Fatalf("only %d metric names collected from the constructors: %v", len(d.names), slices.Sorted(func(yield func(string) bool) {
			for n := range d.names {
				if !yield(n) {
					return
				}
			}
		}))
	}
	return d.names
}

// PromQL words that are not metric names.
var promqlKeywords = map[string]bool{
	"and": true, "or": true, "unless": true, "bool": true, "offset": true, "by": true, "without": true,
	"on": true, "ignoring": true, "group_left": true, "group_right": true, "inf": true, "nan": true, "atan2": true,
}

var (
	quoted     = regexp.MustCompile(`"(?:[^"\\]|\\.)*"`)
	braces     = regexp.MustCompile(`\{[^{}]*\}`)
	brackets   = regexp.MustCompile(`\[[^\[\]]*\]`)
	grouping   = regexp.MustCompile(`\b(by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)`)
	comment    = regexp.MustCompile(`#[^\n]*`)
	identifier = regexp.MustCompile(`[a-zA-Z_:][a-zA-Z0-9_:]*`)
)

// metricNames returns the metric names a PromQL expression selects: every
// identifier that is not a function, an aggregation, a keyword, a label
// name inside braces or grouping clauses, or part of a duration or number.
func metricNames(expr string) []string {
	s := strings.ReplaceAll(expr, "$__rate_interval", "5m")
	s = strings.ReplaceAll(s, "$__interval", "1m")
	s = comment.ReplaceAllString(s, " ")
	s = quoted.ReplaceAllString(s, `""`)
	s = braces.ReplaceAllString(s, "{}")
	s = brackets.ReplaceAllString(s, "[]")
	s = grouping.ReplaceAllString(s, " ")
	var names []string
	for _, loc := range identifier.FindAllStringIndex(s, -1) {
		word := s[loc[0]:loc[1]]
		if loc[0] > 0 && (s[loc[0]-1] >= '0' && s[loc[0]-1] <= '9' || s[loc[0]-1] == '.') {
			continue // the unit of a number such as 5m, or an exponent
		}
		rest := strings.TrimLeft(s[loc[1]:], " \t\n")
		if strings.HasPrefix(rest, "(") || promqlKeywords[strings.ToLower(word)] {
			continue // a function or aggregation call, or a keyword
		}
		names = append(names, word)
	}
	return names
}

func TestMetricNames(t *testing.T) {
	t.Parallel()
	for expr, want := range map[string][]string{
		`sum by (result) (rate(sidecar_injector_admission_requests_total{result="error",reason=~"a|b"}[$__rate_interval]))`: {"sidecar_injector_admission_requests_total"},
		`histogram_quantile(0.99, sum by (le) (rate(x_bucket[5m]))) > 4 # 0.8 * webhook.timeoutSeconds`:                     {"x_bucket"},
		`min(a > 0) - time() < 7 * 86400`:                                 {"a"},
		`(sum(rate(a[1m])) or vector(0)) / on (job) group_left (x) b`:     {"a", "b"},
		`max by (state) (sidecar_injector_pods) unless ignoring(x) up`:    {"sidecar_injector_pods", "up"},
		`sum without (instance) (rate(c[5m] offset 1h)) * 1e3 + 2.5e-1`:   {"c"},
		`count(sidecar_injector_build_info{version!~"v0\\..*"}) > bool 1`: {"sidecar_injector_build_info"},
	} {
		if got := metricNames(expr); !slices.Equal(got, want) {
			t.Errorf("metricNames(%s) = %q, want %q", expr, got, want)
		}
	}
}

// TestControllerMetricsLint: promtool check metrics is clean on the
// controller's metrics (the live scrape covers the webhook's and the xDS
// server's; the controller runs only with a cluster).
func TestControllerMetricsLint(t *testing.T) {
	t.Parallel()
	promtool := tool(t, "promtool")
	reg := prometheus.NewRegistry()
	controller.NewMetrics(reg)
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	enc := expfmt.NewEncoder(&b, expfmt.NewFormat(expfmt.TypeTextPlain))
	for _, f := range fams {
		if err := enc.Encode(f); err != nil {
			t.Fatal(err)
		}
	}
	if len(fams) < 5 {
		t.Fatalf("%d metric families, want the controller's 5", len(fams))
	}
	if out, err := run(t, b.Bytes(), promtool, "check", "metrics"); err != nil || strings.TrimSpace(out) != "" {
		t.Errorf("promtool check metrics: %v\n%s\n%s", err, out, b.String())
	}
}
