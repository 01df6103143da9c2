package promtest

import (
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

type rulesFile struct {
	Groups []struct {
		Name  string `json:"name"`
		Rules []struct {
			Alert string `json:"alert"`
			Expr  string `json:"expr"`
		} `json:"rules"`
	} `json:"groups"`
}

// TestAlertRules: promtool checks the chart's alerts and runs their unit
// tests, which make each alert fire on a series that should trigger it
// and stay silent on one that should not; every alert has such a test,
// and every expression names only metrics we export.
func TestAlertRules(t *testing.T) {
	t.Parallel()
	raw, err := os.ReadFile(chartFile(t, "rules.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var rf rulesFile
	if err := yaml.Unmarshal(raw, &rf); err != nil {
		t.Fatalf("rules.yaml: %v", err)
	}
	exported := exportedMetrics(t)
	var alerts []string
	for _, g := range rf.Groups {
		for _, r := range g.Rules {
			alerts = append(alerts, r.Alert)
			names := metricNames(r.Expr)
			if len(names) == 0 {
				t.Errorf("alert %s selects no metric", r.Alert)
			}
			for _, n := range names {
				if !exported[n] {
					t.Errorf("alert %s: metric %s is not exported by the webhook, the xDS server or the controller", r.Alert, n)
				}
			}
		}
	}
	for _, want := range []string{
		"SidecarInjectorWebhookErrors", "SidecarInjectorWebhookSlow", "SidecarInjectorCertificateExpiring",
		"SidecarInjectorXDSNACKs", "SidecarInjectorStalePods",
	} {
		if !slices.Contains(alerts, want) {
			t.Errorf("no alert %s in rules.yaml", want)
		}
	}

	// Every alert is tested: it fires somewhere in rules_test.yaml, and a
	// silent case (exp_alerts: []) or a silent series exists for it.
	tests, err := os.ReadFile(chartFile(t, "rules_test.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range alerts {
		fires := regexp.MustCompile(`alertname: ` + a + `\n\s+exp_alerts:\n\s+- exp_labels`)
		if !fires.Match(tests) {
			t.Errorf("rules_test.yaml never expects %s to fire", a)
		}
	}

	promtool := tool(t, "promtool")
	dir := chartFile(t, "")
	out, err := run(t, nil, promtool, "check", "rules", dir+"/rules.yaml")
	if err != nil {
		t.Fatalf("promtool check rules: %v\n%s", err, out)
	}
	t.Logf("promtool check rules: %s", strings.TrimSpace(out))
	// promtool resolves rule_files relative to the test file.
	out, err = run(t, nil, promtool, "test", "rules", dir+"/rules_test.yaml")
	if err != nil {
		t.Fatalf("promtool test rules: %v\n%s", err, out)
	}
	if !strings.Contains(out, "SUCCESS") {
		t.Fatalf("promtool test rules did not report SUCCESS:\n%s", out)
	}
	t.Logf("promtool test rules: %s", strings.TrimSpace(out))
}
