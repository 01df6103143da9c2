package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/spf13/pflag"

	"github.com/sidecar-injector/sidecar-injector/internal/need"
	"github.com/sidecar-injector/sidecar-injector/pkg/inject"
)

// One test per numbered finding of the review of the offline CLI on real
// manifests (issue 14), each with an input of the shape that failed.

const podYAML = "apiVersion: v1\nkind: Pod\nmetadata: {name: %s}\nspec:\n  containers: [{name: app, image: app:1}]\n"

func pod(name string) string { return strings.Replace(podYAML, "%s", name, 1) }

func writeFiles(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// injectedNames returns the names of the injected objects of a YAML stream.
func injectedNames(t *testing.T, out string) []string {
	t.Helper()
	docs, err := inject.ReadDocuments([]byte(out))
	if err != nil {
		t.Fatalf("output does not parse: %v\n%s", err, out)
	}
	var names []string
	for _, d := range docs {
		b, _ := json.Marshal(d.Object)
		if strings.Contains(string(b), inject.StatusAnnotation) {
			var m struct{ Metadata struct{ Name string } }
			_ = json.Unmarshal(b, &m)
			names = append(names, m.Metadata.Name)
		}
	}
	return names
}

// Finding 1: several -f, directories and -R, standard input among them.
func TestFinding1SeveralFiles(t *testing.T) {
	dir := writeFiles(t, map[string]string{
		"a.yaml": pod("a"), "b.yml": pod("b"), "skip.txt": pod("txt"),
		"sub/c.json": `{"apiVersion":"v1","kind":"Pod","metadata":{"name":"c"},"spec":{"containers":[{"name":"app"}]}}`,
		"one.yaml":   pod("one"),
	})
	for _, tc := range []struct {
		name string
		args []string
		want []string
	}{
		{"two files", []string{"-f", filepath.Join(dir, "a.yaml"), "-f", filepath.Join(dir, "one.yaml")}, []string{"a", "one"}},
		{"file and stdin", []string{"-f", filepath.Join(dir, "a.yaml"), "-f", "-"}, []string{"a", "stdin"}},
		{"directory", []string{"-f", dir}, []string{"a", "b", "one"}},
		{"directory -R", []string{"-f", dir, "-R"}, []string{"a", "b", "one", "c"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, out, stderr := runCLI(t, []byte(pod("stdin")), append([]string{"inject"}, tc.args...)...)
			if code != 0 {
				t.Fatalf("exit %d: %s", code, stderr)
			}
			if diff := cmp.Diff(tc.want, injectedNames(t, out)); diff != "" {
				t.Errorf("injected objects (-want +got):\n%s", diff)
			}
		})
	}
	// explain and uninject take the same inputs.
	code, out, stderr := runCLI(t, nil, "explain", "-f", filepath.Join(dir, "a.yaml"), "-f", filepath.Join(dir, "b.yml"), "-o", "json")
	var ex []explanation
	if code != 0 || json.Unmarshal([]byte(out), &ex) != nil || len(ex) != 2 || ex[1].Source != filepath.Join(dir, "b.yml") {
		t.Errorf("explain of two files: exit %d, %d explanations\n%s%s", code, len(ex), out, stderr)
	}
	if code, _, stderr := runCLI(t, nil, "uninject", "-f", filepath.Join(dir, "nope")); code != 1 || !strings.Contains(stderr, "no such file") {
		t.Errorf("missing file: exit %d, %s", code, stderr)
	}
	if code, _, stderr := runCLI(t, nil, "inject", "-f", t.TempDir()); code != 1 || !strings.Contains(stderr, "has no .yaml") {
		t.Errorf("empty directory: exit %d, %s", code, stderr)
	}
}

// Finding 2: an audit namespace is reported, never patched, by inject too.
func TestFinding2AuditPatchesNothing(t *testing.T) {
	in := []byte(pod("p"))
	code, out, stderr := runCLI(t, in, "inject", "-f", "-", "--namespace-labels", "sidecar-injection=audit")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if strings.Contains(out, inject.StatusAnnotation) || strings.Contains(out, "envoy") {
		t.Errorf("audit namespace: the pod was changed:\n%s", out)
	}
	if !strings.Contains(stderr, "pod/p not changed: audit namespace (would be injected)") {
		t.Errorf("stderr %q: want the audit summary", stderr)
	}
	_, out, _ = runCLI(t, in, "explain", "-f", "-", "--namespace-labels", "sidecar-injection=audit")
	if !strings.Contains(out, "audit mode: reported only, not changed") {
		t.Errorf("explain: %s", out)
	}
}

// Finding 3: JSON or YAML by parsing, per document.
func TestFinding3JSONOrYAMLPerDocument(t *testing.T) {
	for name, in := range map[string]string{
		"flow-style YAML":       "{apiVersion: v1, kind: Pod, metadata: {name: flow}, spec: {containers: [{name: app, image: 'app:1'}]}}\n",
		"flow-style multi-line": "{apiVersion: v1, kind: Pod,\n  metadata: {name: flow},\n  # a comment\n  spec: {containers: [{name: app}]}}\n",
		"JSON then YAML":        `{"apiVersion":"v1","kind":"Pod","metadata":{"name":"flow"},"spec":{"containers":[{"name":"a"}]}}` + "\n---\n" + pod("yaml"),
		"YAML then JSON":        pod("yaml") + "---\n" + `{"apiVersion":"v1","kind":"Pod","metadata":{"name":"flow"},"spec":{"containers":[{"name":"a"}]}}`,
		"JSON stream":           `{"apiVersion":"v1","kind":"Pod","metadata":{"name":"flow"},"spec":{"containers":[{"name":"a"}]}}` + "\n" + `{"apiVersion":"v1","kind":"Pod","metadata":{"name":"yaml"},"spec":{"containers":[{"name":"a"}]}}`,
		"CRLF":                  strings.ReplaceAll("# Source: chart/templates/pod.yaml\n"+pod("flow")+"---\n"+pod("yaml"), "\n", "\r\n"),
	} {
		t.Run(name, func(t *testing.T) {
			code, out, stderr := runCLI(t, []byte(in), "inject", "-f", "-")
			if code != 0 {
				t.Fatalf("exit %d: %s", code, stderr)
			}
			names := injectedNames(t, out)
			if len(names) == 0 || !slices.Contains(names, "flow") && !slices.Contains(names, "yaml") {
				t.Errorf("injected %v\n%s", names, out)
			}
		})
	}
	// Trailing content after a flow-style document is an error, not dropped.
	code, _, stderr := runCLI(t, []byte("{apiVersion: v1, kind: Pod}\nkind: Service\n"), "inject", "-f", "-")
	if code != 1 || !strings.Contains(stderr, "document 1") {
		t.Errorf("flow document with trailing content: exit %d, %s", code, stderr)
	}
}

// Finding 4: Lists with null items and Lists inside Lists.
func TestFinding4Lists(t *testing.T) {
	in := `apiVersion: v1
kind: List
items:
- null
- apiVersion: v1
  kind: List
  items:
  - ` + strings.ReplaceAll(strings.TrimSpace(pod("inner")), "\n", "\n    ") + `
  - null
- apiVersion: v1
  kind: ConfigMapList
  items: null
`
	code, out, stderr := runCLI(t, []byte(in), "inject", "-f", "-", "-o", "json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if !strings.Contains(out, inject.StatusAnnotation) || !strings.Contains(stderr, "pod/inner injected") {
		t.Errorf("the pod inside the inner List was not injected:\n%s\n%s", out, stderr)
	}
	var l struct{ Items []json.RawMessage }
	if err := json.Unmarshal([]byte(out), &l); err != nil || len(l.Items) != 3 || string(l.Items[0]) != "null" {
		t.Errorf("null item not kept: %v\n%s", err, out)
	}
	_, out, _ = runCLI(t, []byte(in), "explain", "-f", "-", "-o", "json")
	var ex []explanation
	if err := json.Unmarshal([]byte(out), &ex); err != nil || len(ex) != 1 || *ex[0].Item != 1 || !slices.Equal(ex[0].Nested, []int{0}) {
		t.Errorf("explain of the nested List: %v\n%s", err, out)
	}
	// A typed list's items take their kind from it, as the apiserver reads them.
	typed := "apiVersion: apps/v1\nkind: DeploymentList\nitems:\n- metadata: {name: untyped}\n  spec:\n    template:\n      spec:\n        containers: [{name: app}]\n"
	code, out, stderr = runCLI(t, []byte(typed), "inject", "-f", "-")
	if code != 0 || !strings.Contains(stderr, "deployment/untyped injected") || strings.Contains(out, "kind: Deployment\n") {
		t.Errorf("DeploymentList item without kind: exit %d\n%s\n%s", code, stderr, out)
	}
	code, _, stderr = runCLI(t, []byte("kind: List\nitems: [3]\n"), "inject", "-f", "-")
	if code != 1 || !strings.Contains(stderr, "document 1 item 0: not an object (a number)") {
		t.Errorf("a number in a List: exit %d, %s", code, stderr)
	}
}

// Finding 5: uninject(inject(x)) == x with empty and null collections.
func TestFinding5EmptyCollectionsKept(t *testing.T) {
	in := `apiVersion: apps/v1
kind: Deployment
metadata: {name: helm}
spec:
  template:
    metadata:
      annotations: {}
      labels: {app: helm}
    spec:
      initContainers: []
      volumes: null
      containers: [{name: app, image: app:1}]
---
apiVersion: v1
kind: Pod
metadata: {name: p, annotations: null}
spec:
  volumes: []
  initContainers: null
  containers: [{name: app}]
---
apiVersion: batch/v1
kind: Job
metadata: {name: j}
spec:
  template:
    metadata: {}
    spec:
      restartPolicy: Never
      containers: [{name: app}]
`
	code, injected, stderr := runCLI(t, []byte(in), "inject", "-f", "-")
	if code != 0 {
		t.Fatalf("inject: exit %d: %s", code, stderr)
	}
	code, back, stderr := runCLI(t, []byte(injected), "uninject", "-f", "-")
	if code != 0 {
		t.Fatalf("uninject: exit %d: %s", code, stderr)
	}
	want, _ := inject.ReadDocuments([]byte(in))
	got, _ := inject.ReadDocuments([]byte(back))
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("uninject(inject(x)) != x (-x +got):\n%s", diff)
	}
	// Re-injection is a no-op.
	code, again, _ := runCLI(t, []byte(injected), "inject", "-f", "-")
	if code != 0 || again != injected {
		t.Errorf("inject(inject(x)) != inject(x)")
	}
}

// Finding 6: errors name the document, the object, the field path and the value.
func TestFinding6Errors(t *testing.T) {
	for name, tc := range map[string]struct{ in, want string }{
		"bad quantity": {"---\n" + pod("ok") + "---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {name: shop}\nspec:\n  template:\n    spec:\n      containers:\n      - {name: a}\n      - {name: b, resources: {limits: {cpu: 2 cores}}}\n",
			`document 2 (Deployment shop): spec.template.spec.containers[1].resources.limits.cpu: "2 cores": quantities must match`},
		"bad divisor": {"apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: shop}\nspec:\n  template:\n    spec:\n      containers:\n      - {name: a, env: [{name: CPU, valueFrom: {resourceFieldRef: {resource: limits.cpu, divisor: 2 cores}}}]}\n",
			`document 1 (Deployment shop): spec.template.spec.containers[0].env[0].valueFrom.resourceFieldRef.divisor: "2 cores": quantities must match`},
		"bad type": {"apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers: [{name: a}, {name: b, ports: [{containerPort: web}]}]\n",
			`document 1 (Pod p): spec.containers[1].ports[0].containerPort: "web": want an integer`},
		"corrupt status": {"apiVersion: v1\nkind: Pod\nmetadata: {name: p, annotations: {sidecar.io/status: '{bad'}}\nspec:\n  containers: [{name: a}]\n",
			`annotation sidecar.io/status: "{bad": not valid status JSON`},
		"refused template": {"apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\nspec:\n  template:\n    spec:\n      securityContext: {runAsUser: 1337}\n      containers: [{name: a}]\n",
			"document 1 (Deployment d): spec.template.spec.securityContext.runAsUser: container \"a\" would run as UID 1337"},
	} {
		t.Run(name, func(t *testing.T) {
			code, out, stderr := runCLI(t, []byte(tc.in), "inject", "-f", "-")
			if code != 1 || out != "" {
				t.Fatalf("exit %d, stdout %q", code, out)
			}
			if !strings.Contains(stderr, tc.want) {
				t.Errorf("stderr %q\nwant it to contain %q", stderr, tc.want)
			}
			if strings.Count(stderr, "annotation sidecar.io/status") > 1 {
				t.Errorf("the annotation is named twice: %q", stderr)
			}
		})
	}
}

// Finding 7: where no webhook entry selects the pod, explain says the
// webhook is not called, never "would be REFUSED".
func TestFinding7NotCalled(t *testing.T) {
	refusedIfCalled := "apiVersion: v1\nkind: Pod\nmetadata: {name: p, labels: {sidecar.io/inject: maybe}}\nspec:\n  securityContext: {runAsUser: 1337}\n  containers: [{name: a}]\n"
	for _, tc := range []struct{ labels, reason, why string }{
		{"sidecar-injection=disabled", "namespace_disabled", "the webhook is not called"},
		{"team=a", "not_opted_in", "the webhook is not called"},
	} {
		code, out, stderr := runCLI(t, []byte(refusedIfCalled), "explain", "-f", "-", "--namespace-labels", tc.labels)
		if code != 0 || strings.Contains(out, "REFUSED") || !strings.Contains(out, "the webhook is not called") ||
			!strings.Contains(out, tc.reason) || !strings.Contains(out, tc.why) {
			t.Errorf("%s: exit %d\n%s%s", tc.labels, code, out, stderr)
		}
		code, out, stderr = runCLI(t, []byte(refusedIfCalled), "inject", "-f", "-", "--namespace-labels", tc.labels)
		if code != 0 || strings.Contains(out, inject.StatusAnnotation) || !strings.Contains(stderr, "pod/p skipped: "+tc.reason) {
			t.Errorf("inject %s: exit %d\n%s", tc.labels, code, stderr)
		}
	}
	// A value outside enabled|disabled|audit: the chart's catch-all entry
	// is called and answers allowed, unchanged, with a warning naming it.
	code, out, stderr := runCLI(t, []byte(refusedIfCalled), "explain", "-f", "-", "--namespace-labels", "sidecar-injection=Enabled")
	if code != 0 || strings.Contains(out, "REFUSED") || !strings.Contains(out, "namespace_label_invalid") ||
		!strings.Contains(out, `namespace label sidecar-injection="Enabled" is invalid (valid: enabled, disabled, audit)`) {
		t.Errorf("sidecar-injection=Enabled: exit %d\n%s%s", code, out, stderr)
	}
	// In an enabled namespace the webhook is called and refuses it.
	_, out, _ = runCLI(t, []byte(refusedIfCalled), "explain", "-f", "-")
	if !strings.Contains(out, "REFUSED") {
		t.Errorf("enabled namespace: %s", out)
	}
}

// Finding 8: an app on Envoy's admin (9901) or stats (10090) port moves
// that port, as for inbound and outbound.
func TestFinding8AdminAndStatsMove(t *testing.T) {
	in := "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers: [{name: a, ports: [{containerPort: 9901}, {containerPort: 10090}, {containerPort: 10001}]}]\n"
	code, out, stderr := runCLI(t, []byte(in), "explain", "-f", "-", "-o", "json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var ex []explanation
	if err := json.Unmarshal([]byte(out), &ex); err != nil || len(ex) != 1 || ex[0].Status == nil {
		t.Fatalf("%v\n%s", err, out)
	}
	p := ex[0].Status.Ports
	for _, used := range []uint16{9901, 10090, 10001} {
		if slices.Contains([]uint16{p.Inbound, p.Outbound, p.Stats, p.Admin}, used) {
			t.Errorf("ports %+v: %d is the app's", p, used)
		}
	}
	if !strings.Contains(strings.Join(ex[0].Warnings, "\n"), "admin 9901→") {
		t.Errorf("warnings %q: want the admin move", ex[0].Warnings)
	}
}

// Finding 9: help on standard output when asked, help <command>,
// --version, completion, every flag in -h.
func TestFinding9CLIConventions(t *testing.T) {
	code, out, stderr := runCLI(t, nil, "inject", "-h")
	if code != 0 || stderr != "" || !strings.Contains(out, "-f, --filename") {
		t.Errorf("inject -h: exit %d, stdout %q, stderr %q", code, out, stderr)
	}
	code, out, _ = runCLI(t, nil, "help", "inject")
	if code != 0 || !strings.Contains(out, "-f, --filename") || !strings.Contains(out, "inject adds the sidecar") {
		t.Errorf("help inject: exit %d\n%s", code, out)
	}
	for _, server := range []string{"webhook", "xds"} {
		code, out, stderr = runCLI(t, nil, server, "-h")
		if code != 0 || stderr != "" || !strings.Contains(out, "-log-format") {
			t.Errorf("%s -h: exit %d, stdout %q, stderr %q", server, code, out, stderr)
		}
		code, out, _ = runCLI(t, nil, "help", server)
		if code != 0 || !strings.Contains(out, "-log-format") {
			t.Errorf("help %s: exit %d\n%s", server, code, out)
		}
	}
	for _, args := range [][]string{{"--version"}, {"version"}} {
		code, out, _ = runCLI(t, nil, args...)
		if code != 0 || !strings.HasPrefix(out, "sidecar-injector ") {
			t.Errorf("%v: exit %d, %q", args, code, out)
		}
	}
	// Every flag of every offline command is in its -h.
	root := newRootCmd(t.Context(), stdio{})
	for _, c := range root.Commands() {
		if c.DisableFlagParsing {
			continue
		}
		code, help, _ := runCLI(t, nil, c.Name(), "-h")
		if code != 0 {
			t.Errorf("%s -h: exit %d", c.Name(), code)
		}
		c.Flags().VisitAll(func(f *pflag.Flag) {
			if !strings.Contains(help, "--"+f.Name) {
				t.Errorf("%s -h does not show --%s", c.Name(), f.Name)
			}
		})
	}
	for _, shell := range []string{"bash", "zsh", "fish"} {
		code, out, _ = runCLI(t, nil, "completion", shell)
		if code != 0 || !strings.Contains(out, "sidecar-injector") {
			t.Errorf("completion %s: exit %d", shell, code)
		}
		if shell == "bash" {
			if _, err := exec.LookPath("bash"); err == nil {
				cmd := exec.Command("bash", "-n")
				cmd.Stdin = strings.NewReader(out)
				if b, err := cmd.CombinedOutput(); err != nil {
					t.Errorf("bash -n rejects the completion script: %v\n%s", err, b)
				}
			} else {
				need.Without(t, "bash not in PATH: the bash completion script is not syntax-checked (apt-get install bash)")
			}
		}
	}
}

// Finding 10: one summary line per workload, warnings once each with the
// behaviour-changing ones first, --quiet.
func TestFinding10Warnings(t *testing.T) {
	var b strings.Builder
	for i, name := range []string{"a", "b", "c", "d"} {
		if i > 0 {
			b.WriteString("---\n")
		}
		b.WriteString("apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: " + name + "}\nspec:\n  template:\n    spec:\n      securityContext: {runAsNonRoot: true}\n      containers: [{name: app}]\n")
	}
	b.WriteString("---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {name: shop}\nspec:\n  template:\n    spec:\n      securityContext: {runAsNonRoot: true}\n      containers: [{name: app, ports: [{containerPort: 10001}]}]\n")
	b.WriteString("---\napiVersion: batch/v1\nkind: Job\nmetadata: {name: x}\nspec:\n  template:\n    spec:\n      hostNetwork: true\n      containers: [{name: app}]\n")
	code, _, stderr := runCLI(t, []byte(b.String()), "inject", "-f", "-")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	lines := strings.Split(strings.TrimSpace(stderr), "\n")
	want := []string{
		"deployment/a injected (inbound 10001, outbound 10002, stats 10090, admin 9901)",
		"deployment/b injected (inbound 10001, outbound 10002, stats 10090, admin 9901)",
		"deployment/c injected (inbound 10001, outbound 10002, stats 10090, admin 9901)",
		"deployment/d injected (inbound 10001, outbound 10002, stats 10090, admin 9901)",
		"deployment/shop injected (inbound 10003, outbound 10002, stats 10090, admin 9901)",
		"job/x skipped: host_network",
		"warning: deployment/shop: proxy ports moved because the app uses them: inbound 10001→10003",
		"warning: deployment/a, deployment/b, deployment/c and 2 more: the pod sets runAsNonRoot: true; iptables-init still runs as root (UID 0) to program iptables",
	}
	if diff := cmp.Diff(want, lines); diff != "" {
		t.Errorf("stderr (-want +got):\n%s", diff)
	}
	code, out, stderr := runCLI(t, []byte(b.String()), "inject", "-f", "-", "--quiet")
	if code != 0 || stderr != "" || out == "" {
		t.Errorf("--quiet: exit %d, stderr %q", code, stderr)
	}
}
