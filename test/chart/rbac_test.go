package chart

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	rbacv1 "k8s.io/api/rbac/v1"
	"sigs.k8s.io/yaml"
)

// rbacObjects renders the chart and returns its Roles and ClusterRoles
// (rules by object) and its bindings (subjects by role name).
func rbacObjects(t *testing.T, extra ...string) (map[string][]rbacv1.PolicyRule, map[string][]rbacv1.Subject) {
	t.Helper()
	rules := map[string][]rbacv1.PolicyRule{}
	subjects := map[string][]rbacv1.Subject{}
	for _, o := range split(t, render(t, "", extra...)) {
		switch o.Kind {
		case "Role", "ClusterRole":
			var r rbacv1.ClusterRole // a Role has the same rules field
			if err := yaml.UnmarshalStrict(o.Raw, &r); err != nil {
				t.Fatalf("%s %s: %v", o.Kind, o.Name, err)
			}
			rules[o.Kind+"/"+o.Name] = r.Rules
		case "RoleBinding", "ClusterRoleBinding":
			var b rbacv1.ClusterRoleBinding
			if err := yaml.UnmarshalStrict(o.Raw, &b); err != nil {
				t.Fatalf("%s %s: %v", o.Kind, o.Name, err)
			}
			subjects[b.RoleRef.Kind+"/"+b.RoleRef.Name] = append(subjects[b.RoleRef.Kind+"/"+b.RoleRef.Name], b.Subjects...)
		}
	}
	return rules, subjects
}

// TestRBACNoWildcards: no rendered Role or ClusterRole grants "*" in any
// field, under any value set the tests use.
func TestRBACNoWildcards(t *testing.T) {
	sets, err := filepath.Glob("testdata/values/*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	roles := 0
	for _, file := range sets {
		for _, o := range split(t, render(t, file)) {
			if o.Kind != "Role" && o.Kind != "ClusterRole" {
				continue
			}
			roles++
			var r rbacv1.ClusterRole
			if err := yaml.UnmarshalStrict(o.Raw, &r); err != nil {
				t.Fatalf("%s: %s %s: %v", file, o.Kind, o.Name, err)
			}
			if r.AggregationRule != nil {
				t.Errorf("%s: %s %s aggregates other roles: its rules are not visible here", file, o.Kind, o.Name)
			}
			for i, rule := range r.Rules {
				for field, values := range map[string][]string{
					"apiGroups": rule.APIGroups, "resources": rule.Resources, "verbs": rule.Verbs,
					"resourceNames": rule.ResourceNames, "nonResourceURLs": rule.NonResourceURLs,
				} {
					for _, v := range values {
						if strings.Contains(v, "*") {
							t.Errorf("%s: %s %s rule %d: %s has wildcard %q", file, o.Kind, o.Name, i, field, v)
						}
					}
				}
				if len(rule.Verbs) == 0 || len(rule.Resources) == 0 {
					t.Errorf("%s: %s %s rule %d: want explicit verbs and resources, got %+v", file, o.Kind, o.Name, i, rule)
				}
			}
		}
	}
	if roles == 0 {
		t.Fatal("no Role or ClusterRole rendered: the controller's RBAC is missing")
	}
}

// TestRBACRules holds the controller's rules to a golden file, so that any
// new permission is a reviewed diff (go test ./test/chart -update), and
// checks who is bound to them: the webhook's ServiceAccount only (the xDS
// server needs no API access).
func TestRBACRules(t *testing.T) {
	rules, subjects := rbacObjects(t)
	got, err := yaml.Marshal(rules)
	if err != nil {
		t.Fatal(err)
	}
	golden := filepath.Join("testdata", "rbac", "rules.yaml")
	if *update {
		if err := os.MkdirAll(filepath.Dir(golden), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(golden, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (go test ./test/chart -update)", err)
	}
	if diff := cmp.Diff(string(want), string(got)); diff != "" {
		t.Errorf("RBAC rules changed (-want +got); go test ./test/chart -update if intended:\n%s", diff)
	}

	webhookRole := "ClusterRole/" + release + "-sidecar-injector-webhook"
	controllerRole := "ClusterRole/" + release + "-sidecar-injector-controller"
	for role, sa := range map[string]string{webhookRole: "webhook", controllerRole: "controller"} {
		want := []rbacv1.Subject{{Kind: "ServiceAccount", Name: release + "-sidecar-injector-" + sa, Namespace: namespace}}
		if diff := cmp.Diff(want, subjects[role]); diff != "" {
			t.Errorf("subjects of %s (-want +got):\n%s", role, diff)
		}
	}
	for r, s := range subjects {
		for _, sub := range s {
			if strings.Contains(sub.Name, "-xds") {
				t.Errorf("%s is bound to %s: the xDS server needs no API access", r, sub.Name)
			}
		}
	}
	// The webhook serves unauthenticated endpoints: read-only.
	for _, rule := range rules[webhookRole] {
		for _, v := range rule.Verbs {
			if v != "get" && v != "list" && v != "watch" {
				t.Errorf("the webhook's ClusterRole grants %q on %v: want get, list and watch only", v, rule.Resources)
			}
		}
	}
	// Writes to ConfigMaps other than envoy-config are limited to create,
	// which Kubernetes cannot limit by name.
	for _, rule := range rules[controllerRole] {
		if slices.Contains(rule.Resources, "configmaps") && !slices.Contains(rule.ResourceNames, "envoy-config") {
			if diff := cmp.Diff([]string{"create"}, rule.Verbs); diff != "" {
				t.Errorf("configmaps rule without resourceNames: verbs (-want +got):\n%s", diff)
			}
		}
	}

	// controller.enabled=false: the webhook's read-only role only.
	off, offSubjects := rbacObjects(t, "--set", "controller.enabled=false")
	if len(off) != 1 || off[webhookRole] == nil || len(offSubjects) != 1 {
		t.Errorf("controller.enabled=false renders RBAC %v %v: want the webhook's only", off, offSubjects)
	}
}
