package redirect

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func FuzzParsePortList(f *testing.F) {
	for _, s := range []string{"*", "", "80", "80,443", "1-65535", "8000-8100, 9000", "0", "65536", "5-1", " 7 , 7 ", "1-2-3", "+80"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		l, err := ParsePortList(s)
		if err != nil {
			if err.Error() == "" {
				t.Fatal("empty error message")
			}
			return
		}
		if msg := checkPortList(l); msg != "" {
			t.Fatalf("ParsePortList(%q) returned a list Validate refuses: %s", s, msg)
		}
		again, err := ParsePortList(l.String())
		if err != nil {
			t.Fatalf("ParsePortList(%q) = %q, which does not parse: %v", s, l.String(), err)
		}
		if diff := cmp.Diff(l, again, cmpSpec...); diff != "" {
			t.Fatalf("round trip of %q through %q (-first +second):\n%s", s, l.String(), diff)
		}
	})
}

func FuzzParseCIDRList(f *testing.F) {
	for _, s := range []string{"*", "", "10.0.0.0/8", "10.1.2.3/8,fd00::/8", "::ffff:10.0.0.0/104", "::ffff:1.2.3.4", "1.2.3.4", "garbage", "fe80::1%eth0", "0.0.0.0/0,::/0"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		l, err := ParseCIDRList(s)
		if err != nil {
			if err.Error() == "" {
				t.Fatal("empty error message")
			}
			return
		}
		if msg := checkCIDRList(l); msg != "" {
			t.Fatalf("ParseCIDRList(%q) returned a list Validate refuses: %s", s, msg)
		}
		again, err := ParseCIDRList(l.String())
		if err != nil {
			t.Fatalf("ParseCIDRList(%q) = %q, which does not parse: %v", s, l.String(), err)
		}
		if diff := cmp.Diff(l, again, cmpSpec...); diff != "" {
			t.Fatalf("round trip of %q through %q (-first +second):\n%s", s, l.String(), diff)
		}
	})
}

// FuzzArgsRoundTrip feeds arguments (one per line) to ParseArgs; whatever
// it accepts must build, render, and survive Args -> ParseArgs unchanged.
func FuzzArgsRoundTrip(f *testing.F) {
	for _, g := range goldenSpecs {
		f.Add(strings.Join(g.args, "\n"))
	}
	f.Add("--inbound-port=15006\n--outbound-port=15001\n--proxy-gid=5")
	f.Add("--exclude-inbound-ports=10001")
	f.Fuzz(func(t *testing.T, in string) {
		var args []string
		if in != "" {
			args = strings.Split(in, "\n")
		}
		s, err := ParseArgs(args)
		if err != nil {
			if err.Error() == "" {
				t.Fatal("empty error message")
			}
			return
		}
		again, err := ParseArgs(s.Args())
		if err != nil {
			t.Fatalf("ParseArgs(%q) accepted, but its Args %q do not parse: %v", args, s.Args(), err)
		}
		if diff := cmp.Diff(s, again, cmpSpec...); diff != "" {
			t.Fatalf("round trip of %q (-first +second):\n%s", args, diff)
		}
		rs, err := Build(s)
		if err != nil {
			t.Fatalf("Build of a valid spec: %v", err)
		}
		for _, fam := range []Family{IPv4, IPv6} {
			// What we render, iptables-save would print back in the same
			// shape; parsing it must see our chains and jumps.
			script := string(rs.Render(fam))
			saved := strings.ReplaceAll(strings.ReplaceAll(script, "-I PREROUTING 1 ", "-A PREROUTING "), "-I OUTPUT 1 ", "-A OUTPUT ")
			cur, err := ParseSave([]byte(saved))
			if err != nil {
				t.Fatalf("ParseSave of our own rules: %v\n%s", err, saved)
			}
			if !cur.HasOurs() || len(cur.jumpsIntoOurs()) != len(rs.Jumps) {
				t.Fatalf("our rules not recognised after a round trip:\n%s", saved)
			}
		}
	})
}

func FuzzParseSave(f *testing.F) {
	if b, err := os.ReadFile(filepath.Join("testdata", "save", "existing.save")); err == nil {
		f.Add(b)
	}
	f.Add([]byte("*nat\n:PREROUTING ACCEPT [0:0]\n-A PREROUTING -j SIDECAR_INBOUND\nCOMMIT\n"))
	f.Add([]byte("*nat\n-A X -m comment --comment \"a \\\" -j SIDECAR_OUTPUT\" -j RETURN\nCOMMIT\n"))
	rs, err := Build(DefaultSpec())
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, save []byte) {
		cur, err := ParseSave(save)
		if err != nil {
			return
		}
		script := rs.ApplyScript(IPv4, cur)
		if !strings.HasPrefix(string(script), "*nat\n") || !strings.HasSuffix(string(script), "COMMIT\n") {
			t.Fatalf("malformed script:\n%s", script)
		}
		if c := CleanupScript(cur); c != nil && !strings.HasSuffix(string(c), "COMMIT\n") {
			t.Fatalf("malformed cleanup script:\n%s", c)
		}
	})
}
