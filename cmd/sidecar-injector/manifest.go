package main

import (
	"context"
	"errors"
)

func runInject(ctx context.Context, args []string, io stdio) error {
	return errors.New("inject: not yet built")
}

func runUninject(ctx context.Context, args []string, io stdio) error {
	return errors.New("uninject: not yet built")
}

func runExplain(ctx context.Context, args []string, io stdio) error {
	return errors.New("explain: not yet built")
}
