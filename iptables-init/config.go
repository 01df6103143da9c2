package main

import (
	"flag"

	"github.com/sidecar-injector/sidecar-injector/pkg/redirect"
)

// Config is everything iptables-init is told on its command line.
type Config struct {
	Spec    redirect.Spec
	DryRun  bool // print the rules and the backend, change nothing
	Cleanup bool // remove our jumps and chains instead of installing them
}

// DefaultConfig installs the rules of a pod without settings.
func DefaultConfig() Config { return Config{Spec: redirect.DefaultSpec()} }

// AddFlags registers the flags of DESIGN.md "Command line".
func (c *Config) AddFlags(fs *flag.FlagSet) {
	c.Spec.AddFlags(fs)
	fs.BoolVar(&c.DryRun, "dry-run", c.DryRun, "print the iptables-restore input and the backend; change nothing")
	fs.BoolVar(&c.Cleanup, "cleanup", c.Cleanup, "remove our jumps and chains (only those) instead of installing them")
}

// Validate checks the spec; every problem names its flag.
func (c Config) Validate() error { return c.Spec.Validate() }
