package testenv

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	kubeconfigv1 "k8s.io/client-go/tools/clientcmd/api/v1"
	"sigs.k8s.io/yaml"
)

// Config configures the control plane.
type Config struct {
	// Dir holds certificates, data, logs and the kubeconfig. Empty: a new
	// temporary directory, removed by Stop unless KeepDir.
	Dir     string
	KeepDir bool
	// StartTimeout bounds each component's wait for readiness.
	StartTimeout time.Duration
	// StopGrace is how long each component gets between SIGTERM and SIGKILL.
	StopGrace time.Duration
	// ServiceClusterIPRange is the apiserver's service range (only stored:
	// nothing routes it here).
	ServiceClusterIPRange string
	// ExtraAPIServerArgs are appended to the apiserver's command line.
	ExtraAPIServerArgs []string
}

// DefaultConfig returns the defaults: a temporary directory, 2 minutes to
// start each component, 10 s to stop.
func DefaultConfig() Config {
	return Config{StartTimeout: 2 * time.Minute, StopGrace: 10 * time.Second, ServiceClusterIPRange: "10.96.0.0/24"}
}

// AddFlags registers the control-plane flags.
func (c *Config) AddFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.Dir, "dir", c.Dir, "work `dir` for certificates, etcd data, logs and the kubeconfig (default: a new temporary directory)")
	fs.BoolVar(&c.KeepDir, "keep-dir", c.KeepDir, "keep the work directory after stopping (always kept when --dir is given)")
	fs.DurationVar(&c.StartTimeout, "start-timeout", c.StartTimeout, "give each component this long to become ready")
	fs.DurationVar(&c.StopGrace, "stop-grace", c.StopGrace, "time between SIGTERM and SIGKILL when stopping a component")
	fs.StringVar(&c.ServiceClusterIPRange, "service-cluster-ip-range", c.ServiceClusterIPRange, "the apiserver's service `CIDR`")
}

// Validate names every wrong field.
func (c Config) Validate() error {
	var errs []error
	if c.StartTimeout <= 0 {
		errs = append(errs, fmt.Errorf("--start-timeout=%s: want a positive duration such as 2m", c.StartTimeout))
	}
	if c.StopGrace <= 0 {
		errs = append(errs, fmt.Errorf("--stop-grace=%s: want a positive duration such as 10s", c.StopGrace))
	}
	if p, err := netip.ParsePrefix(c.ServiceClusterIPRange); err != nil || p.Bits() < 12 {
		errs = append(errs, fmt.Errorf("--service-cluster-ip-range=%q: want a CIDR no larger than /12, such as 10.96.0.0/24", c.ServiceClusterIPRange))
	}
	return errors.Join(errs...)
}

// ControlPlane is a running etcd, kube-apiserver and kube-controller-manager.
type ControlPlane struct {
	Dir          string
	Kubeconfig   string
	APIServerURL string
	// Token is the static admin token (user admin, group system:masters).
	Token    string
	CA       *CA
	Versions Versions
	Binaries Binaries

	cfg     Config
	etcdURL string
	ownDir  bool
	procs   []*Process // in start order
	log     *slog.Logger
	stopped bool
}

// startAttempts bounds retries when a free port was taken between probing
// and binding.
const startAttempts = 3

// Start brings up etcd, kube-apiserver and kube-controller-manager on
// 127.0.0.1 and waits until the apiserver is ready and the controller
// manager has created the default ServiceAccount. On error everything
// started is stopped again.
func Start(ctx context.Context, cfg Config, bins Binaries, log *slog.Logger) (cp *ControlPlane, err error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cp = &ControlPlane{cfg: cfg, log: log, Versions: bins.Versions, Binaries: bins, Dir: cfg.Dir}
	if cp.Dir == "" {
		d, err := os.MkdirTemp("", "sidecar-injector-testenv-")
		if err != nil {
			return nil, fmt.Errorf("control plane: work directory: %w", err)
		}
		cp.Dir, cp.ownDir = d, true
	} else if err := os.MkdirAll(cp.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("control plane: work directory: %w", err)
	}
	defer func() {
		if err != nil {
			_ = cp.Stop()
		}
	}()
	start := time.Now()
	if err := cp.writeSecrets(); err != nil {
		return nil, err
	}
	if err := cp.startEtcd(ctx); err != nil {
		return nil, err
	}
	if err := cp.startAPIServer(ctx); err != nil {
		return nil, err
	}
	if err := cp.writeKubeconfig(); err != nil {
		return nil, err
	}
	if err := cp.startControllerManager(ctx); err != nil {
		return nil, err
	}
	log.Info("control plane ready", "apiserver", cp.APIServerURL, "kubeconfig", cp.Kubeconfig, "took", time.Since(start).Round(time.Millisecond))
	return cp, nil
}

func (cp *ControlPlane) path(parts ...string) string {
	return filepath.Join(append([]string{cp.Dir}, parts...)...)
}

// LogDir holds one log file per component.
func (cp *ControlPlane) LogDir() string { return cp.path("logs") }

func (cp *ControlPlane) writeSecrets() error {
	ca, err := NewCA("sidecar-injector-testenv-ca", 30*24*time.Hour)
	if err != nil {
		return err
	}
	cp.CA = ca
	serving, err := ca.Issue(LoopbackServing("kube-apiserver", 30*24*time.Hour))
	if err != nil {
		return err
	}
	if err := serving.WriteFiles(cp.path("pki", "serving.crt"), cp.path("pki", "serving.key")); err != nil {
		return err
	}
	if err := writeFile(cp.path("pki", "ca.crt"), ca.CertPEM, 0o644); err != nil {
		return err
	}
	sa, err := NewServiceAccountKey()
	if err != nil {
		return err
	}
	if err := writeFile(cp.path("pki", "sa.key"), sa.PrivatePEM, 0o600); err != nil {
		return err
	}
	if err := writeFile(cp.path("pki", "sa.pub"), sa.PublicPEM, 0o644); err != nil {
		return err
	}
	tok := make([]byte, 24)
	if _, err := rand.Read(tok); err != nil {
		return fmt.Errorf("admin token: %w", err)
	}
	cp.Token = hex.EncodeToString(tok)
	// token,user,uid,"groups"
	line := fmt.Sprintf("%s,admin,admin,%q\n", cp.Token, "system:masters")
	return writeFile(cp.path("pki", "tokens.csv"), []byte(line), 0o600)
}

// startWithRetry starts a component on fresh ports until it is ready,
// retrying when it exits early (a port taken by someone else in between).
func (cp *ControlPlane) startWithRetry(ctx context.Context, name string, nPorts int, spec func(ports []int) (ProcessSpec, func(context.Context) error)) error {
	var lastErr error
	for attempt := 1; attempt <= startAttempts; attempt++ {
		ports, err := FreePorts(nPorts)
		if err != nil {
			return err
		}
		ps, ready := spec(ports)
		cp.log.Info("starting", "component", name, "ports", ports, "log", ps.LogFile)
		p, err := StartProcess(ps)
		if err != nil {
			return err
		}
		err = WaitFor(ctx, p, cp.cfg.StartTimeout, ready)
		if err == nil {
			cp.procs = append(cp.procs, p)
			return nil
		}
		_ = p.Stop(cp.cfg.StopGrace)
		lastErr = fmt.Errorf("%s did not become ready: %w\nlast lines of %s:\n%s", name, err, ps.LogFile, p.LogTail(30))
		if ctx.Err() != nil || p.ExitError() == nil || !strings.Contains(p.LogTail(200), "address already in use") {
			return lastErr
		}
		cp.log.Warn("port taken, retrying with other ports", "component", name, "attempt", attempt)
	}
	return lastErr
}

func (cp *ControlPlane) startEtcd(ctx context.Context) error {
	return cp.startWithRetry(ctx, "etcd", 2, func(ports []int) (ProcessSpec, func(context.Context) error) {
		client := "http://127.0.0.1:" + strconv.Itoa(ports[0])
		peer := "http://127.0.0.1:" + strconv.Itoa(ports[1])
		spec := ProcessSpec{
			Name: "etcd", Path: cp.Binaries.Etcd, LogFile: filepath.Join(cp.LogDir(), "etcd.log"),
			Args: []string{
				"--name=testenv",
				"--data-dir=" + cp.path("etcd"),
				"--listen-client-urls=" + client,
				"--advertise-client-urls=" + client,
				"--listen-peer-urls=" + peer,
				"--initial-advertise-peer-urls=" + peer,
				"--initial-cluster=testenv=" + peer,
				"--initial-cluster-state=new",
				// A throw-away store: durability is not worth the fsyncs.
				"--unsafe-no-fsync=true",
				"--log-level=warn",
			},
		}
		ready := func(ctx context.Context) error {
			if err := httpOK(ctx, http.DefaultClient, client+"/health", ""); err != nil {
				return err
			}
			cp.etcdURL = client
			return nil
		}
		return spec, ready
	})
}

func (cp *ControlPlane) startAPIServer(ctx context.Context) error {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(cp.CA.CertPEM)
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{Proxy: nil, TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}
	defer client.CloseIdleConnections()
	return cp.startWithRetry(ctx, "kube-apiserver", 1, func(ports []int) (ProcessSpec, func(context.Context) error) {
		url := "https://127.0.0.1:" + strconv.Itoa(ports[0])
		args := []string{
			"--etcd-servers=" + cp.etcdURL,
			"--bind-address=127.0.0.1",
			"--advertise-address=127.0.0.1",
			"--secure-port=" + strconv.Itoa(ports[0]),
			"--cert-dir=" + cp.path("apiserver"),
			"--tls-cert-file=" + cp.path("pki", "serving.crt"),
			"--tls-private-key-file=" + cp.path("pki", "serving.key"),
			"--client-ca-file=" + cp.path("pki", "ca.crt"),
			"--token-auth-file=" + cp.path("pki", "tokens.csv"),
			"--authorization-mode=RBAC",
			"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
			"--service-account-key-file=" + cp.path("pki", "sa.pub"),
			"--service-account-signing-key-file=" + cp.path("pki", "sa.key"),
			"--service-cluster-ip-range=" + cp.cfg.ServiceClusterIPRange,
			"--allow-privileged=true",
			// The kubernetes Service cannot point at a loopback address.
			"--endpoint-reconciler-type=none",
			"--profiling=false",
		}
		spec := ProcessSpec{
			Name: "kube-apiserver", Path: cp.Binaries.KubeAPIServer, LogFile: filepath.Join(cp.LogDir(), "kube-apiserver.log"),
			Args: append(args, cp.cfg.ExtraAPIServerArgs...),
		}
		ready := func(ctx context.Context) error {
			if err := httpOK(ctx, client, url+"/readyz", cp.Token); err != nil {
				return err
			}
			cp.APIServerURL = url
			return nil
		}
		return spec, ready
	})
}

func (cp *ControlPlane) startControllerManager(ctx context.Context) error {
	cs, err := kubernetes.NewForConfig(cp.RESTConfig())
	if err != nil {
		return fmt.Errorf("kube-controller-manager: client: %w", err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(cp.CA.CertPEM)
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{Proxy: nil, TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}
	defer client.CloseIdleConnections()
	return cp.startWithRetry(ctx, "kube-controller-manager", 1, func(ports []int) (ProcessSpec, func(context.Context) error) {
		url := "https://127.0.0.1:" + strconv.Itoa(ports[0])
		spec := ProcessSpec{
			Name: "kube-controller-manager", Path: cp.Binaries.KubeControllerManager, LogFile: filepath.Join(cp.LogDir(), "kube-controller-manager.log"),
			Args: []string{
				"--kubeconfig=" + cp.Kubeconfig,
				"--authentication-kubeconfig=" + cp.Kubeconfig,
				"--authorization-kubeconfig=" + cp.Kubeconfig,
				"--bind-address=127.0.0.1",
				"--secure-port=" + strconv.Itoa(ports[0]),
				"--cert-dir=" + cp.path("controller-manager"),
				"--tls-cert-file=" + cp.path("pki", "serving.crt"),
				"--tls-private-key-file=" + cp.path("pki", "serving.key"),
				"--leader-elect=false",
				// Every controller that runs without a cloud or nodes; no
				// kubelet here, so pods are stored, not run.
				"--controllers=*",
				"--use-service-account-credentials=false",
				"--service-account-private-key-file=" + cp.path("pki", "sa.key"),
				"--root-ca-file=" + cp.path("pki", "ca.crt"),
				"--profiling=false",
			},
		}
		ready := func(ctx context.Context) error {
			if err := httpOK(ctx, client, url+"/healthz", ""); err != nil {
				return err
			}
			// The serviceaccount controller is what lets pods in: the
			// ServiceAccount admission plugin refuses pods whose
			// namespace has no "default" ServiceAccount yet.
			if _, err := cs.CoreV1().ServiceAccounts(metav1.NamespaceDefault).Get(ctx, "default", metav1.GetOptions{}); err != nil {
				return fmt.Errorf("default ServiceAccount: %w", err)
			}
			return nil
		}
		return spec, ready
	})
}

// RESTConfig returns a client config for the admin user.
func (cp *ControlPlane) RESTConfig() *rest.Config {
	return &rest.Config{
		Host:            cp.APIServerURL,
		BearerToken:     cp.Token,
		TLSClientConfig: rest.TLSClientConfig{CAData: cp.CA.CertPEM},
		QPS:             100,
		Burst:           200,
		Timeout:         30 * time.Second,
		UserAgent:       "sidecar-injector-testenv",
	}
}

func (cp *ControlPlane) writeKubeconfig() error {
	cp.Kubeconfig = cp.path("kubeconfig")
	b, err := Kubeconfig(cp.APIServerURL, cp.CA.CertPEM, cp.Token)
	if err != nil {
		return err
	}
	return writeFile(cp.Kubeconfig, b, 0o600)
}

// Kubeconfig renders a kubeconfig (YAML) for server, trusted through caPEM,
// with a bearer token; its context is named "testenv".
func Kubeconfig(server string, caPEM []byte, token string) ([]byte, error) {
	kc := kubeconfigv1.Config{
		Kind:           "Config",
		APIVersion:     "v1",
		CurrentContext: "testenv",
		Clusters:       []kubeconfigv1.NamedCluster{{Name: "testenv", Cluster: kubeconfigv1.Cluster{Server: server, CertificateAuthorityData: caPEM}}},
		AuthInfos:      []kubeconfigv1.NamedAuthInfo{{Name: "admin", AuthInfo: kubeconfigv1.AuthInfo{Token: token}}},
		Contexts:       []kubeconfigv1.NamedContext{{Name: "testenv", Context: kubeconfigv1.Context{Cluster: "testenv", AuthInfo: "admin", Namespace: metav1.NamespaceDefault}}},
	}
	b, err := yaml.Marshal(kc)
	if err != nil {
		return nil, fmt.Errorf("kubeconfig: %w", err)
	}
	return b, nil
}

// Stop stops the components in reverse start order (only the processes this
// control plane started) and removes a temporary work directory.
func (cp *ControlPlane) Stop() error {
	if cp.stopped {
		return nil
	}
	cp.stopped = true
	var errs []error
	for i := len(cp.procs) - 1; i >= 0; i-- {
		if err := cp.procs[i].Stop(cp.cfg.StopGrace); err != nil {
			errs = append(errs, err)
		}
	}
	if cp.ownDir && !cp.cfg.KeepDir {
		if err := os.RemoveAll(cp.Dir); err != nil {
			errs = append(errs, fmt.Errorf("remove %s: %w", cp.Dir, err))
		}
	}
	return errors.Join(errs...)
}

// Processes returns the running components, in start order.
func (cp *ControlPlane) Processes() []*Process { return append([]*Process(nil), cp.procs...) }

// WaitFor polls ready every 200 ms until it returns nil, p exits, or
// timeout passes.
func WaitFor(ctx context.Context, p *Process, timeout time.Duration, ready func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var last error
	for {
		if p != nil {
			if err := p.ExitError(); err != nil {
				return err
			}
		}
		rctx, rcancel := context.WithTimeout(ctx, 5*time.Second)
		last = ready(rctx)
		rcancel()
		if last == nil {
			return nil
		}
		var exited <-chan struct{}
		if p != nil {
			exited = p.Exited()
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("not ready after %s: %w", timeout, last)
		case <-exited:
			return p.ExitError()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// httpOK GETs url and wants 200.
func httpOK(ctx context.Context, c *http.Client, url, token string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s: %s", url, resp.Status, strings.TrimSpace(string(body)))
	}
	return nil
}

// FreePorts returns n distinct ports free on 127.0.0.1 right now.
func FreePorts(n int) ([]int, error) {
	ls := make([]net.Listener, 0, n)
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	ports := make([]int, 0, n)
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("find a free port on 127.0.0.1: %w", err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// WaitForServiceAccount waits until namespace ns has its "default"
// ServiceAccount, without which the ServiceAccount admission plugin refuses
// pods created directly (controllers retry by themselves).
func WaitForServiceAccount(ctx context.Context, cs kubernetes.Interface, ns string, timeout time.Duration) error {
	return WaitFor(ctx, nil, timeout, func(ctx context.Context) error {
		_, err := cs.CoreV1().ServiceAccounts(ns).Get(ctx, "default", metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return fmt.Errorf("namespace %s has no default ServiceAccount yet", ns)
		}
		return err
	})
}
