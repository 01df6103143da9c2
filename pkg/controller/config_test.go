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
	if err := fs.Parse([]string{"--controller-resync=1m", "--controller-field-manager=mesh-injector",
		"--controller-namespace-selector=team in (a,b)", "--controller-workers=4"}); err != nil {
		t.Fatal(err)
	}
	if c.Resync != time.Minute || c.FieldManager != "mesh-injector" || c.NamespaceSelector != "team in (a,b)" || c.Workers != 4 || !c.Enabled {
		t.Errorf("parsed %+v", c)
	}
	if err := c.Validate(); err != nil {
		t.Errorf("valid flags refused: %v", err)
	}

	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--controller-resync=1s"}, "--controller-resync=1s"},
		{[]string{"--controller-field-manager=has space"}, "--controller-field-manager"},
		{[]string{"--controller-field-manager="}, "--controller-field-manager"},
		{[]string{"--controller-namespace-selector=a in (b"}, "--controller-namespace-selector"},
		{[]string{"--controller-pod-field-selector=status.phase"}, "--controller-pod-field-selector"},
		{[]string{"--controller-workers=0"}, "--controller-workers=0"},
	} {
		c := DefaultConfig()
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
	off := DefaultConfig()
	off.Enabled, off.Workers = false, 0
	if err := off.Validate(); err != nil {
		t.Errorf("--controller=false needs nothing else: %v", err)
	}
}
