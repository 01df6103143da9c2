package main

import (
	"bytes"
	"encoding/json"
	"os"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"sigs.k8s.io/yaml"

	"github.com/sidecar-injector/sidecar-injector/pkg/inject"
)

func runCLI(t *testing.T, stdin []byte, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = run(t.Context(), args, stdio{in: bytes.NewReader(stdin), out: &out, err: &errb})
	return code, out.String(), errb.String()
}

func TestInjectUninjectDeployment(t *testing.T) {
	input, err := os.ReadFile("testdata/deployment.yaml")
	if err != nil {
		t.Fatal(err)
	}
	code, out, stderr := runCLI(t, nil, "inject", "-f", "testdata/deployment.yaml", "-o", "json")
	if code != 0 {
		t.Fatalf("inject: exit %d: %s", code, stderr)
	}
	var d struct {
		Spec struct {
			Template struct {
				Metadata struct{ Annotations map[string]string }
				Spec     struct {
					InitContainers []struct {
						Name          string
						RestartPolicy string
					}
					Containers []struct{ Name string }
					Volumes    []struct {
						Name      string
						ConfigMap *struct{ Name string }
					}
				}
			}
		}
	}
	if err := json.Unmarshal([]byte(out), &d); err != nil {
		t.Fatalf("inject -o json output: %v\n%s", err, out)
	}
	spec := d.Spec.Template.Spec
	if len(spec.InitContainers) != 2 || spec.InitContainers[0].Name != inject.InitContainerName ||
		spec.InitContainers[1].Name != inject.ProxyContainerName || spec.InitContainers[1].RestartPolicy != "Always" {
		t.Errorf("init containers: %+v, want iptables-init then envoy as a native sidecar", spec.InitContainers)
	}
	if len(spec.Containers) != 2 {
		t.Errorf("containers: %+v, want the two app containers", spec.Containers)
	}
	if len(spec.Volumes) != 1 || spec.Volumes[0].Name != inject.ConfigVolumeName || spec.Volumes[0].ConfigMap.Name != inject.ConfigMapName {
		t.Errorf("volumes: %+v", spec.Volumes)
	}
	if _, ok := d.Spec.Template.Metadata.Annotations[inject.StatusAnnotation]; !ok {
		t.Error("no status annotation")
	}
	if !strings.Contains(stderr, "inbound 10001→10003") {
		t.Errorf("stderr %q: want the port-move warning", stderr)
	}

	code, back, stderr := runCLI(t, []byte(out), "uninject", "-f", "-", "-o", "yaml")
	if code != 0 {
		t.Fatalf("uninject: exit %d: %s", code, stderr)
	}
	var want, got any
	if err := yaml.Unmarshal(input, &want); err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal([]byte(back), &got); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("uninject(inject(x)) != x (-x +got):\n%s", diff)
	}
}

func TestManifestErrors(t *testing.T) {
	for _, tc := range []struct {
		name  string
		stdin string
		args  []string
		code  int
		want  string
	}{
		{"no -f", "", []string{"inject"}, 2, "-f is required"},
		{"bad -o", "", []string{"inject", "-f", "-", "-o", "xml"}, 2, `-o "xml"`},
		{"bad labels", "", []string{"inject", "-f", "-", "--namespace-labels", "a"}, 2, "want key=value"},
		{"missing file", "", []string{"inject", "-f", "testdata/nope.yaml"}, 1, "no such file"},
		{"bad yaml", "kind: Pod\n---\nkind: [\n", []string{"inject", "-f", "-"}, 1, "document 2"},
		{"bad field", "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers: [{name: a, ports: [{containerPort: x}]}]\n",
			[]string{"inject", "-f", "-"}, 1, "document 1 (Pod p)"},
		{"denied pod", "apiVersion: v1\nkind: Pod\nmetadata: {name: p, annotations: {sidecar.io/proxy-image: x}}\nspec:\n  containers: [{name: a}]\n",
			[]string{"inject", "-f", "-"}, 1, "annotation sidecar.io/proxy-image"},
		{"bad config", "", []string{"inject", "-f", "-", "--config", "testdata/deployment.yaml"}, 1, "unknown field"},
		{"unknown command", "", []string{"frobnicate"}, 2, "unknown command"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, out, stderr := runCLI(t, []byte(tc.stdin), tc.args...)
			if code != tc.code {
				t.Errorf("exit %d, want %d (stderr %q)", code, tc.code, stderr)
			}
			if out != "" {
				t.Errorf("stdout %q, want nothing on failure", out)
			}
			if !strings.Contains(stderr, tc.want) {
				t.Errorf("stderr %q, want it to contain %q", stderr, tc.want)
			}
		})
	}
}

func TestExplainCLI(t *testing.T) {
	pod := "apiVersion: v1\nkind: Pod\nmetadata: {name: p, labels: {sidecar.io/inject: \"false\"}}\nspec:\n  containers: [{name: a}]\n"
	code, out, stderr := runCLI(t, []byte(pod), "explain", "-f", "-", "-o", "json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var ex []inject.Explanation
	if err := json.Unmarshal([]byte(out), &ex); err != nil {
		t.Fatal(err)
	}
	if len(ex) != 1 || ex[0].Decision != inject.DecisionSkip || ex[0].Reason != inject.ReasonOptedOut {
		t.Fatalf("explain: %+v", ex)
	}
	code, out, _ = runCLI(t, []byte(pod), "explain", "-f", "-", "--namespace-labels", "team=a")
	if code != 0 || !strings.Contains(out, "would NOT be injected") || !strings.Contains(out, "opted_out") {
		t.Fatalf("explain text: exit %d\n%s", code, out)
	}
}

// RELIABILITY.md row 36 in the CLI: uninject of a workload whose
// sidecar.io/status the injector did not write (it lists another webhook's
// agent and the app container) removes nothing and prints the engine's
// warning naming the workload.
func TestUninjectForgedStatusWarns(t *testing.T) {
	t.Parallel()
	in := `apiVersion: apps/v1
kind: Deployment
metadata: {name: shop, namespace: prod}
spec:
  selector: {matchLabels: {app: shop}}
  template:
    metadata:
      labels: {app: shop}
      annotations:
        sidecar.io/status: '{"version":"v1","configHash":"0123456789abcdef","initContainers":["agent-init"],"containers":["security-agent","web"],"volumes":["agent-data"]}'
    spec:
      initContainers: [{name: agent-init, image: example/agent-init}]
      containers:
      - {name: web, image: example/web}
      - {name: security-agent, image: example/agent}
      volumes: [{name: agent-data, emptyDir: {}}]
`
	code, out, stderr := runCLI(t, []byte(in), "uninject", "-f", "-")
	if code != 0 {
		t.Fatalf("uninject: exit %d: %s", code, stderr)
	}
	want, _ := inject.ReadDocuments([]byte(in))
	got, _ := inject.ReadDocuments([]byte(out))
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("uninject changed a workload whose status is not the injector's (-in +out):\n%s", diff)
	}
	for _, s := range []string{
		"deployment/shop not changed",
		"warning: deployment/shop: ignored sidecar.io/status: it lists",
	} {
		if !strings.Contains(stderr, s) {
			t.Errorf("stderr lacks %q:\n%s", s, stderr)
		}
	}
	if code, _, stderr := runCLI(t, []byte(in), "uninject", "-q", "-f", "-"); code != 0 || stderr != "" {
		t.Errorf("uninject -q: exit %d, stderr %q; want 0 and nothing", code, stderr)
	}
}
