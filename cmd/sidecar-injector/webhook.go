package main

import (
	"context"
	"errors"
)

func runWebhook(ctx context.Context, args []string, io stdio) error {
	return errors.New("webhook: not yet built")
}
