// Package need is how a test says it needs root, a tool or a kernel
// feature. On a developer's machine an unmet need skips the test, loudly;
// in CI (SIDECAR_INJECTOR_REQUIRE_ALL=1, or CI=true) it fails the test, so
// a suite cannot pass by skipping what it was meant to run.
package need

import (
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
)

// RequireAllEnv names the variable that turns an unmet need into a failure.
const RequireAllEnv = "SIDECAR_INJECTOR_REQUIRE_ALL"

// T is the part of testing.TB this package uses.
type T interface {
	Helper()
	Skip(args ...any)
	Fatal(args ...any)
	Log(args ...any)
}

// Strict reports whether unmet needs fail: SIDECAR_INJECTOR_REQUIRE_ALL or
// CI set to a true value (1, true, ...).
func Strict() bool {
	return truthy(os.Getenv(RequireAllEnv)) || truthy(os.Getenv("CI"))
}

func truthy(s string) bool {
	b, err := strconv.ParseBool(strings.TrimSpace(s))
	return err == nil && b
}

// Unmet ends the test for a need the machine does not meet: what is
// missing and how to get it. It fails under Strict, else skips.
func Unmet(t T, format string, args ...any) {
	t.Helper()
	if msg, fatal := unmet(t, "SKIPPED", format, args); !fatal {
		t.Skip(msg)
	}
}

// Without is for a need that only part of a test depends on: under Strict
// it fails the test; else it logs, loudly, that the part is not checked
// and the test goes on without it.
func Without(t T, format string, args ...any) {
	t.Helper()
	if msg, fatal := unmet(t, "SKIPPED ASSERTION", format, args); !fatal {
		t.Log(msg)
	}
}

// unmet fails t under Strict; else it prints the message to stderr (seen
// without -v) and returns it for the caller's skip or log.
func unmet(t T, what, format string, args []any) (string, bool) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if Strict() {
		t.Fatal("UNMET NEED (" + RequireAllEnv + "=1 or CI=true turns skips into failures): " + msg)
		return "", true
	}
	fmt.Fprintln(os.Stderr, "*** "+what+": "+msg)
	return what + ": " + msg + " (set " + RequireAllEnv + "=1 to make this a failure)", false
}

// Root ends the test unless it runs as root; why says what root is for.
func Root(t T, why string) {
	t.Helper()
	if os.Geteuid() != 0 {
		Unmet(t, "needs root to %s; run `make test` as root", why)
	}
}

// Tools returns the paths of the named executables, in order, or ends the
// test naming every one that is missing and how to install it.
func Tools(t T, install string, names ...string) []string {
	t.Helper()
	paths := make([]string, 0, len(names))
	var missing []string
	for _, n := range names {
		p, err := exec.LookPath(n)
		if err != nil {
			missing = append(missing, n)
			continue
		}
		paths = append(paths, p)
	}
	if len(missing) > 0 {
		Unmet(t, "missing %s in PATH; %s", strings.Join(missing, ", "), install)
	}
	return paths
}

// GoDeps returns the import paths pkg (a pattern for go list, relative to
// the test's directory) links, or ends the test if Go is missing or go list
// fails.
func GoDeps(t T, pkg string) []string {
	t.Helper()
	goTool := Tools(t, "install Go", "go")[0]
	out, err := exec.Command(goTool, "list", "-deps", pkg).CombinedOutput()
	if err != nil {
		t.Fatal(fmt.Sprintf("go list -deps %s: %v\n%s", pkg, err, out))
	}
	return strings.Fields(string(out))
}
