package chart

import (
	"encoding/json"
	"os"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"
)

const filesDir = chartDir + "/files"

// kinds counts the rendered objects by kind.
func kinds(t *testing.T, manifests []byte) map[string][]object {
	t.Helper()
	m := map[string][]object{}
	for _, o := range split(t, manifests) {
		m[o.Kind] = append(m[o.Kind], o)
	}
	return m
}

// TestPrometheusRule: the PrometheusRule is files/rules.yaml as it is
// (the file promtool tests), except the latency threshold, which follows
// webhook.timeoutSeconds; it is rendered when the API exists or when asked.
func TestPrometheusRule(t *testing.T) {
	if n := len(kinds(t, render(t, ""))["PrometheusRule"]); n != 0 {
		t.Fatalf("%d PrometheusRules without the monitoring.coreos.com API: want none", n)
	}
	if n := len(kinds(t, render(t, "", "--api-versions", "monitoring.coreos.com/v1/PrometheusRule"))["PrometheusRule"]); n != 1 {
		t.Fatalf("%d PrometheusRules with the monitoring.coreos.com API: want 1", n)
	}
	if n := len(kinds(t, render(t, "", "--api-versions", "monitoring.coreos.com/v1/PrometheusRule", "--set", "prometheusRule.enabled=false"))["PrometheusRule"]); n != 0 {
		t.Fatalf("prometheusRule.enabled=false: %d PrometheusRules, want none", n)
	}
	src, err := os.ReadFile(filesDir + "/rules.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var want map[string]any
	if err := yaml.Unmarshal(src, &want); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		timeout, threshold string
	}{{"5", "4"}, {"10", "8"}, {"3", "2.4"}} {
		objs := kinds(t, render(t, "", "--set", "prometheusRule.enabled=true", "--set", "webhook.timeoutSeconds="+tc.timeout,
			"--set", "prometheusRule.labels.release=monitoring"))["PrometheusRule"]
		if len(objs) != 1 {
			t.Fatalf("prometheusRule.enabled=true: %d PrometheusRules, want 1", len(objs))
		}
		var pr struct {
			APIVersion string `json:"apiVersion"`
			Metadata   struct {
				Labels map[string]string `json:"labels"`
			} `json:"metadata"`
			Spec map[string]any `json:"spec"`
		}
		if err := yaml.Unmarshal(objs[0].Raw, &pr); err != nil {
			t.Fatal(err)
		}
		if pr.APIVersion != "monitoring.coreos.com/v1" || pr.Metadata.Labels["release"] != "monitoring" {
			t.Errorf("apiVersion %q, labels %v: want monitoring.coreos.com/v1 and the extra label", pr.APIVersion, pr.Metadata.Labels)
		}
		wantSpec, err := yaml.Marshal(want)
		if err != nil {
			t.Fatal(err)
		}
		wantText := strings.Replace(string(wantSpec), "> 4 # 0.8 * webhook.timeoutSeconds", "> "+tc.threshold+" # 0.8 * webhook.timeoutSeconds", 1)
		gotSpec, err := yaml.Marshal(pr.Spec)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(wantText, string(gotSpec)); diff != "" {
			t.Errorf("timeoutSeconds %s: PrometheusRule spec is not files/rules.yaml with threshold %s (-want +got):\n%s", tc.timeout, tc.threshold, diff)
		}
		if !strings.Contains(string(gotSpec), "> "+tc.threshold+" # 0.8") {
			t.Errorf("timeoutSeconds %s: latency threshold %s not in the rendered rules", tc.timeout, tc.threshold)
		}
	}
}

// TestDashboardConfigMap: off by default; when on, a ConfigMap labelled
// for the Grafana sidecar holding files/dashboard.json unchanged.
func TestDashboardConfigMap(t *testing.T) {
	for _, o := range kinds(t, render(t, ""))["ConfigMap"] {
		if strings.HasSuffix(o.Name, "-dashboard") {
			t.Fatalf("dashboard ConfigMap %s rendered by default: want it off", o.Name)
		}
	}
	var cm *corev1.ConfigMap
	for _, o := range kinds(t, render(t, "", "--set", "dashboard.enabled=true", "--set", "dashboard.namespace=monitoring",
		"--set-string", "dashboard.annotations.grafana_folder=Mesh"))["ConfigMap"] {
		if strings.HasSuffix(o.Name, "-dashboard") {
			cm = &corev1.ConfigMap{}
			if err := yaml.UnmarshalStrict(o.Raw, cm); err != nil {
				t.Fatal(err)
			}
		}
	}
	if cm == nil {
		t.Fatal("dashboard.enabled=true: no dashboard ConfigMap")
	}
	if cm.Namespace != "monitoring" || cm.Labels["grafana_dashboard"] != "1" || cm.Annotations["grafana_folder"] != "Mesh" {
		t.Errorf("dashboard ConfigMap namespace %q, labels %v, annotations %v", cm.Namespace, cm.Labels, cm.Annotations)
	}
	src, err := os.ReadFile(filesDir + "/dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	got := cm.Data["sidecar-injector.json"]
	if strings.TrimSpace(got) != strings.TrimSpace(string(src)) {
		t.Error("the ConfigMap's sidecar-injector.json is not files/dashboard.json")
	}
	if !json.Valid([]byte(got)) {
		t.Error("the ConfigMap's dashboard is not valid JSON")
	}
}
