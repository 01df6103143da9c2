// Package golden keeps golden-file directories honest: a golden file that
// no test case produces any more is an orphan, and a stale orphan reads as
// a tested behaviour that nothing tests.
package golden

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// Orphans fails t for every file matching glob that is not in want (the
// golden files the test's cases check); with update it deletes them
// instead, so `-update` leaves exactly the files the cases produce.
func Orphans(t testing.TB, update bool, glob string, want []string) {
	t.Helper()
	files, err := filepath.Glob(glob)
	if err != nil {
		t.Fatalf("golden files %s: %v", glob, err)
	}
	keep := make(map[string]bool, len(want))
	for _, w := range want {
		keep[filepath.Clean(w)] = true
	}
	var orphans []string
	for _, f := range files {
		if keep[filepath.Clean(f)] {
			continue
		}
		if update {
			if err := os.Remove(f); err != nil {
				t.Fatalf("remove orphaned golden file: %v", err)
			}
			t.Logf("removed orphaned golden file %s", f)
			continue
		}
		orphans = append(orphans, f)
	}
	if len(orphans) > 0 {
		slices.Sort(orphans)
		t.Errorf("golden files that no test case checks: %s; delete them, or restore their cases (-update deletes them)",
			strings.Join(orphans, ", "))
	}
}
