package main

import (
	"bytes"
	"context"
	"errors"
	"os/exec"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/sidecar-injector/sidecar-injector/pkg/redirect"
)

// fakeSystem records the commands run and answers from tables.
type fakeSystem struct {
	missing map[string]bool   // executables not installed
	saves   map[string]string // save tool -> its output
	fail    map[string]string // tool -> output of a failure
	ipv6    ipv6State
	caps    capSet
	ran     []string          // "tool args" of every Run
	stdin   map[string]string // tool -> stdin of its last run
}

func newFake() *fakeSystem {
	return &fakeSystem{
		missing: map[string]bool{}, saves: map[string]string{}, fail: map[string]string{},
		ipv6: ipv6Enabled, caps: 1<<capNetAdmin | 1<<capNetRaw, stdin: map[string]string{},
	}
}

func (f *fakeSystem) LookPath(name string) error {
	if f.missing[name] {
		return &exec.Error{Name: name, Err: exec.ErrNotFound}
	}
	return nil
}

func (f *fakeSystem) Run(_ context.Context, name string, args []string, stdin []byte) ([]byte, error) {
	f.ran = append(f.ran, strings.TrimSpace(name+" "+strings.Join(args, " ")))
	f.stdin[name] = string(stdin)
	if out, ok := f.fail[name]; ok {
		return nil, &toolError{Tool: name, Args: args, Output: out, Err: errors.New("exit status 1")}
	}
	return []byte(f.saves[name]), nil
}

func (f *fakeSystem) IPv6() (ipv6State, error) { return f.ipv6, nil }
func (f *fakeSystem) Caps() (capSet, error)    { return f.caps, nil }

func runFake(t *testing.T, sys *fakeSystem, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = mainArgs(t.Context(), args, sys, &out, &errb)
	return code, out.String(), errb.String()
}

const legacyRules = "*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -j ACCEPT\n-A INPUT -p tcp -j ACCEPT\nCOMMIT\n"

func TestDetectBackend(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		setup func(*fakeSystem)
		want  string // restore tool that must run
	}{
		{"fresh namespace: nft", func(*fakeSystem) {}, "iptables-nft-restore"},
		{"legacy holds rules", func(f *fakeSystem) { f.saves["iptables-legacy-save"] = legacyRules }, "iptables-legacy-restore"},
		{"legacy holds ipv6 rules", func(f *fakeSystem) { f.saves["ip6tables-legacy-save"] = legacyRules }, "iptables-legacy-restore"},
		{"nft holds more", func(f *fakeSystem) {
			f.saves["iptables-legacy-save"] = legacyRules
			f.saves["iptables-nft-save"] = legacyRules + legacyRules
		}, "iptables-nft-restore"},
		{"nft probe fails", func(f *fakeSystem) {
			f.fail["iptables-nft"] = "iptables v1.8.9 (nf_tables): Could not fetch rule set generation id: Invalid argument"
		}, "iptables-legacy-restore"},
		{"nft not installed", func(f *fakeSystem) { f.missing["iptables-nft-restore"] = true }, "iptables-legacy-restore"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			sys := newFake()
			tc.setup(sys)
			code, _, stderr := runFake(t, sys, "--ipv6=off")
			if code != 0 {
				t.Fatalf("exit %d: %s", code, stderr)
			}
			if !slicesContainsPrefix(sys.ran, tc.want+" --noflush") {
				t.Errorf("ran %q, want %s", sys.ran, tc.want)
			}
			if !strings.Contains(stderr, `"msg":"redirect applied"`) {
				t.Errorf("no success log line: %s", stderr)
			}
		})
	}
}

func slicesContainsPrefix(list []string, prefix string) bool {
	for _, s := range list {
		if strings.HasPrefix(s, prefix) {
			return true
		}
	}
	return false
}

func TestApplyUsesCurrentTable(t *testing.T) {
	t.Parallel()
	sys := newFake()
	sys.saves["iptables-nft-save"] = "*nat\n:PREROUTING ACCEPT [0:0]\n:SIDECAR_INBOUND - [0:0]\n-A PREROUTING -p tcp -j SIDECAR_INBOUND\nCOMMIT\n"
	code, _, stderr := runFake(t, sys, "--iptables-mode=nft", "--ipv6=on")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	rs, err := redirect.Build(redirect.DefaultSpec())
	if err != nil {
		t.Fatal(err)
	}
	cur, err := redirect.ParseSave([]byte(sys.saves["iptables-nft-save"]))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(string(rs.ApplyScript(redirect.IPv4, cur)), sys.stdin["iptables-nft-restore"]); diff != "" {
		t.Errorf("IPv4 transaction (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(string(rs.Render(redirect.IPv6)), sys.stdin["ip6tables-nft-restore"]); diff != "" {
		t.Errorf("IPv6 transaction (-want +got):\n%s", diff)
	}
	want := []string{"iptables-nft-save", "ip6tables-nft-save", "iptables-nft-restore --noflush", "ip6tables-nft-restore --noflush"}
	if diff := cmp.Diff(want, sys.ran); diff != "" {
		t.Errorf("commands (-want +got):\n%s", diff)
	}
}

func TestIPv6Modes(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		args     []string
		state    ipv6State
		wantIPv6 bool
	}{
		{"auto enabled", nil, ipv6Enabled, true},
		{"auto disabled", nil, ipv6Disabled, false},
		{"auto absent", nil, ipv6Absent, false},
		{"on while disabled", []string{"--ipv6=on"}, ipv6Disabled, true},
		{"off while enabled", []string{"--ipv6=off"}, ipv6Enabled, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			sys := newFake()
			sys.ipv6 = tc.state
			code, _, stderr := runFake(t, sys, append([]string{"--iptables-mode=legacy"}, tc.args...)...)
			if code != 0 {
				t.Fatalf("exit %d: %s", code, stderr)
			}
			if got := slicesContainsPrefix(sys.ran, "ip6tables-legacy-restore"); got != tc.wantIPv6 {
				t.Errorf("ip6tables-legacy-restore ran: %v, want %v (%q)", got, tc.wantIPv6, sys.ran)
			}
			if !slicesContainsPrefix(sys.ran, "iptables-legacy-restore --noflush --wait=10") {
				t.Errorf("legacy restore not run with --wait: %q", sys.ran)
			}
		})
	}
}

// TestFailuresAreOneClearLine: every failure is one line that names what is
// missing and how to fix it, with exit status 1 (2 for bad flags), and a
// missing piece is found before anything is changed.
func TestFailuresAreOneClearLine(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		args     []string
		setup    func(*fakeSystem)
		code     int
		want     []string
		noChange bool
	}{
		{"bad flag value", []string{"--inbound-port=0"}, nil, 2, []string{"-inbound-port", "1-65535"}, true},
		{"invalid spec", []string{"--include-inbound-ports=8080,10001"}, nil, 2, []string{`--include-inbound-ports="8080,10001"`, "proxy's own port"}, true},
		{"positional", []string{"nft"}, nil, 2, []string{`unexpected argument "nft"`}, true},
		{"no NET_ADMIN", nil, func(f *fakeSystem) { f.caps = 0 }, 1, []string{"missing capability NET_ADMIN", "capabilities.add"}, true},
		{"no NET_RAW for legacy", []string{"--iptables-mode=legacy"}, func(f *fakeSystem) { f.caps = 1 << capNetAdmin }, 1, []string{"missing capability NET_RAW"}, true},
		{"no iptables at all", nil, func(f *fakeSystem) {
			for _, m := range []string{"nft", "legacy"} {
				f.missing["iptables-"+m+"-restore"] = true
			}
		}, 1, []string{"no iptables backend installed", "iptables package"}, true},
		{"ipv6 on, ip6tables missing", nil, func(f *fakeSystem) {
			f.missing["ip6tables-nft-restore"] = true
			f.missing["ip6tables-nft-save"] = true
		}, 1, []string{"ip6tables-nft-restore is not installed", "IPv6 is on (auto", "--ipv6=off"}, true},
		{"kernel module missing (nft)", []string{"--iptables-mode=nft"}, func(f *fakeSystem) {
			f.fail["iptables-nft-restore"] = "iptables-nft-restore v1.8.9 (nf_tables): Could not fetch rule set generation id: Invalid argument\n"
		}, 1, []string{"kernel lacks nftables nat support", "modprobe", "--iptables-mode=legacy"}, false},
		{"kernel module missing (legacy)", []string{"--iptables-mode=legacy"}, func(f *fakeSystem) {
			f.fail["iptables-legacy-save"] = "iptables-save v1.8.9 (legacy): can't initialize iptables table `nat': Table does not exist (do you need to insmod?)\nPerhaps iptables or your kernel needs to be upgraded.\n"
		}, 1, []string{"kernel lacks the legacy nat table", "iptable_nat"}, true},
		{"ipv6 restore fails", []string{"--iptables-mode=nft"}, func(f *fakeSystem) {
			f.fail["ip6tables-nft-restore"] = "ip6tables-nft-restore: line 9 failed: No chain/target/match by that name.\n"
		}, 1, []string{"ip6tables-nft-restore --noflush failed", "nft_redir", "ipv4 rules were already changed"}, false},
		{"permission denied from the tool", []string{"--iptables-mode=nft"}, func(f *fakeSystem) {
			f.fail["iptables-nft-save"] = "iptables-nft-save v1.8.9 (nf_tables): Could not fetch rule set generation id: Permission denied (you must be root)\n"
		}, 1, []string{"NET_ADMIN and NET_RAW"}, true},
		{"lock file", []string{"--iptables-mode=legacy", "--ipv6=off"}, func(f *fakeSystem) {
			f.fail["iptables-legacy-restore"] = "Fatal: can't open lock file /run/xtables.lock: Read-only file system\n"
		}, 1, []string{"XTABLES_LOCKFILE"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			sys := newFake()
			if tc.setup != nil {
				tc.setup(sys)
			}
			code, stdout, stderr := runFake(t, sys, tc.args...)
			if code != tc.code {
				t.Errorf("exit %d, want %d; stderr: %s", code, tc.code, stderr)
			}
			if stdout != "" {
				t.Errorf("stdout: %q, want nothing", stdout)
			}
			lines := strings.Split(strings.TrimRight(stderr, "\n"), "\n")
			if tc.code == 1 && len(lines) != 1 {
				t.Errorf("stderr has %d lines, want one:\n%s", len(lines), stderr)
			}
			for _, w := range tc.want {
				if !strings.Contains(stderr, w) {
					t.Errorf("stderr %q does not contain %q", stderr, w)
				}
			}
			if tc.noChange && slicesContainsPrefix(sys.ran, "iptables-nft-restore") ||
				tc.noChange && slicesContainsPrefix(sys.ran, "iptables-legacy-restore") {
				t.Errorf("a restore ran before the failure was found: %q", sys.ran)
			}
		})
	}
}

func TestDryRun(t *testing.T) {
	t.Parallel()
	sys := newFake()
	sys.saves["iptables-legacy-save"] = legacyRules
	sys.caps = 0 // a dry run needs no capability
	code, stdout, stderr := runFake(t, sys, "--dry-run", "--exclude-inbound-ports=9090")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	for _, w := range []string{
		"# backend: legacy (legacy holds 2 rules in this network namespace, nft 0)",
		"# ipv6: on (auto: IPv6 is enabled in this network namespace)",
		"# ipv4: iptables-legacy-restore --noflush --wait=10\n*nat\n",
		"# ipv6: ip6tables-legacy-restore --noflush --wait=10\n*nat\n",
		"-A SIDECAR_INBOUND -p tcp --dport 9090 -j RETURN\n",
	} {
		if !strings.Contains(stdout, w) {
			t.Errorf("dry run output lacks %q:\n%s", w, stdout)
		}
	}
	if slicesContainsPrefix(sys.ran, "iptables-legacy-restore") || slicesContainsPrefix(sys.ran, "ip6tables-legacy-restore") {
		t.Errorf("dry run changed something: %q", sys.ran)
	}

	// Unable to inspect the tables, a dry run still prints the rules.
	sys = newFake()
	sys.fail["iptables-nft-save"] = "Could not fetch rule set generation id: Permission denied (you must be root)"
	code, stdout, stderr = runFake(t, sys, "--dry-run", "--iptables-mode=nft", "--cleanup")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if !strings.Contains(stdout, "# backend: nft (unknown: ") || !strings.Contains(stdout, "-X SIDECAR_INBOUND\n") {
		t.Errorf("fallback dry run output:\n%s", stdout)
	}
}

func TestCleanupNothingToDo(t *testing.T) {
	t.Parallel()
	sys := newFake()
	code, _, stderr := runFake(t, sys, "--cleanup", "--iptables-mode=nft")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if slicesContainsPrefix(sys.ran, "iptables-nft-restore") {
		t.Errorf("cleanup of a clean namespace ran a restore: %q", sys.ran)
	}
}

func TestParseCapEff(t *testing.T) {
	t.Parallel()
	caps, err := parseCapEff(strings.NewReader("Name:\tx\nCapInh:\t0000000000000000\nCapEff:\t0000000000003000\n"))
	if err != nil || !caps.has(capNetAdmin) || !caps.has(capNetRaw) || caps.has(0) {
		t.Errorf("parseCapEff = %x, %v", caps, err)
	}
	if _, err := parseCapEff(strings.NewReader("Name:\tx\n")); err == nil {
		t.Error("no CapEff line: no error")
	}
	if _, err := parseCapEff(strings.NewReader("CapEff:\tzz\n")); err == nil {
		t.Error("bad CapEff: no error")
	}
}

func TestHelpExitsZero(t *testing.T) {
	t.Parallel()
	var out, errb bytes.Buffer
	if code := mainArgs(t.Context(), []string{"-h"}, newFake(), &out, &errb); code != 0 {
		t.Errorf("-h: exit %d", code)
	}
	for _, f := range []string{"-inbound-port", "-include-outbound-ip-ranges", "-iptables-mode", "-dry-run", "-cleanup"} {
		if !strings.Contains(errb.String(), f) {
			t.Errorf("usage lacks %s", f)
		}
	}
}
