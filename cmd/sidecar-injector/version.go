package main

import (
	"context"
	"fmt"
	"runtime"

	"github.com/sidecar-injector/sidecar-injector/internal/version"
)

func runVersion(_ context.Context, args []string, io stdio) error {
	fs := newFlagSet("version", io)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	_, err := fmt.Fprintf(io.out, "sidecar-injector %s (%s, %s/%s)\n", version.Get(), runtime.Version(), runtime.GOOS, runtime.GOARCH)
	return err
}
