package main

import (
	"context"
	"errors"
)

func runXDS(ctx context.Context, args []string, io stdio) error {
	return errors.New("xds: not yet built")
}
