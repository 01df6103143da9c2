package main

import (
	"strings"
	"testing"
)

// TestExplainClusterFlags: flag mistakes are usage errors naming the flag,
// before any cluster access.
func TestExplainClusterFlags(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--cluster", "-f", "x.yaml"}, "-f and --cluster exclude each other"},
		{[]string{"--cluster", "-o", "yaml"}, `-o "yaml": want text or json`},
		{[]string{"--cluster", "--config", "c.yaml", "--injector-configmap", "a/b"}, "exclude each other"},
		{[]string{"--cluster", "--injector-configmap", "nonamespace"}, "want NAMESPACE/NAME"},
		{[]string{"--cluster", "--namespace-labels", "a=b"}, "does not apply to --cluster"},
		{[]string{"-f", "-", "--injector-configmap", "a/b"}, "need --from-cluster"},
		{[]string{"-f", "-", "--from-cluster", "--namespace-labels", "a=b"}, "exclude each other"},
	} {
		code, out, stderr := runCLI(t, nil, append([]string{"explain"}, tc.args...)...)
		if code != 2 || out != "" || !strings.Contains(stderr, tc.want) {
			t.Errorf("%q: exit %d, stdout %q, stderr %q; want exit 2 and a usage error saying %q", tc.args, code, out, stderr, tc.want)
		}
	}
}
