package main

import (
	"context"

	"github.com/sidecar-injector/sidecar-injector/internal/webhookcmd"
)

// runWebhook is `sidecar-injector webhook`: the same server, flags and
// behaviour as the lean sidecar-injector-webhook binary the chart runs.
func runWebhook(ctx context.Context, args []string, io stdio) error {
	return webhookcmd.Run(ctx, "sidecar-injector webhook", args, io.out, io.err)
}
