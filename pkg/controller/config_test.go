package controller

import (
	"flag"
	"io"
	"strings"
	"testing"
	"time"
)

func TestConfigFlags(t *testing.T) {
	t.Parallel()
	c := DefaultConfig()
	if err := c.Validate(); err != nil {
		t.Fatalf("defaults: %v", err)
	}
	fs := flag.NewFlagSet("webhook", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	c.AddFlags(fs)
	if err := fs.Parse([]string{"--resync=1m", "--field-manager=mesh-injector",
		"--namespace-selector=team in (a,b)", "--workers=4", "--owner-cluster-role=mesh-sidecar-injector-controller"}); err != nil {
		t.Fatal(err)
	}
	if c.Resync != time.Minute || c.FieldManager != "mesh-injector" || c.NamespaceSelector != "team in (a,b)" || c.Workers != 4 || c.OwnerClusterRole != "mesh-sidecar-injector-controller" {
		t.Errorf("parsed %+v", c)
	}
	if err := c.Validate(); err != nil {
		t.Errorf("valid flags refused: %v", err)
	}

	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--resync=1s"}, "--resync=1s"},
		{[]string{"--field-manager=has space"}, "--field-manager"},
		{[]string{"--field-manager="}, "--field-manager"},
		{[]string{"--namespace-selector=a in (b"}, "--namespace-selector"},
		{[]string{"--pod-field-selector=status.phase"}, "--pod-field-selector"},
		{[]string{"--workers=0"}, "--workers=0"},
		{[]string{"--owner-cluster-role=a/b"}, "--owner-cluster-role"},
		{[]string{"--leader-election-lease-duration=5s"}, "--leader-election-lease-duration=5s"},
		{[]string{"--leader-election-name="}, "--leader-election-name"},
		{[]string{"--health-address=8080"}, "--health-address"},
	} {
		c := DefaultAppConfig()
		fs := flag.NewFlagSet("webhook", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		c.AddFlags(fs)
		if err := fs.Parse(tc.args); err != nil {
			t.Fatal(err)
		}
		err := c.Validate()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: error %v, want one naming %s", tc.args, err, tc.want)
		}
	}
	if err := DefaultAppConfig().Validate(); err != nil {
		t.Errorf("the process defaults: %v", err)
	}
}
