package imagebuild

import (
	"archive/tar"
	"bytes"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestRootfsTarIsCanonical(t *testing.T) {
	t.Parallel()
	mtime := time.Unix(1700000000, 0)
	build := func(order []string) []byte {
		r := rootfs{}
		for _, p := range order {
			switch p {
			case "usr/sbin/tool":
				if err := r.addFile(p, []byte("\x7fELF"), true); err != nil {
					t.Fatal(err)
				}
			case "usr/sbin/alias":
				if err := r.addSymlink(p, "tool"); err != nil {
					t.Fatal(err)
				}
			default:
				if err := r.addFile(p, []byte(p), false); err != nil {
					t.Fatal(err)
				}
			}
		}
		b, err := r.tar(mtime)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	a := build([]string{"usr/sbin/tool", "etc/protocols", "usr/sbin/alias", "./licenses/LICENSE"})
	b := build([]string{"./licenses/LICENSE", "usr/sbin/alias", "etc/protocols", "usr/sbin/tool"})
	if !bytes.Equal(a, b) {
		t.Fatal("the same files added in another order give another tar stream")
	}
	type hdr struct {
		Name, Link string
		Mode       int64
		UID, GID   int
		ModTime    int64
	}
	var got []hdr
	tr := tar.NewReader(bytes.NewReader(a))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, hdr{h.Name, h.Linkname, h.Mode, h.Uid, h.Gid, h.ModTime.Unix()})
	}
	ts := mtime.Unix()
	want := []hdr{
		{"etc/", "", 0o755, 0, 0, ts},
		{"etc/protocols", "", 0o644, 0, 0, ts},
		{"licenses/", "", 0o755, 0, 0, ts},
		{"licenses/LICENSE", "", 0o644, 0, 0, ts},
		{"usr/", "", 0o755, 0, 0, ts},
		{"usr/sbin/", "", 0o755, 0, 0, ts},
		{"usr/sbin/alias", "tool", 0o777, 0, 0, ts},
		{"usr/sbin/tool", "", 0o755, 0, 0, ts},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("tar headers (-want +got):\n%s", diff)
	}
}

func TestCleanPathRefusesEscapes(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{"./usr/lib/x": "usr/lib/x", "/etc//a/": "etc/a", "./": "", "a/./b": "a/b"} {
		if got, err := cleanPath(in); err != nil || got != want {
			t.Errorf("cleanPath(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"../etc/passwd", "./usr/../../x", "a/../../b"} {
		if _, err := cleanPath(in); err == nil {
			t.Errorf("cleanPath(%q): no error", in)
		}
	}
}

func TestUsrMergeAndDanglingLinks(t *testing.T) {
	t.Parallel()
	r := rootfs{}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(r.addFile(usrMerged("lib/x86_64-linux-gnu/libc.so.6"), []byte("c"), true))
	must(r.addSymlink(usrMerged("lib64/ld-linux-x86-64.so.2"), "/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2"))
	must(r.addFile(usrMerged("lib/x86_64-linux-gnu/ld-linux-x86-64.so.2"), []byte("ld"), true))
	must(r.addFile("usr/sbin/xtables-nft-multi", []byte("x"), true))
	must(r.addSymlink("usr/sbin/iptables-nft-restore", "xtables-nft-multi"))
	must(r.addSymlink("usr/sbin/ip6tables-apply", "iptables-apply")) // the script was left out
	must(r.addSymlink("usr/sbin/chain", "ip6tables-apply"))
	must(r.mergeUsr())
	removed := r.pruneDangling()
	if diff := cmp.Diff([]string{"usr/sbin/chain", "usr/sbin/ip6tables-apply"}, removed); diff != "" {
		t.Errorf("removed links (-want +got):\n%s", diff)
	}
	for p, want := range map[string]string{
		"usr/lib64/ld-linux-x86-64.so.2": "usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2",
		"lib64/ld-linux-x86-64.so.2":     "usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2",
		"sbin/iptables-nft-restore":      "usr/sbin/xtables-nft-multi",
	} {
		if got := r.resolve(p); got != want {
			t.Errorf("resolve(%q) = %q, want %q", p, got, want)
		}
	}
	if _, ok := r["bin"]; ok {
		t.Error("a /bin link was made though nothing is in /usr/bin")
	}
}

func TestKeepFromDeb(t *testing.T) {
	t.Parallel()
	reg := &tar.Header{Typeflag: tar.TypeReg}
	for _, tc := range []struct {
		pkg, path string
		keep      bool
	}{
		{"iptables", "usr/sbin/xtables-legacy-multi", true},
		{"iptables", "usr/lib/x86_64-linux-gnu/xtables/libxt_owner.so", true},
		{"iptables", "usr/share/doc/iptables/copyright", true},
		{"iptables", "usr/share/doc/iptables/changelog.Debian.gz", false},
		{"iptables", "usr/share/man/man8/iptables.8.gz", false},
		{"libc6", "usr/lib/x86_64-linux-gnu/libc.so.6", true},
		{"libc6", "usr/lib/x86_64-linux-gnu/gconv/BIG5.so", false},
		{"libc6", "usr/bin/ldd", false},
		{"libc6", "usr/sbin/ldconfig", false},
		{"netbase", "etc/protocols", true},
	} {
		if got := keepFromDeb(tc.pkg, tc.path, reg); got != tc.keep {
			t.Errorf("keepFromDeb(%s, %s) = %v, want %v", tc.pkg, tc.path, got, tc.keep)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	if err := DefaultConfig().Validate(); err != nil {
		t.Fatalf("defaults: %v", err)
	}
	c := DefaultConfig()
	c.Platforms = []string{"linux/amd64", "darwin/arm64", "linux/mips64"}
	c.Images = []string{"envoy"}
	err := c.Validate()
	for _, w := range []string{`"darwin/arm64": want linux/ARCH`, `"linux/mips64"`, `--images: "envoy"`} {
		if err == nil || !strings.Contains(err.Error(), w) {
			t.Errorf("Validate() = %v, want it to mention %s", err, w)
		}
	}
}

func TestChartVersionFor(t *testing.T) {
	t.Parallel()
	for version, want := range map[string]string{
		"v0.2.0":            "0.2.0",
		"v1.0.0-rc.1":       "1.0.0-rc.1",
		"v0.2.0-3-g1a2b3c4": "0.1.0-dev.v0-2-0-3-g1a2b3c4",
		"v0.2.0-dirty":      "0.1.0-dev.v0-2-0-dirty",
		"bb23b21-dirty":     "0.1.0-dev.bb23b21-dirty",
		"v0.0.0-imagetest":  "0.0.0-imagetest",
	} {
		if got := ChartVersionFor(version, "0.1.0"); got != want {
			t.Errorf("ChartVersionFor(%q) = %q, want %q", version, got, want)
		}
	}
}
