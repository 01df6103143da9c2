package redirect

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/sidecar-injector/sidecar-injector/internal/golden"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/ from the current code")

// goldenSpecs are the specs whose rendered rules are kept under
// testdata/rules/<name>.rules, each written as iptables-init arguments.
var goldenSpecs = []struct {
	name string
	args []string
}{
	{"default", nil},
	{"exclude-inbound-ports", []string{"--exclude-inbound-ports=9090,15000-15010"}},
	{"include-inbound-ports", []string{"--include-inbound-ports=8080,8443,9000-9100"}},
	{"exclude-outbound-ports", []string{"--exclude-outbound-ports=53,5432,6379"}},
	{"exclude-outbound-ip-ranges", []string{"--exclude-outbound-ip-ranges=10.96.0.0/12,169.254.169.254,fd00:10:96::/112"}},
	{"include-outbound-ip-ranges", []string{"--include-outbound-ip-ranges=10.0.0.0/8,192.168.0.0/16,fd00::/8"}},
	{"include-only-ipv4-ranges", []string{"--include-outbound-ip-ranges=10.0.0.0/8", "--exclude-outbound-ip-ranges=10.1.0.0/16"}},
	{"ipv6-off", []string{"--ipv6=off", "--exclude-outbound-ip-ranges=10.96.0.0/12,fd00::/8"}},
	{"ipv6-on", []string{"--ipv6=on"}},
	{"custom-uid-gid", []string{"--proxy-uid=2000", "--proxy-gid=2001"}},
	{"custom-proxy-ports", []string{"--inbound-port=15006", "--outbound-port=15001", "--exclude-inbound-ports=10001"}},
	{"capture-nothing", []string{"--include-inbound-ports=", "--include-outbound-ip-ranges="}},
	{"legacy-everything", []string{
		"--iptables-mode=legacy", "--ipv6=on", "--proxy-uid=1337", "--proxy-gid=1337",
		"--include-inbound-ports=*", "--exclude-inbound-ports=22,8081-8089",
		"--exclude-outbound-ports=25,587", "--include-outbound-ip-ranges=*",
		"--exclude-outbound-ip-ranges=10.96.0.0/12,172.16.0.0/12,2001:db8::/32",
	}},
}

func TestGoldenRules(t *testing.T) {
	t.Parallel()
	if len(goldenSpecs) < 10 {
		t.Fatalf("want golden tests for 10+ specs, have %d", len(goldenSpecs))
	}
	// TestGoldenOverExisting writes the two -existing files.
	outputs := []string{filepath.Join("testdata", "rules", "apply-over-existing.rules"), filepath.Join("testdata", "rules", "cleanup-existing.rules")}
	for _, tc := range goldenSpecs {
		outputs = append(outputs, filepath.Join("testdata", "rules", tc.name+".rules"))
	}
	golden.Orphans(t, *update, filepath.Join("testdata", "rules", "*"), outputs)
	for _, tc := range goldenSpecs {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			spec, err := ParseArgs(tc.args)
			if err != nil {
				t.Fatalf("ParseArgs(%q): %v", tc.args, err)
			}
			rs, err := Build(spec)
			if err != nil {
				t.Fatalf("Build: %v", err)
			}
			var b bytes.Buffer
			b.WriteString("# iptables-init " + strings.Join(spec.Args(), " ") + "\n")
			b.WriteString("# ipv4: iptables-restore --noflush input\n")
			b.Write(rs.Render(IPv4))
			if spec.IPv6 == IPv6Off {
				b.WriteString("# ipv6: not applied (--ipv6=off)\n")
			} else {
				b.WriteString("# ipv6: ip6tables-restore --noflush input (--ipv6=" + string(spec.IPv6) + ")\n")
				b.Write(rs.Render(IPv6))
			}
			checkGolden(t, filepath.Join("testdata", "rules", tc.name+".rules"), b.Bytes())

			// The rules are data: building again gives the same rules.
			again, err := Build(spec)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(rs, again); diff != "" {
				t.Errorf("Build is not deterministic (-first +second):\n%s", diff)
			}
		})
	}
}

// TestGoldenOverExisting renders apply and cleanup transactions over a nat
// table that already holds someone else's rules and an older copy of ours.
func TestGoldenOverExisting(t *testing.T) {
	t.Parallel()
	save, err := os.ReadFile(filepath.Join("testdata", "save", "existing.save"))
	if err != nil {
		t.Fatal(err)
	}
	cur, err := ParseSave(save)
	if err != nil {
		t.Fatalf("ParseSave: %v", err)
	}
	rs, err := Build(DefaultSpec())
	if err != nil {
		t.Fatal(err)
	}
	checkGolden(t, filepath.Join("testdata", "rules", "apply-over-existing.rules"), rs.ApplyScript(IPv4, cur))
	checkGolden(t, filepath.Join("testdata", "rules", "cleanup-existing.rules"), CleanupScript(cur))
}

func checkGolden(t *testing.T, path string, got []byte) {
	t.Helper()
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read golden file (run `go test ./pkg/redirect -update` to create it): %v", err)
	}
	if diff := cmp.Diff(string(want), string(got)); diff != "" {
		t.Errorf("%s differs (-want +got); run `go test ./pkg/redirect -update` if the change is intended:\n%s", path, diff)
	}
}

func TestBuildOrder(t *testing.T) {
	t.Parallel()
	// DESIGN.md: outbound returns the proxy UID, then GID, then loopback,
	// excluded ports, excluded CIDRs, and only then captures.
	spec, err := ParseArgs([]string{
		"--proxy-gid=1337", "--exclude-outbound-ports=53",
		"--exclude-outbound-ip-ranges=10.0.0.0/8,fd00::/8",
		"--include-outbound-ip-ranges=*",
	})
	if err != nil {
		t.Fatal(err)
	}
	rs, err := Build(spec)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []Family{IPv4, IPv6} {
		var got []string
		for _, r := range rs.Rules(f) {
			if r.Chain == ChainOutput {
				got = append(got, strings.Join(r.Args, " "))
			}
		}
		cidr := "10.0.0.0/8"
		if f == IPv6 {
			cidr = "fd00::/8"
		}
		want := []string{
			"-m owner --uid-owner 1337 -j RETURN",
			"-m owner --gid-owner 1337 -j RETURN",
			"-o lo -j RETURN",
			"-p tcp --dport 53 -j RETURN",
			"-d " + cidr + " -j RETURN",
			"-j SIDECAR_REDIRECT",
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("%v SIDECAR_OUTPUT (-want +got):\n%s", f, diff)
		}
	}
}

func TestBuildRefusesInvalid(t *testing.T) {
	t.Parallel()
	s := DefaultSpec()
	s.InboundPort = 0
	if _, err := Build(s); err == nil || !strings.Contains(err.Error(), "--inbound-port") {
		t.Fatalf("Build with inbound port 0: got %v, want an error naming --inbound-port", err)
	}
}

func TestIdempotentScript(t *testing.T) {
	t.Parallel()
	// Simulate what iptables-save prints after our transaction and check that
	// the next transaction deletes exactly our jumps and nothing else.
	rs, err := Build(DefaultSpec())
	if err != nil {
		t.Fatal(err)
	}
	after := "*nat\n:PREROUTING ACCEPT [3:180]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [1:60]\n:POSTROUTING ACCEPT [0:0]\n" +
		":SIDECAR_INBOUND - [0:0]\n:SIDECAR_IN_REDIRECT - [0:0]\n:SIDECAR_OUTPUT - [0:0]\n:SIDECAR_REDIRECT - [0:0]\n" +
		"-A PREROUTING -p tcp -j SIDECAR_INBOUND\n-A PREROUTING -p udp -m udp --dport 53 -j RETURN\n" +
		"-A OUTPUT -p tcp -j SIDECAR_OUTPUT\n-A OUTPUT -p tcp -j SIDECAR_OUTPUT\n" +
		"-A SIDECAR_INBOUND -p tcp -m tcp --dport 10001 -j RETURN\n-A SIDECAR_INBOUND -p tcp -j SIDECAR_IN_REDIRECT\nCOMMIT\n"
	cur, err := ParseSave([]byte(after))
	if err != nil {
		t.Fatal(err)
	}
	var dels []string
	for line := range strings.SplitSeq(string(rs.ApplyScript(IPv4, cur)), "\n") {
		if strings.HasPrefix(line, "-D ") {
			dels = append(dels, line)
		}
	}
	want := []string{
		"-D PREROUTING -p tcp -j SIDECAR_INBOUND",
		"-D OUTPUT -p tcp -j SIDECAR_OUTPUT",
		"-D OUTPUT -p tcp -j SIDECAR_OUTPUT",
	}
	if diff := cmp.Diff(want, dels); diff != "" {
		t.Errorf("deletions (-want +got):\n%s", diff)
	}
	if CleanupScript(Table{Exists: true, Rules: []Rule{{Chain: "OUTPUT", Args: []string{"-j", "RETURN"}}}}) != nil {
		t.Errorf("CleanupScript of a table without our chains: want nil")
	}
}
