package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"github.com/sidecar-injector/sidecar-injector/pkg/redirect"
)

// system is everything iptables-init needs from the machine: the iptables
// binaries and two kernel facts. The real one is hostSystem; tests of the
// decision logic use a fake.
type system interface {
	// LookPath reports whether an executable is installed (nil) or not.
	LookPath(name string) error
	// Run runs an executable with stdin and returns its standard output;
	// a failure is a *toolError.
	Run(ctx context.Context, name string, args []string, stdin []byte) ([]byte, error)
	// IPv6 says whether IPv6 is on in this network namespace.
	IPv6() (ipv6State, error)
	// Caps returns the effective capabilities of this process.
	Caps() (capSet, error)
}

type ipv6State int

const (
	ipv6Absent   ipv6State = iota // the kernel has no IPv6 (ipv6.disable=1 or no module)
	ipv6Disabled                  // net.ipv6.conf.all.disable_ipv6 = 1
	ipv6Enabled
)

// capSet is a capability bit mask as /proc/self/status prints it.
type capSet uint64

const (
	capNetAdmin = 12
	capNetRaw   = 13
)

func (c capSet) has(bit int) bool { return c&(1<<bit) != 0 }

// tool returns the executable of one backend and family: kind is "" (the
// iptables command), "save" or "restore".
func tool(mode redirect.Mode, f redirect.Family, kind string) string {
	name := "iptables"
	if f == redirect.IPv6 {
		name = "ip6tables"
	}
	name += "-" + string(mode)
	if kind != "" {
		name += "-" + kind
	}
	return name
}

// toolTimeout bounds every iptables command; they take milliseconds.
const toolTimeout = 30 * time.Second

type hostSystem struct{}

func (hostSystem) LookPath(name string) error {
	_, err := exec.LookPath(name)
	return err
}

func (hostSystem) Run(ctx context.Context, name string, args []string, stdin []byte) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, toolTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdin = bytes.NewReader(stdin)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			err = fmt.Errorf("%w (gave up after %s)", ctx.Err(), toolTimeout)
		}
		return nil, &toolError{Tool: name, Args: args, Output: stderr.String() + stdout.String(), Err: err}
	}
	return stdout.Bytes(), nil
}

const disableIPv6Path = "/proc/sys/net/ipv6/conf/all/disable_ipv6"

func (hostSystem) IPv6() (ipv6State, error) {
	b, err := os.ReadFile(disableIPv6Path)
	if errors.Is(err, fs.ErrNotExist) {
		return ipv6Absent, nil
	}
	if err != nil {
		return 0, fmt.Errorf("read %s to see whether IPv6 is on: %w", disableIPv6Path, err)
	}
	switch strings.TrimSpace(string(b)) {
	case "0":
		return ipv6Enabled, nil
	case "1":
		return ipv6Disabled, nil
	}
	return 0, fmt.Errorf("read %s: unexpected value %q", disableIPv6Path, strings.TrimSpace(string(b)))
}

func (hostSystem) Caps() (capSet, error) {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0, fmt.Errorf("read capabilities: %w", err)
	}
	defer f.Close()
	return parseCapEff(f)
}

func parseCapEff(r io.Reader) (capSet, error) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "CapEff:"); ok {
			n, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			if err != nil {
				return 0, fmt.Errorf("read capabilities: CapEff %q: %w", strings.TrimSpace(v), err)
			}
			return capSet(n), nil
		}
	}
	if err := sc.Err(); err != nil {
		return 0, fmt.Errorf("read capabilities: %w", err)
	}
	return 0, errors.New("read capabilities: no CapEff line in /proc/self/status")
}

// toolError is a failed iptables command, with what it printed.
type toolError struct {
	Tool   string
	Args   []string
	Output string
	Err    error
}

func (e *toolError) Unwrap() error { return e.Err }

// Error is one line: what failed, the likely cause and how to fix it.
func (e *toolError) Error() string {
	cmd := strings.TrimSpace(e.Tool + " " + strings.Join(e.Args, " "))
	out := firstLines(e.Output)
	if hint := diagnose(e.Tool, e.Output); hint != "" {
		return fmt.Sprintf("%s failed: %s (%s: %s)", cmd, hint, e.Err, out)
	}
	if out == "" {
		return fmt.Sprintf("%s failed: %v", cmd, e.Err)
	}
	return fmt.Sprintf("%s failed: %v: %s", cmd, e.Err, out)
}

// diagnose turns what an iptables tool printed into the missing piece and
// its fix, or "" when it does not recognise the failure.
func diagnose(tool, output string) string {
	legacy := strings.Contains(tool, "legacy")
	has := func(subs ...string) bool {
		for _, s := range subs {
			if strings.Contains(output, s) {
				return true
			}
		}
		return false
	}
	switch {
	case has("you must be root", "Permission denied", "Operation not permitted"):
		return "permission denied: the iptables-init container needs capabilities NET_ADMIN and NET_RAW (securityContext.capabilities.add) and to run as UID 0"
	case has("Another app is currently holding the xtables lock"):
		return "another program holds the xtables lock; retry, or find what else runs iptables in this pod"
	case has("can't open lock file", "Can't lock"):
		return "legacy iptables cannot create its lock file: give the container a writable /run (an emptyDir) or set XTABLES_LOCKFILE to a writable path"
	case has("Couldn't load match", "Couldn't load target", "No chain/target/match by that name"):
		if legacy {
			return "the kernel lacks an iptables extension the rules use: load xt_owner, xt_REDIRECT, xt_tcpudp and xt_multiport on the node (modprobe), or use --iptables-mode=nft"
		}
		return "the kernel lacks an nftables expression the rules use: load nft_compat, nft_redir and xt_owner on the node (modprobe), or use --iptables-mode=legacy"
	case has("Table does not exist", "do you need to insmod", "unable to initialize table", "can't initialize", "Protocol not supported",
		"Address family not supported", "Could not fetch rule set generation id", "Invalid argument"):
		if legacy {
			return "the kernel lacks the legacy nat table: load ip_tables and iptable_nat (ip6table_nat for IPv6) on the node (modprobe), or use --iptables-mode=nft"
		}
		return "the kernel lacks nftables nat support: load nf_tables and nft_chain_nat on the node (modprobe), or use --iptables-mode=legacy"
	}
	return ""
}

// firstLines squeezes a tool's output into one short line.
func firstLines(s string) string {
	var parts []string
	for line := range strings.SplitSeq(s, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "Try `") {
			continue
		}
		parts = append(parts, line)
		if len(parts) == 3 {
			break
		}
	}
	out := strings.Join(parts, " | ")
	if len(out) > 300 {
		out = out[:300] + "…"
	}
	return out
}
