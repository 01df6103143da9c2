package inject

import (
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	jsonpatch "github.com/evanphx/json-patch/v5"
	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	"github.com/sidecar-injector/sidecar-injector/internal/golden"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/golden")

// goldenCase is one file testdata/golden/<name>.yaml.
type goldenCase struct {
	// Namespace the pod is created in; NamespaceLabels nil means the caller
	// (the webhook) decided the namespace part.
	Namespace       string            `json:"namespace"`
	NamespaceLabels map[string]string `json:"namespaceLabels"`
	// NativeSupported is the cluster's native sidecar support (nil: yes).
	NativeSupported *bool `json:"nativeSupported"`
	// Config is a partial injector config laid over the defaults.
	Config map[string]any `json:"config"`
	// PreInject injects the pod once before the case runs (already injected).
	PreInject bool `json:"preInject"`
	// Pod is the incoming pod, raw: it may carry fields our k8s.io/api lacks.
	Pod json.RawMessage `json:"pod"`
}

// goldenOutput is testdata/golden/<name>.out.json.
type goldenOutput struct {
	Decision Decision        `json:"decision"`
	Reason   Reason          `json:"reason"`
	Message  string          `json:"message"`
	Warnings []string        `json:"warnings,omitempty"`
	Audit    bool            `json:"audit,omitempty"`
	Status   *Status         `json:"status,omitempty"`
	Patch    Patch           `json:"patch"`
	Pod      json.RawMessage `json:"pod,omitempty"` // the input with the patch applied
}

const testVersion = "v0.0.0-test"

func loadCase(t *testing.T, path string) (goldenCase, *Injector) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var gc goldenCase
	if err := yaml.UnmarshalStrict(data, &gc); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	cfgDoc := map[string]any{"apiVersion": ConfigAPIVersion, "kind": ConfigKind}
	for k, v := range gc.Config {
		cfgDoc[k] = v
	}
	cfgJSON, err := json.Marshal(cfgDoc)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := LoadConfig(cfgJSON)
	if err != nil {
		t.Fatalf("%s: config: %v", path, err)
	}
	in, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return gc, in
}

func (gc goldenCase) overrides() Overrides {
	return Overrides{Namespace: gc.Namespace, NamespaceLabels: gc.NamespaceLabels, NativeSidecarSupported: gc.NativeSupported, InjectorVersion: testVersion}
}

func decodePod(t *testing.T, raw []byte) *corev1.Pod {
	t.Helper()
	pod, err := DecodePod(raw)
	if err != nil {
		t.Fatalf("decode pod: %v", err)
	}
	return pod
}

func applyPatch(t *testing.T, doc []byte, p Patch) []byte {
	t.Helper()
	wantEncodingJSON(t, p)
	pb, err := p.JSON()
	if err != nil {
		t.Fatal(err)
	}
	jp, err := jsonpatch.DecodePatch(pb)
	if err != nil {
		t.Fatalf("decode patch: %v", err)
	}
	out, err := jp.Apply(doc)
	if err != nil {
		t.Fatalf("apply patch %s: %v", pb, err)
	}
	return out
}

// normalize re-encodes JSON with sorted keys and indentation.
func normalize(t *testing.T, b []byte) []byte {
	t.Helper()
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("normalize: %v: %s", err, b)
	}
	return marshalIndent(t, v)
}

func marshalIndent(t *testing.T, v any) []byte {
	t.Helper()
	out, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestGolden(t *testing.T) {
	files, err := filepath.Glob("testdata/golden/*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 30 {
		t.Fatalf("found %d golden cases, want at least 30", len(files))
	}
	var outputs []string
	for _, file := range files {
		outputs = append(outputs, strings.TrimSuffix(file, ".yaml")+".out.json")
	}
	golden.Orphans(t, *update, "testdata/golden/*.out.json", outputs)
	for _, file := range files {
		name := strings.TrimSuffix(filepath.Base(file), ".yaml")
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			gc, in := loadCase(t, file)
			ov := gc.overrides()
			raw := []byte(gc.Pod)
			if gc.PreInject {
				res, err := in.Inject(decodePod(t, raw), ov)
				if err != nil || res.Decision != DecisionInject {
					t.Fatalf("pre-inject: %v %v", res.Decision, err)
				}
				raw = applyPatch(t, raw, res.Patch)
			}
			pod := decodePod(t, raw)
			before := pod.DeepCopy()
			res, err := in.Inject(pod, ov)
			if res.Reason.Decision() != res.Decision {
				t.Errorf("reason %s comes with decision %q, the engine decided %s", res.Reason, res.Reason.Decision(), res.Decision)
			}
			if (err != nil) != (res.Decision == DecisionDeny) {
				t.Fatalf("error %v with decision %s", err, res.Decision)
			}
			if err != nil {
				if _, ok := AsError(err); !ok {
					t.Fatalf("deny error %T is not an *Error", err)
				}
			}
			if diff := cmp.Diff(before, pod); diff != "" {
				t.Fatalf("Inject modified its input pod (-before +after):\n%s", diff)
			}

			got := goldenOutput{Decision: res.Decision, Reason: res.Reason, Message: res.Message, Warnings: res.Warnings, Audit: res.Audit, Status: res.Status, Patch: res.Patch}
			var patched []byte
			if len(res.Patch) > 0 {
				patched = applyPatch(t, raw, res.Patch)
				got.Pod = normalize(t, patched)
			}
			gotJSON, err := json.MarshalIndent(got, "", "  ")
			if err != nil {
				t.Fatal(err)
			}
			gotJSON = append(gotJSON, '\n')
			outFile := strings.TrimSuffix(file, ".yaml") + ".out.json"
			if *update {
				if err := os.WriteFile(outFile, gotJSON, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(outFile)
			if err != nil {
				t.Fatalf("%v (run go test ./pkg/inject -update)", err)
			}
			if diff := cmp.Diff(string(want), string(gotJSON)); diff != "" {
				t.Errorf("golden mismatch (-want +got); run go test ./pkg/inject -update if intended:\n%s", diff)
			}

			if res.Decision != DecisionInject {
				if len(res.Patch) != 0 {
					t.Errorf("decision %s with a non-empty patch", res.Decision)
				}
				return
			}
			// The typed result and the patch agree.
			if diff := cmp.Diff(res.Pod, decodePod(t, patched)); diff != "" {
				t.Errorf("Result.Pod differs from the patched pod (-result +patched):\n%s", diff)
			}
			// Injecting the output again is a no-op.
			again, err := in.Inject(decodePod(t, patched), ov)
			if err != nil || len(again.Patch) != 0 || again.Reason != ReasonAlreadyInjected {
				t.Errorf("inject(out): decision %s reason %s, %d ops, err %v; want an empty patch", again.Decision, again.Reason, len(again.Patch), err)
			}
			// Uninject gives the input back (the input without any older
			// injection, for re-injected pods).
			un, err := Uninject(decodePod(t, patched))
			if err != nil {
				t.Fatalf("uninject: %v", err)
			}
			back := applyPatch(t, patched, un.Patch)
			if res.Reason != ReasonReinjected {
				if diff := cmp.Diff(string(withoutEmpty(t, raw)), string(withoutEmpty(t, back))); diff != "" {
					t.Errorf("uninject(inject(x)) != x (-x +got):\n%s", diff)
				}
			} else {
				bp := decodePod(t, back)
				for _, c := range append(bp.Spec.InitContainers, bp.Spec.Containers...) {
					if c.Name == ProxyContainerName || c.Name == InitContainerName {
						t.Errorf("uninject of a re-injected pod left container %q", c.Name)
					}
				}
			}
		})
	}
}

// withoutEmpty normalizes JSON and drops empty arrays and objects, which
// Kubernetes treats as absent: uninject removes a list it emptied, while
// the input may have spelled it out as [].
func withoutEmpty(t *testing.T, b []byte) []byte {
	t.Helper()
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	var drop func(v any) (any, bool)
	drop = func(v any) (any, bool) {
		switch x := v.(type) {
		case map[string]any:
			for k, e := range x {
				if ne, empty := drop(e); empty {
					delete(x, k)
				} else {
					x[k] = ne
				}
			}
			return x, len(x) == 0
		case []any:
			return x, len(x) == 0
		}
		return v, false
	}
	v, _ = drop(v)
	return marshalIndent(t, v)
}
