package main

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

func TestExplainClusterRequested(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		args []string
		want bool
	}{
		{[]string{"--cluster"}, true},
		{[]string{"-cluster"}, true},
		{[]string{"-o", "json", "--cluster", "--kubeconfig", "k"}, true},
		{[]string{"--cluster=true"}, true},
		{[]string{"--cluster=false"}, false},
		{[]string{"-f", "deploy.yaml"}, false},
		{[]string{"-f", "cluster"}, false},
		{[]string{"--", "--cluster"}, false},
		{nil, false},
	} {
		if got := explainClusterRequested(tc.args); got != tc.want {
			t.Errorf("explainClusterRequested(%q) = %v, want %v", tc.args, got, tc.want)
		}
	}
}

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
	} {
		var stderr bytes.Buffer
		err := runExplainClusterCmd(t.Context(), tc.args, stdio{in: strings.NewReader(""), out: &bytes.Buffer{}, err: &stderr})
		if !errors.Is(err, errUsage) || !strings.Contains(stderr.String(), tc.want) {
			t.Errorf("%q: err %v, stderr %q; want a usage error saying %q", tc.args, err, stderr.String(), tc.want)
		}
	}
}
