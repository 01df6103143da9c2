package golden

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// errorT records Errorf.
type errorT struct {
	testing.TB
	errs []string
}

func (e *errorT) Helper()                        {}
func (e *errorT) Logf(string, ...any)            {}
func (e *errorT) Errorf(format string, _ ...any) { e.errs = append(e.errs, format) }
func (e *errorT) Fatalf(format string, _ ...any) { e.errs = append(e.errs, format) }

func TestOrphans(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	for _, n := range []string{"a.out.json", "b.out.json", "gone.out.json", "a.yaml"} {
		if err := os.WriteFile(filepath.Join(dir, n), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	glob := filepath.Join(dir, "*.out.json")
	want := []string{filepath.Join(dir, "a.out.json"), filepath.Join(dir, "b.out.json")}

	e := &errorT{}
	Orphans(e, false, glob, want)
	if len(e.errs) != 1 {
		t.Fatalf("errors %q, want one naming the orphan", e.errs)
	}
	if _, err := os.Stat(filepath.Join(dir, "gone.out.json")); err != nil {
		t.Fatalf("the orphan was removed without update: %v", err)
	}

	e = &errorT{}
	Orphans(e, false, glob, append(want, filepath.Join(dir, "gone.out.json")))
	if len(e.errs) != 0 {
		t.Fatalf("errors %q with every file wanted", e.errs)
	}

	e = &errorT{}
	Orphans(e, true, glob, want)
	if len(e.errs) != 0 {
		t.Fatalf("update: errors %q", e.errs)
	}
	left, _ := filepath.Glob(filepath.Join(dir, "*"))
	if got := strings.Join(left, " "); strings.Contains(got, "gone") || !strings.Contains(got, "a.yaml") {
		t.Errorf("after update: %s; want the orphan gone and other files kept", got)
	}
}
