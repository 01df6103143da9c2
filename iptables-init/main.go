// Command iptables-init is the init container that sends a pod's TCP
// traffic through its Envoy sidecar: it installs the nat rules that
// pkg/redirect builds from its flags, in one iptables-restore transaction
// per IP family, with the backend (nft or legacy) the pod's network
// namespace already uses.
//
// The rules (pkg/redirect) use REDIRECT in the nat table, TCP only: UDP,
// and so DNS over UDP, is never captured, and because REDIRECT is not
// TPROXY an application sees Envoy's connection from 127.0.0.1 (or the
// pod's own address), not the client's address. Envoy reads where a
// connection was going with SO_ORIGINAL_DST.
//
// --iptables-mode=auto uses the backend (nft or legacy) that already holds
// rules in the pod's network namespace, else nft when its nat table works,
// else legacy. --ipv6=auto applies the IPv6 rules when IPv6 is enabled in
// the namespace, and fails rather than leave IPv6 open when they cannot be
// applied. A re-run leaves the tables byte-identical; --cleanup removes our
// jumps and chains only; --dry-run prints the iptables-restore input and
// the backend without changing anything.
//
// Exit status: 0 done, 1 the rules could not be applied (one line on stderr
// says what is missing and how to fix it), 2 bad flags.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := mainArgs(ctx, os.Args[1:], hostSystem{}, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// mainArgs is main without the process: flags, validation, run, exit code.
func mainArgs(ctx context.Context, args []string, sys system, stdout, stderr io.Writer) int {
	cfg := DefaultConfig()
	fs := flag.NewFlagSet("iptables-init", flag.ContinueOnError)
	fs.SetOutput(io.Discard) // errors are one line, below; the usage only on -h
	cfg.AddFlags(fs)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(stderr, "Usage of iptables-init (DESIGN.md \"Command line\"):")
			fs.SetOutput(stderr)
			fs.PrintDefaults()
			return 0
		}
		fmt.Fprintf(stderr, "iptables-init: invalid flags: %v (see iptables-init -h)\n", err)
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "iptables-init: unexpected argument %q: every setting is a --flag=value\n", fs.Arg(0))
		return 2
	}
	if err := cfg.Validate(); err != nil {
		fmt.Fprintf(stderr, "iptables-init: invalid flags: %s\n", oneLine(err))
		return 2
	}
	if err := run(ctx, cfg, sys, stdout, newLogger(stderr)); err != nil {
		fmt.Fprintf(stderr, "iptables-init: %s\n", oneLine(err))
		return 1
	}
	return 0
}

// newLogger logs text on a terminal and JSON otherwise (in the cluster).
func newLogger(w io.Writer) *slog.Logger {
	if f, ok := w.(*os.File); ok {
		if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
			return slog.New(slog.NewTextHandler(w, nil))
		}
	}
	return slog.New(slog.NewJSONHandler(w, nil))
}
