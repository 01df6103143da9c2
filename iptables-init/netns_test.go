package main

// Real-traffic tests: network namespaces joined by a veth pair, iptables-init
// run inside the "pod" namespace, stand-in servers that read the original
// destination with SO_ORIGINAL_DST, and clients dialling from the "client"
// namespace and, as other UIDs through setpriv, from the pod itself.
//
// Addresses are documentation ranges (192.0.2.0/24, 198.51.100.0/24,
// 203.0.113.0/24, 2001:db8::/32) that exist only inside the namespaces the
// tests create; no packet leaves them.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/sidecar-injector/sidecar-injector/internal/need"
	"github.com/sidecar-injector/sidecar-injector/pkg/redirect"
)

// helperEnv selects what the re-executed test binary does instead of tests.
const helperEnv = "IPTABLES_INIT_TEST_HELPER"

func TestMain(m *testing.M) {
	switch os.Getenv(helperEnv) {
	case "":
		code := m.Run()
		if helperBin != "" {
			_ = os.RemoveAll(filepath.Dir(helperBin))
		}
		os.Exit(code)
	case "iptables-init":
		os.Exit(mainArgs(context.Background(), os.Args[1:], hostSystem{}, os.Stdout, os.Stderr))
	case "dial":
		os.Exit(dialHelper(os.Args[1:]))
	default:
		fmt.Fprintf(os.Stderr, "unknown %s=%q\n", helperEnv, os.Getenv(helperEnv))
		os.Exit(3)
	}
}

// dialHelper connects to addr, prints the first line the server sends.
func dialHelper(args []string) int {
	if len(args) != 1 {
		fmt.Fprintln(os.Stderr, "dial helper: want one address")
		return 3
	}
	reply, err := dialAndRead(func(ctx context.Context) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "tcp", args[0])
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Println(reply)
	return 0
}

func dialAndRead(dial func(context.Context) (net.Conn, error)) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	c, err := dial(ctx)
	if err != nil {
		return "", err
	}
	defer c.Close()
	if err := c.SetDeadline(time.Now().Add(3 * time.Second)); err != nil {
		return "", err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return "", fmt.Errorf("read reply: %w", err)
	}
	return strings.TrimSpace(line), nil
}

// The root filesystem of a built iptables-init image, its entrypoint and
// its environment (one VAR=value a line): set by the image test
// (internal/imagebuild), which runs the real-traffic tests below against
// the image's own program and iptables, chrooted into its unpacked root.
var (
	imageRoot       = os.Getenv("IPTABLES_INIT_IMAGE_ROOT")
	imageEntrypoint = os.Getenv("IPTABLES_INIT_IMAGE_ENTRYPOINT")
	imageEnv        = strings.Fields(os.Getenv("IPTABLES_INIT_IMAGE_ENV"))
)

// mustHave skips, loudly, when something the test needs is missing, or
// fails in CI (internal/need: CI=true or SIDECAR_INJECTOR_REQUIRE_ALL=1) and
// when an image is under test, where a skip would hide a test that did not run.
func mustHave(t *testing.T, msg string) {
	t.Helper()
	if imageRoot != "" {
		t.Fatal("REAL-TRAFFIC TEST CANNOT RUN: " + msg)
	}
	need.Unmet(t, "REAL-TRAFFIC TEST: %s", msg)
}

// requireNetns skips (or fails, see mustHave) unless the test can create
// namespaces and run both iptables backends: the machine's, or those of
// the image under test.
func requireNetns(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		mustHave(t, "needs root to create network namespaces; run `make test` as root in CI")
	}
	var missing []string
	for _, b := range []string{"ip", "setpriv", "chroot"} {
		if _, err := exec.LookPath(b); err != nil {
			missing = append(missing, b)
		}
	}
	for _, b := range []string{
		"iptables-nft", "iptables-nft-save", "iptables-nft-restore", "ip6tables-nft", "ip6tables-nft-save", "ip6tables-nft-restore",
		"iptables-legacy", "iptables-legacy-save", "iptables-legacy-restore", "ip6tables-legacy", "ip6tables-legacy-save", "ip6tables-legacy-restore",
	} {
		if imageRoot != "" {
			if st, err := os.Stat(filepath.Join(imageRoot, "usr", "sbin", b)); err != nil || !st.Mode().IsRegular() {
				missing = append(missing, "/usr/sbin/"+b+" in the image")
			}
		} else if _, err := exec.LookPath(b); err != nil {
			missing = append(missing, b)
		}
	}
	if len(missing) > 0 {
		mustHave(t, fmt.Sprintf("missing %s; `make test` installs them (hack/install-deps.sh: apt-get install iptables iproute2 util-linux)", strings.Join(missing, ", ")))
	}
}

// nsTool is the `ip` argv that runs an iptables tool in namespace ns: the
// machine's, or the image's chrooted into its root.
func nsTool(ns, name string, args ...string) []string {
	argv := []string{"netns", "exec", ns}
	if imageRoot != "" {
		argv = append(argv, "chroot", imageRoot)
	}
	return append(append(argv, name), args...)
}

// nsCommand makes the command of nsTool, with the image's environment
// when an image is under test.
func nsCommand(ns, name string, args ...string) *exec.Cmd {
	cmd := exec.Command("ip", nsTool(ns, name, args...)...)
	if imageRoot != "" {
		cmd.Env = imageEnv
	}
	return cmd
}

func mustRunNS(t *testing.T, ns, name string, args ...string) string {
	t.Helper()
	out, err := nsCommand(ns, name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s in %s: %v\n%s", name, strings.Join(args, " "), ns, err, out)
	}
	return string(out)
}

var (
	helperOnce sync.Once
	helperBin  string
	helperErr  error
	nsSeq      atomic.Int64
)

// helperBinary is a copy of this test binary that any UID can run (the go
// tool keeps the original in a directory only root may enter).
func helperBinary(t *testing.T) string {
	t.Helper()
	helperOnce.Do(func() {
		self, err := os.Executable()
		if err != nil {
			helperErr = err
			return
		}
		dir, err := os.MkdirTemp("", "iptables-init-test-")
		if err != nil {
			helperErr = err
			return
		}
		if err := os.Chmod(dir, 0o755); err != nil {
			helperErr = err
			return
		}
		helperBin = filepath.Join(dir, "helper")
		b, err := os.ReadFile(self)
		if err == nil {
			err = os.WriteFile(helperBin, b, 0o755)
		}
		helperErr = err
	})
	if helperErr != nil {
		t.Fatalf("copy test binary for helpers: %v", helperErr)
	}
	return helperBin // TestMain removes it after all tests
}

// helperEnviron is the environment of helper processes. Under -race, the
// race runtime sleeps a second at exit unless told not to.
func helperEnviron() []string {
	return append(os.Environ(), "GORACE="+strings.TrimSpace(os.Getenv("GORACE")+" atexit_sleep_ms=0"))
}

func mustRun(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// newNetns creates a network namespace that is deleted when the test ends.
func newNetns(t *testing.T, role string) string {
	t.Helper()
	name := fmt.Sprintf("iptinit-%s-%d-%d", role, os.Getpid(), nsSeq.Add(1))
	mustRun(t, "ip", "netns", "add", name)
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
			t.Errorf("delete netns %s: %v: %s", name, err, out)
		}
	})
	mustRun(t, "ip", "-n", name, "link", "set", "lo", "up")
	return name
}

// inNetns runs fn on an OS thread switched into namespace ns. Sockets made
// there stay in ns. If switching back fails, the thread is never reused.
func inNetns(ns string, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		defer orig.Close()
		target, err := os.Open(filepath.Join("/run/netns", ns))
		if err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		defer target.Close()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("setns %s: %w", ns, err)
			return
		}
		err = fn()
		if unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET) == nil {
			runtime.UnlockOSThread()
		} // else: the goroutine ends locked and Go discards the thread
		errc <- err
	}()
	return <-errc
}

// ipv6On reports whether IPv6 is enabled in namespace ns.
func ipv6On(ns string) bool {
	out, err := exec.Command("ip", "netns", "exec", ns, "cat", "/proc/sys/net/ipv6/conf/all/disable_ipv6").Output()
	return err == nil && strings.TrimSpace(string(out)) == "0"
}

// pair is a pod namespace and a client namespace joined by a veth pair.
type pair struct {
	pod, client string
	ipv6        bool // IPv6 works in the namespaces
}

const (
	podIPv4    = "192.0.2.2"
	clientIPv4 = "192.0.2.1"
	podIPv6    = "2001:db8::2"
	clientIPv6 = "2001:db8::1"
	outside4   = "203.0.113.10"   // an address "outside the pod", on the client
	excluded4  = "198.51.100.10"  // another one, for exclusions
	outside6   = "2001:db8:1::10" // the same for IPv6
	excluded6  = "2001:db8:2::10"
)

func newPair(t *testing.T) *pair {
	t.Helper()
	p := &pair{pod: newNetns(t, "pod"), client: newNetns(t, "cli")}
	mustRun(t, "ip", "link", "add", "p0", "netns", p.pod, "type", "veth", "peer", "name", "c0", "netns", p.client)
	mustRun(t, "ip", "-n", p.pod, "addr", "add", podIPv4+"/24", "dev", "p0")
	mustRun(t, "ip", "-n", p.client, "addr", "add", clientIPv4+"/24", "dev", "c0")
	for _, a := range []string{outside4, excluded4} {
		mustRun(t, "ip", "-n", p.client, "addr", "add", a+"/32", "dev", "lo")
	}
	mustRun(t, "ip", "-n", p.pod, "link", "set", "p0", "up")
	mustRun(t, "ip", "-n", p.client, "link", "set", "c0", "up")
	mustRun(t, "ip", "-n", p.pod, "route", "add", "default", "via", clientIPv4)

	if !ipv6On(p.pod) {
		need.Without(t, "IPv6 is not enabled in a new network namespace on this kernel: IPv6 assertions are not run")
		return p
	}
	p.ipv6 = true
	mustRun(t, "ip", "-n", p.pod, "-6", "addr", "add", podIPv6+"/64", "dev", "p0", "nodad")
	mustRun(t, "ip", "-n", p.client, "-6", "addr", "add", clientIPv6+"/64", "dev", "c0", "nodad")
	for _, a := range []string{outside6, excluded6} {
		mustRun(t, "ip", "-n", p.client, "-6", "addr", "add", a+"/128", "dev", "lo", "nodad")
	}
	mustRun(t, "ip", "-n", p.pod, "-6", "route", "add", "default", "via", clientIPv6)
	return p
}

// serve listens in namespace ns on addr ("tcp4" or "tcp6") and answers
// every connection with one line from reply. It stops when the test ends.
func serve(t *testing.T, ns, network, addr string, reply func(c *net.TCPConn) string) {
	t.Helper()
	var ln net.Listener
	err := inNetns(ns, func() error {
		var err error
		ln, err = net.Listen(network, addr)
		return err
	})
	if err != nil {
		t.Fatalf("listen %s %s in %s: %v", network, addr, ns, err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(3 * time.Second))
				fmt.Fprintln(c, reply(c.(*net.TCPConn)))
			})
		}
	})
}

// originalDst reads where a redirected connection was going:
// SO_ORIGINAL_DST (IPv4) or IP6T_SO_ORIGINAL_DST (IPv6), both 80.
func originalDst(c *net.TCPConn) (net.Addr, error) {
	raw, err := c.SyscallConn()
	if err != nil {
		return nil, err
	}
	v6 := c.LocalAddr().(*net.TCPAddr).IP.To4() == nil
	var buf [28]byte // sockaddr_in6; sockaddr_in is its first 16 bytes
	var getErr error
	err = raw.Control(func(fd uintptr) {
		level := unix.SOL_IP
		if v6 {
			level = unix.SOL_IPV6
		}
		size := uint32(16)
		if v6 {
			size = 28
		}
		_, _, errno := unix.Syscall6(unix.SYS_GETSOCKOPT, fd, uintptr(level), 80,
			uintptr(unsafe.Pointer(&buf[0])), uintptr(unsafe.Pointer(&size)), 0)
		if errno != 0 {
			getErr = errno
		}
	})
	if err == nil {
		err = getErr
	}
	if err != nil {
		return nil, fmt.Errorf("getsockopt original destination: %w", err)
	}
	port := int(buf[2])<<8 | int(buf[3])
	if v6 {
		return &net.TCPAddr{IP: net.IP(slices.Clone(buf[8:24])), Port: port}, nil
	}
	return &net.TCPAddr{IP: net.IP(slices.Clone(buf[4:8])), Port: port}, nil
}

// startServers runs, in the pod: the app on 8080 and 9090, the inbound
// stand-in on 10001 and the outbound stand-in on 127.0.0.1/::1:10002; in
// the client namespace: "outside" servers on 80 and 9999.
func startServers(t *testing.T, p *pair) {
	t.Helper()
	standIn := func(role string) func(c *net.TCPConn) string {
		return func(c *net.TCPConn) string {
			dst, err := originalDst(c)
			if err != nil {
				return role + " error " + err.Error()
			}
			return role + " " + dst.String()
		}
	}
	local := func(role string) func(c *net.TCPConn) string {
		return func(c *net.TCPConn) string { return role + " " + c.LocalAddr().String() }
	}
	nets := []string{"tcp4"}
	if p.ipv6 {
		nets = append(nets, "tcp6")
	}
	for _, n := range nets {
		all, lo := "0.0.0.0", "127.0.0.1"
		if n == "tcp6" {
			all, lo = "::", "::1"
		}
		serve(t, p.pod, n, net.JoinHostPort(all, "8080"), local("app"))
		serve(t, p.pod, n, net.JoinHostPort(all, "9090"), local("app"))
		serve(t, p.pod, n, net.JoinHostPort(all, "10001"), standIn("inbound"))
		serve(t, p.pod, n, net.JoinHostPort(lo, "10002"), standIn("outbound"))
		serve(t, p.client, n, net.JoinHostPort(all, "80"), local("outside"))
		serve(t, p.client, n, net.JoinHostPort(all, "9999"), local("outside"))
	}
}

// fromClient dials addr from the client namespace.
func (p *pair) fromClient(addr string) (string, error) {
	var conn net.Conn
	var dialErr error
	err := inNetns(p.client, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		conn, dialErr = (&net.Dialer{}).DialContext(ctx, "tcp", addr)
		return nil
	})
	if err != nil {
		return "", err
	}
	if dialErr != nil {
		return "", dialErr
	}
	return dialAndRead(func(context.Context) (net.Conn, error) { return conn, nil })
}

// fromPod dials addr from inside the pod as uid:gid, through setpriv.
func (p *pair) fromPod(t *testing.T, uid, gid int, addr string) (string, error) {
	t.Helper()
	cmd := exec.Command("ip", "netns", "exec", p.pod,
		"setpriv", "--reuid="+strconv.Itoa(uid), "--regid="+strconv.Itoa(gid), "--clear-groups",
		helperBinary(t), addr)
	cmd.Env = append(helperEnviron(), helperEnv+"=dial")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("%v: %s", err, strings.TrimSpace(stderr.String()))
	}
	return strings.TrimSpace(stdout.String()), nil
}

// runInit runs iptables-init (this binary in helper mode) inside ns.
func runInit(t *testing.T, ns string, env []string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	cmd := exec.Command("ip", append([]string{"netns", "exec", ns, helperBinary(t)}, args...)...)
	cmd.Env = append(append(helperEnviron(), helperEnv+"=iptables-init"), env...)
	if imageRoot != "" {
		// The image's own program, as its entrypoint, in its environment.
		cmd = nsCommand(ns, imageEntrypoint, args...)
		cmd.Env = append(cmd.Env, env...)
	}
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		code = ee.ExitCode()
	default:
		t.Fatalf("run iptables-init: %v", err)
	}
	return code, out.String(), errb.String()
}

func mustInit(t *testing.T, ns string, args ...string) string {
	t.Helper()
	code, stdout, stderr := runInit(t, ns, nil, args...)
	if code != 0 {
		t.Fatalf("iptables-init %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), code, stdout, stderr)
	}
	return stderr
}

// tables is what both families' save tools print for one backend,
// canonical (no comments, no counters).
func tables(t *testing.T, ns string, mode redirect.Mode, ipv6 bool) string {
	t.Helper()
	fams := []redirect.Family{redirect.IPv4}
	if ipv6 {
		fams = append(fams, redirect.IPv6)
	}
	var b strings.Builder
	for _, f := range fams {
		out := mustRunNS(t, ns, tool(mode, f, "save"))
		fmt.Fprintf(&b, "## %s\n%s", f, redirect.CanonicalSave([]byte(out)))
	}
	return b.String()
}

// seed puts someone else's rules into the pod's tables (both families), so
// that the tests see they survive and keep their place.
func seed(t *testing.T, ns string, mode redirect.Mode, ipv6 bool) {
	t.Helper()
	fams := []redirect.Family{redirect.IPv4}
	if ipv6 {
		fams = append(fams, redirect.IPv6)
	}
	for _, f := range fams {
		ipt := tool(mode, f, "")
		mustRunNS(t, ns, ipt, "-t", "nat", "-N", "KEEP_ME")
		mustRunNS(t, ns, ipt, "-t", "nat", "-A", "KEEP_ME", "-p", "udp", "-j", "RETURN")
		mustRunNS(t, ns, ipt, "-t", "nat", "-A", "PREROUTING", "-p", "udp", "--dport", "5353", "-j", "RETURN")
		mustRunNS(t, ns, ipt, "-t", "nat", "-A", "OUTPUT", "-p", "udp", "-j", "KEEP_ME")
		mustRunNS(t, ns, ipt, "-t", "filter", "-A", "INPUT", "-p", "tcp", "--dport", "22", "-j", "ACCEPT")
	}
}

type probe struct {
	name     string
	ipv6     bool   // needs IPv6
	uid, gid int    // -1: dial from the client namespace
	addr     string // host:port
	want     string // reply
}

func checkProbes(t *testing.T, p *pair, probes []probe) {
	t.Helper()
	for _, pr := range probes {
		if pr.ipv6 && !p.ipv6 {
			continue
		}
		var got string
		var err error
		if pr.uid < 0 {
			got, err = p.fromClient(pr.addr)
		} else {
			got, err = p.fromPod(t, pr.uid, pr.gid, pr.addr)
		}
		if err != nil {
			t.Errorf("%s: dial %s: %v", pr.name, pr.addr, err)
			continue
		}
		if got != pr.want {
			t.Errorf("%s: dial %s: got %q, want %q", pr.name, pr.addr, got, pr.want)
		}
	}
}

func hp(host string, port int) string { return net.JoinHostPort(host, strconv.Itoa(port)) }

// TestRealTraffic is the acceptance test of the issue, once per backend.
func TestRealTraffic(t *testing.T) {
	requireNetns(t)
	for _, mode := range []redirect.Mode{redirect.ModeNFT, redirect.ModeLegacy} {
		t.Run(string(mode), func(t *testing.T) {
			p := newPair(t)
			startServers(t, p)
			seed(t, p.pod, mode, p.ipv6)
			original := tables(t, p.pod, mode, p.ipv6)

			// Before iptables-init nothing is redirected.
			checkProbes(t, p, []probe{
				{"no rules: inbound reaches the app", false, -1, 0, hp(podIPv4, 8080), "app " + hp(podIPv4, 8080)},
				{"no rules: outbound reaches the outside", false, 1000, 1000, hp(outside4, 80), "outside " + hp(outside4, 80)},
			})

			args := []string{
				"--iptables-mode=" + string(mode),
				"--exclude-inbound-ports=9090",
				"--exclude-outbound-ports=9999",
				"--exclude-outbound-ip-ranges=198.51.100.0/24,2001:db8:2::/64",
			}
			log := mustInit(t, p.pod, args...)
			if !strings.Contains(log, `"backend":"`+string(mode)+`"`) {
				t.Errorf("log does not name backend %s: %s", mode, log)
			}
			checkProbes(t, p, []probe{
				{"inbound app port captured", false, -1, 0, hp(podIPv4, 8080), "inbound " + hp(podIPv4, 8080)},
				{"excluded inbound port goes to the app", false, -1, 0, hp(podIPv4, 9090), "app " + hp(podIPv4, 9090)},
				{"app UID outbound captured", false, 1000, 1000, hp(outside4, 80), "outbound " + hp(outside4, 80)},
				{"root outbound captured", false, 0, 0, hp(outside4, 80), "outbound " + hp(outside4, 80)},
				{"proxy UID 1337 bypasses", false, 1337, 1337, hp(outside4, 80), "outside " + hp(outside4, 80)},
				{"loopback not captured", false, 1000, 1000, hp("127.0.0.1", 8080), "app " + hp("127.0.0.1", 8080)},
				{"own pod IP goes through lo, not captured", false, 1000, 1000, hp(podIPv4, 8080), "app " + hp(podIPv4, 8080)},
				{"excluded outbound port bypasses", false, 1000, 1000, hp(outside4, 9999), "outside " + hp(outside4, 9999)},
				{"excluded outbound CIDR bypasses", false, 1000, 1000, hp(excluded4, 80), "outside " + hp(excluded4, 80)},

				{"IPv6 inbound captured", true, -1, 0, hp(podIPv6, 8080), "inbound " + hp(podIPv6, 8080)},
				{"IPv6 excluded inbound port", true, -1, 0, hp(podIPv6, 9090), "app " + hp(podIPv6, 9090)},
				{"IPv6 outbound captured", true, 1000, 1000, hp(outside6, 80), "outbound " + hp(outside6, 80)},
				{"IPv6 proxy UID bypasses", true, 1337, 1337, hp(outside6, 80), "outside " + hp(outside6, 80)},
				{"IPv6 loopback not captured", true, 1000, 1000, hp("::1", 8080), "app " + hp("::1", 8080)},
				{"IPv6 excluded port bypasses", true, 1000, 1000, hp(outside6, 9999), "outside " + hp(outside6, 9999)},
				{"IPv6 excluded CIDR bypasses", true, 1000, 1000, hp(excluded6, 80), "outside " + hp(excluded6, 80)},
			})

			// Our jumps come first; the seeded rules are still there after them.
			first := tables(t, p.pod, mode, p.ipv6)
			for _, w := range []string{
				"-A PREROUTING -p tcp -j SIDECAR_INBOUND\n-A PREROUTING -p udp -m udp --dport 5353 -j RETURN\n",
				"-A OUTPUT -p tcp -j SIDECAR_OUTPUT\n-A OUTPUT -p udp -j KEEP_ME\n",
				"-A INPUT -p tcp -m tcp --dport 22 -j ACCEPT\n",
			} {
				if !strings.Contains(first, w) {
					t.Errorf("tables after iptables-init lack %q:\n%s", w, first)
				}
			}

			// Idempotent: a second run leaves the tables byte-identical.
			mustInit(t, p.pod, args...)
			if second := tables(t, p.pod, mode, p.ipv6); second != first {
				t.Errorf("second run changed the tables:\n--- first\n%s--- second\n%s", first, second)
			}

			// --cleanup restores the original tables exactly.
			mustInit(t, p.pod, append(args, "--cleanup")...)
			if got := tables(t, p.pod, mode, p.ipv6); got != original {
				t.Errorf("--cleanup did not restore the tables:\n--- original\n%s--- after cleanup\n%s", original, got)
			}
			checkProbes(t, p, []probe{
				{"after cleanup: inbound reaches the app", false, -1, 0, hp(podIPv4, 8080), "app " + hp(podIPv4, 8080)},
				{"after cleanup: outbound reaches the outside", false, 1000, 1000, hp(outside4, 80), "outside " + hp(outside4, 80)},
			})

			// Include lists: only those ports and CIDRs are captured; the
			// proxy GID bypasses too.
			include := []string{
				"--iptables-mode=" + string(mode),
				"--include-inbound-ports=8080",
				"--include-outbound-ip-ranges=203.0.113.0/24,2001:db8:1::/64",
				"--proxy-gid=1338",
			}
			mustInit(t, p.pod, include...)
			checkProbes(t, p, []probe{
				{"included inbound port captured", false, -1, 0, hp(podIPv4, 8080), "inbound " + hp(podIPv4, 8080)},
				{"not included inbound port", false, -1, 0, hp(podIPv4, 9090), "app " + hp(podIPv4, 9090)},
				{"included CIDR captured", false, 1000, 1000, hp(outside4, 80), "outbound " + hp(outside4, 80)},
				{"included CIDR, other port captured", false, 1000, 1000, hp(outside4, 9999), "outbound " + hp(outside4, 9999)},
				{"not included CIDR bypasses", false, 1000, 1000, hp(excluded4, 80), "outside " + hp(excluded4, 80)},
				{"proxy GID bypasses", false, 1000, 1338, hp(outside4, 80), "outside " + hp(outside4, 80)},
				{"IPv6 included CIDR captured", true, 1000, 1000, hp(outside6, 80), "outbound " + hp(outside6, 80)},
				{"IPv6 not included CIDR bypasses", true, 1000, 1000, hp(excluded6, 80), "outside " + hp(excluded6, 80)},
				{"IPv6 proxy GID bypasses", true, 1000, 1338, hp(outside6, 80), "outside " + hp(outside6, 80)},
			})
			mustInit(t, p.pod, append(include, "--cleanup")...)
			if got := tables(t, p.pod, mode, p.ipv6); got != original {
				t.Errorf("--cleanup after the include run did not restore the tables:\n--- original\n%s--- after cleanup\n%s", original, got)
			}
		})
	}
}

// TestDetectRealBackend: --iptables-mode=auto picks the backend that already
// holds rules in the namespace, and nft in an empty one.
func TestDetectRealBackend(t *testing.T) {
	requireNetns(t)
	for _, tc := range []struct {
		name   string
		seeded redirect.Mode // "" = nothing seeded
		want   redirect.Mode
	}{
		{"empty namespace", "", redirect.ModeNFT},
		{"legacy rules present", redirect.ModeLegacy, redirect.ModeLegacy},
		{"nft rules present", redirect.ModeNFT, redirect.ModeNFT},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ns := newNetns(t, "det")
			if tc.seeded != "" {
				seed(t, ns, tc.seeded, false)
			}
			code, stdout, stderr := runInit(t, ns, nil, "--dry-run")
			if code != 0 {
				t.Fatalf("--dry-run: exit %d: %s", code, stderr)
			}
			if !strings.Contains(stdout, "# backend: "+string(tc.want)+" (") {
				t.Errorf("--dry-run picked another backend than %s:\n%s", tc.want, stdout)
			}
			mustInit(t, ns)
			other := redirect.ModeLegacy
			if tc.want == redirect.ModeLegacy {
				other = redirect.ModeNFT
			}
			if got := tables(t, ns, tc.want, false); !strings.Contains(got, ":SIDECAR_OUTPUT - [0:0]") {
				t.Errorf("our chains are not in %s:\n%s", tc.want, got)
			}
			if got := tables(t, ns, other, false); strings.Contains(got, "SIDECAR_") {
				t.Errorf("our chains leaked into %s:\n%s", other, got)
			}
			// A re-run in auto mode stays with the same backend.
			if log := mustInit(t, ns); !strings.Contains(log, `"backend":"`+string(tc.want)+`"`) {
				t.Errorf("second auto run switched backend: %s", log)
			}
		})
	}
}

// TestRealFailures: missing binaries and capabilities give one clear line
// and a non-zero exit, and leave the tables alone.
func TestRealFailures(t *testing.T) {
	if imageRoot != "" {
		t.Skip("rearranges this package's PATH and capabilities; the image test runs TestRealTraffic and TestDetectRealBackend")
	}
	requireNetns(t)
	ns := newNetns(t, "fail")
	before := tables(t, ns, redirect.ModeNFT, true)

	// A PATH with only the IPv4 nft tools.
	v4only := t.TempDir()
	for _, name := range []string{"iptables-nft", "iptables-nft-save", "iptables-nft-restore"} {
		target, err := exec.LookPath(name)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(target, filepath.Join(v4only, name)); err != nil {
			t.Fatal(err)
		}
	}
	empty := t.TempDir()
	setpriv, err := exec.LookPath("setpriv")
	if err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		name string
		env  []string
		wrap []string // command in front of the binary
		args []string
		want []string
	}{
		{"IPv6 on but ip6tables missing", []string{"PATH=" + v4only}, nil, []string{"--iptables-mode=nft"},
			[]string{"ip6tables-nft-restore is not installed", "IPv6 is on (auto", "--ipv6=off"}},
		{"no iptables at all", []string{"PATH=" + empty}, nil, nil,
			[]string{"no iptables backend installed", "iptables package"}},
		{"no capabilities", nil, []string{setpriv, "--inh-caps=-all", "--bounding-set=-all"}, nil,
			[]string{"missing capability NET_ADMIN", "capabilities.add"}},
		{"legacy without NET_RAW", nil, []string{setpriv, "--inh-caps=-all", "--bounding-set=-all,+net_admin"}, []string{"--iptables-mode=legacy"},
			[]string{"missing capability NET_RAW"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if strings.HasPrefix(tc.name, "IPv6") && !ipv6On(ns) {
				need.Unmet(t, "IPv6 is not enabled in a new network namespace on this kernel; enable it (sysctl net.ipv6.conf.default.disable_ipv6=0)")
			}
			cmdArgs := append([]string{"netns", "exec", ns}, tc.wrap...)
			cmdArgs = append(append(cmdArgs, helperBinary(t)), tc.args...)
			cmd := exec.Command("ip", cmdArgs...)
			cmd.Env = append(append(helperEnviron(), helperEnv+"=iptables-init"), tc.env...)
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			err := cmd.Run()
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != 1 {
				t.Fatalf("want exit status 1, got %v; stderr: %s", err, stderr.String())
			}
			lines := strings.Split(strings.TrimRight(stderr.String(), "\n"), "\n")
			if len(lines) != 1 {
				t.Errorf("want one line on stderr, got %d:\n%s", len(lines), stderr.String())
			}
			for _, w := range tc.want {
				if !strings.Contains(stderr.String(), w) {
					t.Errorf("stderr %q lacks %q", stderr.String(), w)
				}
			}
		})
	}
	if after := tables(t, ns, redirect.ModeNFT, true); after != before {
		t.Errorf("a failed run changed the tables:\n--- before\n%s--- after\n%s", before, after)
	}

	// With IPv6 disabled in the namespace, auto leaves ip6tables alone and
	// the IPv4-only tools suffice.
	mustRun(t, "ip", "netns", "exec", ns, "sh", "-c", "echo 1 > /proc/sys/net/ipv6/conf/all/disable_ipv6")
	code, _, stderr := runInit(t, ns, []string{"PATH=" + v4only}, "--iptables-mode=nft")
	if code != 0 {
		t.Fatalf("IPv6 disabled, IPv4 tools only: exit %d: %s", code, stderr)
	}
	if !strings.Contains(stderr, `"families":"ipv4"`) {
		t.Errorf("want IPv4 only: %s", stderr)
	}
}

// TestApplyTiming measures rule application for the default spec: the
// median of 20 runs of iptables-init in a fresh namespace (auto backend,
// IPv4 and IPv6), as the program's own duration and as wall-clock time of
// the whole process (including `ip netns exec` and process start).
func TestApplyTiming(t *testing.T) {
	requireNetns(t)
	ns := newNetns(t, "time")
	const runs = 20
	var internal, wall []time.Duration
	for range runs {
		start := time.Now()
		log := mustInit(t, ns)
		wall = append(wall, time.Since(start))
		var rec struct {
			Duration string `json:"duration"`
		}
		if err := json.NewDecoder(strings.NewReader(log)).Decode(&rec); err != nil {
			t.Fatalf("decode log %q: %v", log, err)
		}
		d, err := time.ParseDuration(rec.Duration)
		if err != nil {
			t.Fatalf("log duration %q: %v", rec.Duration, err)
		}
		internal = append(internal, d)
	}
	median := func(ds []time.Duration) time.Duration {
		s := slices.Clone(ds)
		slices.Sort(s)
		return (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	t.Logf("default spec, %d runs: median %v inside iptables-init (min %v, max %v); median %v wall clock per process",
		runs, median(internal), slices.Min(internal), slices.Max(internal), median(wall))
}
