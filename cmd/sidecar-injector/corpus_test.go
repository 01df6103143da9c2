package main

import (
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/sidecar-injector/sidecar-injector/internal/golden"
	"github.com/sidecar-injector/sidecar-injector/pkg/inject"
)

// injectedLine is a summary line saying a workload was injected.
var injectedLine = regexp.MustCompile(`(?m)^\S+ injected`)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/corpus/golden")

// versionField is the injector version inside the status and the Envoy
// node metadata: it depends on how the test binary was built.
var versionField = regexp.MustCompile(`(\\?"(?:version|injectorVersion)\\?":\\?")[^"\\]*`)

// TestCorpus runs the offline commands over the corpus of workload
// manifests of real-world shapes (Helm output, kustomize output, Lists,
// CRLF, flow style, JSON streams, operator bundles): inject matches its
// golden file, injecting the output again changes nothing, uninject gives
// the input back exactly (empty lists and maps included), and explain
// reports the same decision as inject for every workload.
func TestCorpus(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "corpus", "*.*"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 60 {
		t.Fatalf("%d manifests in testdata/corpus; want at least 60", len(files))
	}
	var outputs []string
	for _, file := range files {
		outputs = append(outputs, filepath.Join("testdata", "corpus", "golden", filepath.Base(file)+".injected.yaml"))
	}
	golden.Orphans(t, *update, filepath.Join("testdata", "corpus", "golden", "*"), outputs)
	workloads, injected := 0, 0
	for _, file := range files {
		name := filepath.Base(file)
		t.Run(name, func(t *testing.T) {
			input, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			code, out, stderr := runCLI(t, nil, "inject", "-f", file)
			if code != 0 {
				t.Fatalf("inject: exit %d: %s", code, stderr)
			}
			summary := lines(stderr, func(l string) bool { return !strings.HasPrefix(l, "warning: ") })
			workloads += len(summary)
			for _, l := range summary {
				if injectedLine.MatchString(l) {
					injected++
				}
			}

			golden := filepath.Join("testdata", "corpus", "golden", name+".injected.yaml")
			got := versionField.ReplaceAllString(out, "${1}VERSION")
			if *update {
				if err := os.MkdirAll(filepath.Dir(golden), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test ./cmd/sidecar-injector -run TestCorpus -update)", err)
			}
			if diff := cmp.Diff(string(want), got); diff != "" {
				t.Errorf("inject output differs from %s (-want +got):\n%s", golden, diff)
			}

			// Re-injection: nothing changes, nothing is reported as injected.
			code, again, stderr2 := runCLI(t, []byte(out), "inject", "-f", "-")
			if code != 0 || again != out {
				t.Errorf("inject(inject(x)) != inject(x): exit %d\n%s", code, stderr2)
			}
			if injectedLine.MatchString(stderr2) {
				t.Errorf("re-injection reported work:\n%s", stderr2)
			}

			// Uninject gives the input back, empties included.
			code, back, stderr3 := runCLI(t, []byte(out), "uninject", "-f", "-")
			if code != 0 {
				t.Fatalf("uninject: exit %d: %s", code, stderr3)
			}
			wantDocs, err := inject.ReadDocuments(input)
			if err != nil {
				t.Fatal(err)
			}
			gotDocs, err := inject.ReadDocuments([]byte(back))
			if err != nil {
				t.Fatal(err)
			}
			// Objects only: a comment-only document before the first object
			// numbers the documents of the input differently.
			if diff := cmp.Diff(objects(wantDocs), objects(gotDocs)); diff != "" {
				t.Errorf("uninject(inject(x)) != x (-x +got):\n%s", diff)
			}

			// Explain agrees with inject, workload by workload.
			code, exOut, stderr4 := runCLI(t, nil, "explain", "-f", file, "-o", "json")
			if code != 0 {
				t.Fatalf("explain: exit %d: %s", code, stderr4)
			}
			var ex []explanation
			if err := json.Unmarshal([]byte(exOut), &ex); err != nil {
				t.Fatal(err)
			}
			var said []string
			for _, e := range ex {
				said = append(said, summaryLine(e.Workload, e.Result))
			}
			if diff := cmp.Diff(summary, said); diff != "" {
				t.Errorf("explain (+) and inject (-) disagree:\n%s", diff)
			}
		})
	}
	t.Logf("%d files, %d workloads, %d injected", len(files), workloads, injected)
	if workloads < 60 {
		t.Errorf("%d workloads in the corpus; want at least 60", workloads)
	}
}

func lines(s string, keep func(string) bool) []string {
	var out []string
	for l := range strings.SplitSeq(strings.TrimSpace(s), "\n") {
		if l != "" && keep(l) {
			out = append(out, l)
		}
	}
	return out
}

func objects(docs []inject.Document) []any {
	out := make([]any, len(docs))
	for i, d := range docs {
		out[i] = d.Object
	}
	return out
}
