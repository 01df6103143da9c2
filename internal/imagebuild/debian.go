package imagebuild

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strings"

	"golang.org/x/sys/unix"
)

// iptablesPackages is what the iptables-init image takes from Debian:
// iptables, whose xtables-nft-multi and xtables-legacy-multi serve both
// backends for IPv4 and IPv6, and the closure of its Depends (the shared
// libraries both backends load, the C library and netbase's protocol and
// service tables). gcc-12-base, a dependency of libgcc-s1, holds only
// documentation and is left out.
var iptablesPackages = []string{
	"iptables", "libip4tc2", "libip6tc2", "libxtables12", "libmnl0",
	"libnetfilter-conntrack3", "libnfnetlink0", "libnftnl11",
	"libc6", "libgcc-s1", "netbase",
}

// debPackage is one downloaded Debian package.
type debPackage struct {
	Name     string
	Version  string
	Arch     string
	Source   string // source package name
	Homepage string
	SHA256   string // of the .deb
	File     string // path of the .deb
	Control  []byte // the control paragraph, as dpkg-deb -f prints it
}

// debArch maps a Go architecture to Debian's.
func debArch(goarch string) (string, error) {
	switch goarch {
	case "amd64", "arm64":
		return goarch, nil
	case "arm":
		return "armhf", nil
	case "386":
		return "i386", nil
	case "ppc64le":
		return "ppc64el", nil
	case "s390x":
		return "s390x", nil
	}
	return "", fmt.Errorf("architecture %q: no Debian architecture known for it", goarch)
}

// apt runs apt-get for a foreign or native architecture against a private
// state directory under cacheDir, so the machine's own apt state and
// dpkg's architecture list are never touched. It uses the machine's apt
// sources (a Debian system's sources reach every release architecture).
type apt struct {
	dir  string // cacheDir/apt/<arch>
	arch string
	log  *slog.Logger
}

func (a apt) args(cmd ...string) []string {
	return append([]string{"-q",
		"-o", "Dir::State::Lists=" + filepath.Join(a.dir, "lists"),
		"-o", "Dir::Cache=" + filepath.Join(a.dir, "cache"),
		"-o", "Dir::State::status=/dev/null",
		"-o", "APT::Architecture=" + a.arch,
		"-o", "APT::Architectures::=" + a.arch,
		"-o", "APT::Sandbox::User=root",
	}, cmd...)
}

func (a apt) run(ctx context.Context, dir string, cmd ...string) error {
	c := exec.CommandContext(ctx, "apt-get", a.args(cmd...)...)
	c.Dir = dir
	c.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive", "LC_ALL=C")
	out, err := c.CombinedOutput()
	if err != nil {
		return fmt.Errorf("apt-get %s (architecture %s): %w: %s", strings.Join(cmd, " "), a.arch, err, lastLines(string(out), 5))
	}
	return nil
}

// download fetches the newest candidate of each package for the
// architecture. The package index is refreshed only when there is none
// yet, when forced, or when a download fails (the mirror moved on), so two
// builds in a row resolve the same versions.
func (a apt) download(ctx context.Context, names []string, update bool) ([]debPackage, error) {
	if _, err := exec.LookPath("apt-get"); err != nil {
		return nil, errors.New("apt-get not found: the iptables-init image is assembled from Debian packages; build it on Debian or Ubuntu (or in a debian container)")
	}
	for _, d := range []string{"lists/partial", "cache/archives/partial", "debs"} {
		if err := os.MkdirAll(filepath.Join(a.dir, d), 0o755); err != nil {
			return nil, err
		}
	}
	// One build at a time per architecture: apt locks its lists too, but
	// fails instead of waiting.
	lock, err := os.OpenFile(filepath.Join(a.dir, "lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	defer lock.Close()
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX); err != nil {
		return nil, fmt.Errorf("lock %s: %w", lock.Name(), err)
	}
	if _, err := os.Stat(filepath.Join(a.dir, "lists", "lock")); err != nil {
		update = true
	}
	tmp, err := os.MkdirTemp(filepath.Join(a.dir, "debs"), "dl-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	for attempt := 0; ; attempt++ {
		if update {
			a.log.Info("apt-get update", "arch", a.arch)
			if err := a.run(ctx, tmp, "update"); err != nil {
				return nil, fmt.Errorf("%w (the iptables-init image needs Debian's package index; run as root with the Debian mirrors reachable)", err)
			}
		}
		err = a.run(ctx, tmp, append([]string{"download"}, names...)...)
		if err == nil {
			break
		}
		if update || attempt > 0 {
			return nil, err
		}
		update = true
	}
	files, err := filepath.Glob(filepath.Join(tmp, "*.deb"))
	if err != nil {
		return nil, err
	}
	var pkgs []debPackage
	for _, f := range files {
		p, err := readDeb(ctx, f)
		if err != nil {
			return nil, err
		}
		// Keep the .deb beside the others, named by its checksum, so an
		// SBOM can point at exactly what went in.
		keep := filepath.Join(a.dir, "debs", filepath.Base(f))
		if err := os.Rename(f, keep); err != nil {
			return nil, err
		}
		p.File = keep
		pkgs = append(pkgs, p)
	}
	slices.SortFunc(pkgs, func(x, y debPackage) int { return strings.Compare(x.Name, y.Name) })
	for _, n := range names {
		if !slices.ContainsFunc(pkgs, func(p debPackage) bool { return p.Name == n }) {
			return nil, fmt.Errorf("apt-get download %s (architecture %s) gave no package", n, a.arch)
		}
	}
	return pkgs, nil
}

// readDeb reads a package's control fields and checksum.
func readDeb(ctx context.Context, file string) (debPackage, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return debPackage{}, err
	}
	sum := sha256.Sum256(b)
	ctl, err := exec.CommandContext(ctx, "dpkg-deb", "-f", file).Output()
	if err != nil {
		return debPackage{}, fmt.Errorf("dpkg-deb -f %s: %w", file, err)
	}
	fields := parseControl(ctl)
	p := debPackage{
		Name: fields["Package"], Version: fields["Version"], Arch: fields["Architecture"],
		Source: fields["Source"], Homepage: fields["Homepage"],
		SHA256: hex.EncodeToString(sum[:]), Control: ctl,
	}
	if p.Source == "" {
		p.Source = p.Name
	}
	// "Source: glibc (2.36-9)" names the source version when it differs.
	p.Source, _, _ = strings.Cut(p.Source, " ")
	if p.Name == "" || p.Version == "" || p.Arch == "" {
		return p, fmt.Errorf("%s: control file lacks Package, Version or Architecture", file)
	}
	return p, nil
}

// parseControl reads the single-line fields of a Debian control paragraph.
func parseControl(b []byte) map[string]string {
	fields := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == ' ' || line[0] == '\t' {
			continue
		}
		if k, v, ok := strings.Cut(line, ":"); ok {
			fields[k] = strings.TrimSpace(v)
		}
	}
	return fields
}

// usrMerged maps the paths of a package onto Debian's merged /usr layout:
// the top-level /bin, /sbin, /lib and /lib64 are symlinks into /usr.
func usrMerged(p string) string {
	for _, top := range []string{"bin", "sbin", "lib", "lib64"} {
		if p == top || strings.HasPrefix(p, top+"/") {
			return "usr/" + p
		}
	}
	return p
}

// keepFromDeb says whether a file of a package belongs in the image:
// libraries, iptables' programs and the copyright files; no
// documentation, translations, charset converters or shell scripts
// (there is no shell to run them), and programs only from iptables.
func keepFromDeb(pkg, p string, h *tar.Header) bool {
	if strings.HasPrefix(p, "usr/share/doc/") {
		return path.Base(p) == "copyright" || h.Typeflag == tar.TypeDir
	}
	for _, drop := range []string{"usr/share/man/", "usr/share/info/", "usr/share/locale/", "usr/share/lintian/", "usr/share/bug/"} {
		if strings.HasPrefix(p, drop) {
			return false
		}
	}
	if strings.Contains(p, "/gconv/") || strings.HasSuffix(p, "/gconv") {
		return false
	}
	if pkg != "iptables" && (strings.HasPrefix(p, "usr/bin/") || strings.HasPrefix(p, "usr/sbin/") || strings.HasPrefix(p, "usr/libexec/")) {
		return false
	}
	return true
}

// addDeb adds the kept files of a package to the root filesystem.
func (r rootfs) addDeb(ctx context.Context, p debPackage) error {
	cmd := exec.CommandContext(ctx, "dpkg-deb", "--fsys-tarfile", p.File)
	out, err := cmd.Output()
	if err != nil {
		return fmt.Errorf("dpkg-deb --fsys-tarfile %s: %w", p.File, err)
	}
	tr := tar.NewReader(bytes.NewReader(out))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("read %s: %w", p.File, err)
		}
		name, err := cleanPath(h.Name)
		if err != nil {
			return fmt.Errorf("%s: %w", p.File, err)
		}
		if name == "" {
			continue
		}
		name = usrMerged(name)
		if !keepFromDeb(p.Name, name, h) {
			continue
		}
		switch h.Typeflag {
		case tar.TypeDir:
			err = r.addDir(name)
		case tar.TypeSymlink:
			err = r.addSymlink(name, h.Linkname)
		case tar.TypeReg:
			var data []byte
			if data, err = io.ReadAll(tr); err != nil {
				return fmt.Errorf("read %s from %s: %w", name, p.File, err)
			}
			if bytes.HasPrefix(data, []byte("#!")) {
				continue // a script: nothing in the image could run it
			}
			err = r.addFile(name, data, h.Mode&0o111 != 0)
		case tar.TypeLink:
			target, lerr := cleanPath(h.Linkname)
			if lerr != nil {
				return lerr
			}
			e, ok := r[usrMerged(target)]
			if !ok {
				continue
			}
			r[name] = e
		default:
			return fmt.Errorf("%s: %s has unsupported tar type %q", p.File, name, h.Typeflag)
		}
		if err != nil {
			return fmt.Errorf("%s: %w", p.Name, err)
		}
	}
	// What `dpkg -l` scanners read in a distroless image: one control
	// paragraph per package, no dpkg.
	status := append(bytes.TrimRight(p.Control, "\n"), []byte("\nStatus: install ok installed\n")...)
	return r.addFile("var/lib/dpkg/status.d/"+p.Name, status, false)
}

// mergeUsr adds the top-level symlinks of the merged /usr layout.
func (r rootfs) mergeUsr() error {
	for _, top := range []string{"bin", "sbin", "lib", "lib64"} {
		if !r.hasPrefix("usr/" + top) {
			continue
		}
		if err := r.addSymlink(top, "usr/"+top); err != nil {
			return err
		}
	}
	return nil
}

func (r rootfs) hasPrefix(dir string) bool {
	for p := range r {
		if p == dir || strings.HasPrefix(p, dir+"/") {
			return true
		}
	}
	return false
}

// resolve follows symlinks (absolute or relative, also in parent
// directories) inside the root filesystem; "" when the path leads nowhere.
func (r rootfs) resolve(p string) string {
	for range 40 {
		parts := strings.Split(p, "/")
		changed := false
		for i := range parts {
			prefix := strings.Join(parts[:i+1], "/")
			e, ok := r[prefix]
			if !ok {
				if r.hasPrefix(prefix) {
					continue // a parent directory made implicitly
				}
				return ""
			}
			if e.typ != tar.TypeSymlink {
				continue
			}
			target := e.link
			if !strings.HasPrefix(target, "/") {
				target = path.Join(path.Dir(prefix), target)
			}
			rest := strings.Join(parts[i+1:], "/")
			next, err := cleanPath(path.Join(target, rest))
			if err != nil {
				return ""
			}
			p, changed = next, true
			break
		}
		if !changed {
			return p
		}
	}
	return ""
}

// pruneDangling removes symlinks whose target is not in the image (those
// to the scripts left out), until none is left.
func (r rootfs) pruneDangling() []string {
	var removed []string
	for {
		n := len(removed)
		for p, e := range r {
			if e.typ == tar.TypeSymlink && r.resolve(p) == "" {
				delete(r, p)
				removed = append(removed, p)
			}
		}
		if len(removed) == n {
			slices.Sort(removed)
			return removed
		}
	}
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " | ")
}
