package need

import (
	"fmt"
	"strings"
	"testing"
)

// recorder is a T that records how the test would have ended.
type recorder struct {
	skipped, failed, logged string
}

func (r *recorder) Helper()           {}
func (r *recorder) Skip(args ...any)  { r.skipped = fmt.Sprint(args...) }
func (r *recorder) Fatal(args ...any) { r.failed = fmt.Sprint(args...) }
func (r *recorder) Log(args ...any)   { r.logged = fmt.Sprint(args...) }

func TestUnmetSkipsOrFails(t *testing.T) {
	for _, tc := range []struct {
		requireAll, ci string
		wantFail       bool
	}{
		{"", "", false},
		{"0", "false", false},
		{"1", "", true},
		{"true", "", true},
		{"", "true", true},
		{"", "1", true},
	} {
		t.Run(fmt.Sprintf("REQUIRE_ALL=%q,CI=%q", tc.requireAll, tc.ci), func(t *testing.T) {
			t.Setenv(RequireAllEnv, tc.requireAll)
			t.Setenv("CI", tc.ci)
			var r recorder
			Tools(&r, "apt-get install nothing", "go", "sidecar-injector-no-such-tool")
			got := r.skipped
			if tc.wantFail {
				got = r.failed
				if r.skipped != "" {
					t.Errorf("skipped under strict mode: %s", r.skipped)
				}
			} else if r.failed != "" {
				t.Errorf("failed outside strict mode: %s", r.failed)
			}
			if !strings.Contains(got, "missing sidecar-injector-no-such-tool in PATH; apt-get install nothing") {
				t.Errorf("message %q does not name the missing tool and how to install it", got)
			}
		})
	}
}

func TestToolsFound(t *testing.T) {
	var r recorder
	paths := Tools(&r, "", "go")
	if len(paths) != 1 || r.skipped != "" || r.failed != "" {
		t.Fatalf("Tools(go) = %q, skipped %q, failed %q", paths, r.skipped, r.failed)
	}
}

func TestWithoutLogsOrFails(t *testing.T) {
	for _, strict := range []bool{false, true} {
		t.Run(fmt.Sprint("strict=", strict), func(t *testing.T) {
			t.Setenv("CI", "")
			t.Setenv(RequireAllEnv, "")
			if strict {
				t.Setenv(RequireAllEnv, "1")
			}
			var r recorder
			Without(&r, "promtool not in PATH")
			if r.skipped != "" {
				t.Errorf("Without skipped the test: %s", r.skipped)
			}
			if got := map[bool]string{false: r.logged, true: r.failed}[strict]; !strings.Contains(got, "promtool not in PATH") {
				t.Errorf("strict=%v: logged %q, failed %q", strict, r.logged, r.failed)
			}
			if other := map[bool]string{false: r.failed, true: r.logged}[strict]; other != "" {
				t.Errorf("strict=%v: unexpected %q", strict, other)
			}
		})
	}
}
