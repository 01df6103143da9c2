package inject

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"
)

// FuzzInject feeds arbitrary pod JSON through the engine. Whatever the
// input: no panic; a returned patch applies to the raw input; injecting the
// result again is a no-op; uninject applies too.
func FuzzInject(f *testing.F) {
	files, _ := filepath.Glob("testdata/golden/*.yaml")
	for _, file := range files {
		data, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		var gc goldenCase
		if err := yaml.Unmarshal(data, &gc); err != nil {
			f.Fatal(err)
		}
		f.Add([]byte(gc.Pod), uint8(0))
		f.Add([]byte(gc.Pod), uint8(1))
	}
	bench, err := os.ReadFile("testdata/bench/pod-3-containers.json")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(bench, uint8(2))

	in, err := New(DefaultConfig())
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, raw []byte, mode uint8) {
		pod, err := DecodePod(raw)
		if err != nil {
			return
		}
		// The patch paths need a metadata object, which every pod the
		// apiserver sends has (the webhook refuses one without it, and
		// EachPod adds it to pod templates).
		var top map[string]json.RawMessage
		if json.Unmarshal(raw, &top) != nil || len(top["metadata"]) == 0 || top["metadata"][0] != '{' {
			return
		}
		ov := Overrides{Namespace: pod.Namespace}
		switch mode % 4 {
		case 1:
			ov.NamespaceLabels = map[string]string{NamespaceLabel: "enabled"}
		case 2:
			ov.NamespaceLabels = map[string]string{}
		case 3:
			no := false
			ov.NativeSidecarSupported = &no
		}
		res, err := in.Inject(pod, ov)
		if (err != nil) != (res.Decision == DecisionDeny) {
			t.Fatalf("error %v with decision %q", err, res.Decision)
		}
		if res.Decision != DecisionInject {
			if len(res.Patch) != 0 {
				t.Fatalf("decision %s with %d patch ops", res.Decision, len(res.Patch))
			}
			return
		}
		wantEncodingJSON(t, res.Patch)
		out, err := ApplyPatch(raw, res.Patch)
		if err != nil {
			pb, _ := res.Patch.JSON()
			t.Fatalf("patch does not apply: %v\npatch: %s", err, pb)
		}
		again, err := DecodePod(out)
		if err != nil {
			t.Fatalf("patched pod does not decode: %v", err)
		}
		res2, err := in.Inject(again, ov)
		if err != nil || len(res2.Patch) != 0 {
			t.Fatalf("inject(inject(x)): %s %s, %d ops, %v", res2.Decision, res2.Reason, len(res2.Patch), err)
		}
		un, err := Uninject(again)
		if err != nil {
			t.Fatalf("uninject: %v", err)
		}
		if _, err := ApplyPatch(out, un.Patch); err != nil {
			t.Fatalf("uninject patch does not apply: %v", err)
		}
	})
}

func BenchmarkInject(b *testing.B) {
	raw, err := os.ReadFile("testdata/bench/pod-3-containers.json")
	if err != nil {
		b.Fatal(err)
	}
	in := mustInjector(b, nil)
	ov := Overrides{Namespace: "payments", InjectorVersion: "bench"}
	b.Run("engine", func(b *testing.B) {
		var pod corev1.Pod
		if err := json.Unmarshal(raw, &pod); err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		for b.Loop() {
			res, err := in.Inject(&pod, ov)
			if err != nil || len(res.Patch) == 0 {
				b.Fatal(res.Decision, err)
			}
		}
	})
	// The patch's JSON as the webhook writes it, and as encoding/json
	// alone would (the reference its bytes equal).
	var pod corev1.Pod
	if err := json.Unmarshal(raw, &pod); err != nil {
		b.Fatal(err)
	}
	res, err := in.Inject(&pod, ov)
	if err != nil {
		b.Fatal(err)
	}
	wantEncodingJSON(b, res.Patch)
	b.Run("patch-json", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := res.Patch.JSON(); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("patch-json=encoding-json", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := json.Marshal([]PatchOp(res.Patch)); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("decode+engine+patch-json", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var pod corev1.Pod
			if err := json.Unmarshal(raw, &pod); err != nil {
				b.Fatal(err)
			}
			res, err := in.Inject(&pod, ov)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := res.Patch.JSON(); err != nil {
				b.Fatal(err)
			}
		}
	})
}
