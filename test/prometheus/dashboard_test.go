package promtest

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

func chartFile(t *testing.T, name string) string {
	t.Helper()
	return filepath.Join(repoRoot(t), "charts", "sidecar-injector", "files", name)
}

// panel is the part of a Grafana panel the test reads.
type panel struct {
	Title   string  `json:"title"`
	Type    string  `json:"type"`
	Panels  []panel `json:"panels"` // rows
	Targets []struct {
		Expr  string `json:"expr"`
		RefID string `json:"refId"`
	} `json:"targets"`
}

type query struct{ panel, expr string }

func dashboardQueries(t *testing.T) []query {
	t.Helper()
	raw, err := os.ReadFile(chartFile(t, "dashboard.json"))
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Title  string  `json:"title"`
		UID    string  `json:"uid"`
		Panels []panel `json:"panels"`
	}
	if err := json.Unmarshal(raw, &d); err != nil {
		t.Fatalf("dashboard.json does not parse: %v", err)
	}
	if d.Title == "" || d.UID == "" || len(d.Panels) == 0 {
		t.Fatalf("dashboard.json: title %q, uid %q, %d panels: want all three", d.Title, d.UID, len(d.Panels))
	}
	var qs []query
	var walk func([]panel)
	walk = func(ps []panel) {
		for _, p := range ps {
			walk(p.Panels)
			if p.Type == "row" {
				continue
			}
			if len(p.Targets) == 0 {
				t.Errorf("panel %q has no query", p.Title)
			}
			for _, tg := range p.Targets {
				if strings.TrimSpace(tg.Expr) == "" {
					t.Errorf("panel %q target %s: empty expression", p.Title, tg.RefID)
				}
				qs = append(qs, query{p.Title, tg.Expr})
			}
		}
	}
	walk(d.Panels)
	return qs
}

// TestDashboard: the Grafana dashboard parses, shows what operators look
// at, and every query names only metrics the webhook, the xDS server and
// the controller export; promtool checks each query's syntax.
func TestDashboard(t *testing.T) {
	t.Parallel()
	exported := exportedMetrics(t)
	qs := dashboardQueries(t)
	for _, q := range qs {
		names := metricNames(q.expr)
		if len(names) == 0 {
			t.Errorf("panel %q: %s selects no metric", q.panel, q.expr)
		}
		for _, n := range names {
			if !exported[n] {
				t.Errorf("panel %q: %s: metric %s is not exported by the webhook, the xDS server or the controller", q.panel, q.expr, n)
			}
		}
	}
	// What the issue asks the dashboard to show.
	for _, want := range []struct{ what, re string }{
		{"admission rate by result", `sum by \(result\) \(rate\(sidecar_injector_admission_requests_total`},
		{"admission rate by reason", `sum by \(reason\) \(rate\(sidecar_injector_admission_requests_total`},
		{"latency p50", `histogram_quantile\(0\.5, .*sidecar_injector_admission_duration_seconds_bucket`},
		{"latency p99", `histogram_quantile\(0\.99, .*sidecar_injector_admission_duration_seconds_bucket`},
		{"connected proxies", `sidecar_injector_xds_connected_proxies`},
		{"pushes", `rate\(sidecar_injector_xds_responses_total`},
		{"NACKs", `sidecar_injector_xds_requests_total\{result="nack"\}`},
		{"stale and missing pods", `by \(state\) \(sidecar_injector_pods\)`},
	} {
		re := regexp.MustCompile(want.re)
		found := false
		for _, q := range qs {
			found = found || re.MatchString(q.expr)
		}
		if !found {
			t.Errorf("the dashboard shows no %s (no query matching %s)", want.what, want.re)
		}
	}

	// Syntax: promtool parses every query as a recording rule.
	promtool := tool(t, "promtool")
	var rules []map[string]string
	for i, q := range qs {
		expr := strings.NewReplacer("$__rate_interval", "5m", "$__interval", "1m").Replace(q.expr)
		rules = append(rules, map[string]string{"record": fmt.Sprintf("dashboard:query_%d", i), "expr": expr})
	}
	file := filepath.Join(t.TempDir(), "dashboard-queries.yaml")
	b, err := yaml.Marshal(map[string]any{"groups": []any{map[string]any{"name": "dashboard", "rules": rules}}})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(file, b, 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := run(t, nil, promtool, "check", "rules", file); err != nil {
		t.Errorf("promtool check rules on the dashboard's queries: %v\n%s", err, out)
	} else {
		t.Logf("promtool: %d dashboard queries parse: %s", len(qs), strings.TrimSpace(out))
	}
}
