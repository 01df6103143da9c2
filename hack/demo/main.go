// Command demo is `make demo`: it brings up the local control plane of
// package test/testenv, runs `sidecar-injector-webhook` and `sidecar-injector
// xds` as local processes, registers the webhook as the Helm chart does (with
// a loopback URL), applies a sample two-container Deployment in a namespace
// labelled sidecar-injection=enabled, and prints what the injector made of
// its pod and the listeners the xDS server serves that pod's Envoy. Then it
// keeps the cluster running until Ctrl-C, or stops at once with --once.
//
//	go run ./hack/demo          # make demo
//	go run ./hack/demo --once   # make demo DEMO_ARGS=--once
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"

	"github.com/sidecar-injector/sidecar-injector/pkg/inject"
	"github.com/sidecar-injector/sidecar-injector/test/adsclient"
	"github.com/sidecar-injector/sidecar-injector/test/testenv"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
	case errors.Is(err, errUsage):
		os.Exit(2)
	default:
		fmt.Fprintf(os.Stderr, "demo: %v\n", err)
		os.Exit(1)
	}
}

var errUsage = errors.New("usage")

// Config is the demo's command line.
type Config struct {
	Once      bool
	Namespace string
	Build     testenv.BuildConfig
	Cluster   testenv.Config
	// Timeout bounds each wait (pod creation, xDS answer, readiness).
	Timeout time.Duration
	Verbose bool
}

// DefaultConfig returns the defaults.
func DefaultConfig() Config {
	return Config{Namespace: "demo", Build: testenv.DefaultBuildConfig(), Cluster: testenv.DefaultConfig(), Timeout: time.Minute}
}

// AddFlags registers the flags.
func (c *Config) AddFlags(fs *flag.FlagSet) {
	fs.BoolVar(&c.Once, "once", c.Once, "print the results and stop (for scripts and CI) instead of running until Ctrl-C")
	fs.StringVar(&c.Namespace, "namespace", c.Namespace, "`namespace` of the sample Deployment (labelled sidecar-injection=enabled)")
	fs.DurationVar(&c.Timeout, "timeout", c.Timeout, "bound on each wait (pod creation, xDS answer, readiness)")
	fs.BoolVar(&c.Verbose, "v", c.Verbose, "log every step of the build and start-up")
	c.Build.AddFlags(fs)
	c.Cluster.AddFlags(fs)
}

// Validate names every wrong field.
func (c Config) Validate() error {
	var errs []error
	if c.Namespace == "" || c.Namespace == "kube-system" || c.Namespace == testenv.DefaultWebhookOptions().InjectorNamespace {
		errs = append(errs, fmt.Errorf("--namespace=%q: want a namespace the injector may inject, such as demo", c.Namespace))
	}
	if c.Timeout <= 0 {
		errs = append(errs, fmt.Errorf("--timeout=%s: want a positive duration such as 1m", c.Timeout))
	}
	return errors.Join(append(errs, c.Build.Validate(), c.Cluster.Validate())...)
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg := DefaultConfig()
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfg.AddFlags(fs)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return errUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "demo: unexpected arguments %v\n", fs.Args())
		return errUsage
	}
	if err := cfg.Validate(); err != nil {
		return err
	}
	level := slog.LevelWarn
	if cfg.Verbose {
		level = slog.LevelInfo
	}
	d := &demo{cfg: cfg, out: stdout, log: slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level})), buildLog: slog.New(slog.NewTextHandler(stderr, nil))}
	defer d.stop()
	return d.run(ctx)
}

type demo struct {
	cfg      Config
	out      io.Writer
	log      *slog.Logger // quiet unless -v
	buildLog *slog.Logger // build progress: always shown, the first build takes minutes

	cp       *testenv.ControlPlane
	cs       kubernetes.Interface
	dir      string
	procs    []*testenv.Process
	root     string
	injector string // sidecar-injector (xds, controller)
	webhook  string // sidecar-injector-webhook
}

func (d *demo) step(n int, format string, args ...any) {
	fmt.Fprintf(d.out, "\n[%d/7] %s\n", n, fmt.Sprintf(format, args...))
}

func (d *demo) run(ctx context.Context) error {
	start := time.Now()
	fmt.Fprintln(d.out, "sidecar-injector demo: a real kube-apiserver, etcd and kube-controller-manager on 127.0.0.1")

	wd, err := os.Getwd()
	if err != nil {
		return err
	}
	if d.cfg.Build.RepoRoot != "" {
		d.root = d.cfg.Build.RepoRoot
	} else if d.root, err = testenv.FindRepoRoot(wd); err != nil {
		return err
	}
	d.cfg.Build.RepoRoot = d.root

	t := time.Now()
	bins, err := testenv.Build(ctx, d.cfg.Build, d.buildLog)
	if err != nil {
		return err
	}
	d.step(1, "control-plane binaries ready in %s: Kubernetes %s, etcd %s, helm %s (cached in %s)",
		since(t), bins.Versions.Kubernetes, bins.Versions.Etcd, bins.Versions.Helm, bins.Dir)

	t = time.Now()
	if d.cp, err = testenv.Start(ctx, d.cfg.Cluster, bins, d.log); err != nil {
		return err
	}
	if d.cs, err = kubernetes.NewForConfig(d.cp.RESTConfig()); err != nil {
		return err
	}
	d.step(2, "control plane up in %s: kube-apiserver %s at %s", since(t), d.cp.Versions.Kubernetes, d.cp.APIServerURL)

	t = time.Now()
	if d.dir, err = os.MkdirTemp("", "sidecar-injector-demo-"); err != nil {
		return err
	}
	servers, err := testenv.BuildBinaries(ctx, d.cfg.Build.Go, d.root, d.dir)
	if err != nil {
		return err
	}
	d.injector, d.webhook = servers.Injector, servers.Webhook
	webhookURL, ca, err := d.startWebhook(ctx)
	if err != nil {
		return err
	}
	xdsAddr, xdsErr := d.startXDS(ctx)
	xdsState := "xDS server on " + xdsAddr + " (gRPC, ADS)"
	if xdsErr != nil {
		xdsState = "xDS server not running: " + xdsErr.Error()
	}
	d.step(3, "sidecar-injector built and started in %s: webhook on %s; %s", since(t), webhookURL, xdsState)

	mwc, source, err := d.webhookConfiguration(ctx, bins, webhookURL, ca)
	if err != nil {
		return err
	}
	if _, err := d.cs.AdmissionregistrationV1().MutatingWebhookConfigurations().Create(ctx, mwc, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("register the webhook: the apiserver refused it: %w", err)
	}
	d.step(4, "MutatingWebhookConfiguration %q registered (%s), entries:", mwc.Name, source)
	for _, w := range mwc.Webhooks {
		fmt.Fprintf(d.out, "      %-36s %s  failurePolicy=%s reinvocation=%s\n", w.Name, deref(w.ClientConfig.URL), deref(w.FailurePolicy), deref(w.ReinvocationPolicy))
	}

	pod, err := d.applySample(ctx)
	if err != nil {
		return err
	}
	d.step(5, "namespace %s labelled sidecar-injection=enabled; Deployment %s/shop applied; kube-controller-manager created pod %s", d.cfg.Namespace, d.cfg.Namespace, pod.Name)
	d.step(6, "what the injector made of pod %s/%s:", pod.Namespace, pod.Name)
	printPod(d.out, pod)

	d.step(7, "listeners the xDS server serves this pod's Envoy:")
	switch {
	case xdsErr != nil:
		fmt.Fprintf(d.out, "      PENDING: %v\n", xdsErr)
	default:
		if err := d.printListeners(ctx, pod, xdsAddr); err != nil {
			fmt.Fprintf(d.out, "      FAILED: %v\n", err)
			if d.cfg.Once {
				return err
			}
		}
	}

	fmt.Fprintf(d.out, "\nDemo ready in %s. The cluster is yours (pods are stored, not run: there is no kubelet):\n\n", since(start))
	fmt.Fprintf(d.out, "  export KUBECONFIG=%s\n  export PATH=%s:$PATH    # kubectl and helm\n", d.cp.Kubeconfig, bins.Dir)
	fmt.Fprintf(d.out, "  kubectl -n %s get pod %s -o yaml\n", d.cfg.Namespace, pod.Name)
	fmt.Fprintf(d.out, "  kubectl -n %s run try --image=nginx:1.27 --dry-run=server -o yaml   # see an injection without creating anything\n", d.cfg.Namespace)
	fmt.Fprintf(d.out, "  kubectl get mutatingwebhookconfiguration %s -o yaml\n", mwc.Name)
	if d.cfg.Once {
		fmt.Fprintln(d.out, "--once: stopping.")
		return nil
	}
	fmt.Fprintf(d.out, "\nLogs: %s (control plane), %s (webhook, xds); removed on exit unless --keep-dir.\n", d.cp.LogDir(), d.dir)
	fmt.Fprintln(d.out, "Press Ctrl-C to stop everything.")
	<-ctx.Done()
	fmt.Fprintln(d.out, "\nstopping.")
	return nil
}

// stop ends exactly the processes the demo started, newest first.
func (d *demo) stop() {
	for i := len(d.procs) - 1; i >= 0; i-- {
		if err := d.procs[i].Stop(10 * time.Second); err != nil {
			d.buildLog.Error("stop", "process", d.procs[i].Name, "err", err)
		}
	}
	if d.cp != nil {
		if err := d.cp.Stop(); err != nil {
			d.buildLog.Error("stop control plane", "err", err)
		}
	}
	if d.dir != "" && !d.cfg.Cluster.KeepDir {
		os.RemoveAll(d.dir)
	}
}

func (d *demo) startWebhook(ctx context.Context) (string, []byte, error) {
	ca, err := testenv.NewCA("sidecar-injector-demo-ca", 7*24*time.Hour)
	if err != nil {
		return "", nil, err
	}
	kp, err := ca.Issue(testenv.LoopbackServing("sidecar-injector-webhook", 7*24*time.Hour))
	if err != nil {
		return "", nil, err
	}
	certFile, keyFile := filepath.Join(d.dir, "webhook", "tls.crt"), filepath.Join(d.dir, "webhook", "tls.key")
	if err := kp.WriteFiles(certFile, keyFile); err != nil {
		return "", nil, err
	}
	ports, err := testenv.FreePorts(2)
	if err != nil {
		return "", nil, err
	}
	p, err := d.startProc(ctx, "webhook", ports[1], d.webhook,
		"--tls-cert-file", certFile, "--tls-key-file", keyFile,
		"--listen-address", "127.0.0.1:"+strconv.Itoa(ports[0]),
		"--health-address", "127.0.0.1:"+strconv.Itoa(ports[1]),
		"--kubeconfig", d.cp.Kubeconfig, "--drain-delay", "0s", "--log-format", "text")
	if err != nil {
		return "", nil, fmt.Errorf("sidecar-injector-webhook: %w\n%s", err, p.LogTail(15))
	}
	// The controller, a process of its own (one replica: no election).
	cport, err := testenv.FreePorts(1)
	if err != nil {
		return "", nil, err
	}
	if p, err := d.startProc(ctx, "controller", cport[0], d.injector, "controller", "--kubeconfig", d.cp.Kubeconfig,
		"--health-address", "127.0.0.1:"+strconv.Itoa(cport[0]), "--leader-elect=false", "--log-format", "text"); err != nil {
		return "", nil, fmt.Errorf("sidecar-injector controller: %w\n%s", err, p.LogTail(15))
	}
	return "https://127.0.0.1:" + strconv.Itoa(ports[0]), ca.CertPEM, nil
}

// waitEnvoyConfig waits (at most 30 s) for the controller to write the
// envoy-config ConfigMap into ns.
func (d *demo) waitEnvoyConfig(ctx context.Context, ns string) error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		cm, err := d.cs.CoreV1().ConfigMaps(ns).Get(ctx, inject.ConfigMapName, metav1.GetOptions{})
		if err == nil && cm.Data[inject.ConfigMapKey] != "" {
			fmt.Fprintf(d.out, "ConfigMap %s/%s written by the controller (%d bytes of Envoy bootstrap)\n", ns, inject.ConfigMapName, len(cm.Data[inject.ConfigMapKey]))
			return nil
		}
		if err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("get ConfigMap %s/%s: %w", ns, inject.ConfigMapName, err)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the controller did not write ConfigMap %s/%s within 30s (see the controller log)", ns, inject.ConfigMapName)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func (d *demo) startXDS(ctx context.Context) (string, error) {
	ports, err := testenv.FreePorts(2)
	if err != nil {
		return "", err
	}
	addr := "127.0.0.1:" + strconv.Itoa(ports[0])
	p, err := d.startProc(ctx, "xds", ports[1], d.injector, "xds",
		"--listen-address", addr, "--health-address", "127.0.0.1:"+strconv.Itoa(ports[1]),
		"--shutdown-delay", "0s", "--log-format", "text",
		// The demo's proxies are simulated from this host, not from their
		// pods' addresses.
		"--check-pod-ip=false")
	if err != nil {
		tail := strings.TrimSpace(p.LogTail(3))
		if strings.Contains(tail, "not yet built") {
			return "", fmt.Errorf("`sidecar-injector xds` is not built yet (pkg/xds pending): %s", lastLine(tail))
		}
		return "", fmt.Errorf("sidecar-injector xds did not start: %w: %s", err, lastLine(tail))
	}
	return addr, nil
}

// startProc starts the injector binary with args and waits for /readyz on
// the health port.
func (d *demo) startProc(ctx context.Context, name string, healthPort int, bin string, args ...string) (*testenv.Process, error) {
	p, err := testenv.StartProcess(testenv.ProcessSpec{Name: name, Path: bin, Args: args, LogFile: filepath.Join(d.dir, name+".log")})
	if err != nil {
		return nil, err
	}
	d.procs = append(d.procs, p)
	url := "http://127.0.0.1:" + strconv.Itoa(healthPort) + "/readyz"
	err = testenv.WaitFor(ctx, p, d.cfg.Timeout, func(ctx context.Context) error {
		return getOK(ctx, url)
	})
	return p, err
}

// webhookConfiguration renders the chart's configuration with helm and
// points it at the local webhook; without a chart (or a chart without a
// webhook configuration yet) it uses the Go definition the chart follows.
func (d *demo) webhookConfiguration(ctx context.Context, bins testenv.Binaries, url string, ca []byte) (*admissionregistrationv1.MutatingWebhookConfiguration, string, error) {
	chart := filepath.Join(d.root, "charts", "sidecar-injector")
	if _, err := os.Stat(filepath.Join(chart, "Chart.yaml")); err == nil {
		ns := testenv.DefaultWebhookOptions().InjectorNamespace
		manifests, err := testenv.RenderChart(ctx, bins.Helm, chart, "sidecar-injector", ns, bins.Versions.Kubernetes)
		if err != nil {
			return nil, "", err
		}
		mwc, err := testenv.WebhookFromManifests(manifests, url, ca)
		if err == nil {
			return mwc, "rendered by helm template from charts/sidecar-injector, service switched to url", nil
		}
		if !strings.Contains(err.Error(), "no MutatingWebhookConfiguration") {
			return nil, "", err
		}
	}
	o := testenv.DefaultWebhookOptions()
	o.URL, o.CABundle = url, ca
	mwc, err := testenv.MutatingWebhookConfiguration(o)
	if err != nil {
		return nil, "", err
	}
	return mwc, "the chart's definition in Go (test/testenv); the chart has no webhook template yet", nil
}

func (d *demo) applySample(ctx context.Context) (*corev1.Pod, error) {
	ns := d.cfg.Namespace
	_, err := d.cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{
		Name: ns, Labels: map[string]string{inject.NamespaceLabel: "enabled"},
	}}, metav1.CreateOptions{})
	if err != nil {
		return nil, fmt.Errorf("create namespace %s: %w", ns, err)
	}
	// The envoy-config ConfigMap the pod mounts: the controller writes it
	// into every enabled namespace.
	if err := d.waitEnvoyConfig(ctx, ns); err != nil {
		return nil, err
	}
	one := int32(1)
	labels := map[string]string{"app": "shop"}
	dep := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "shop"},
		Spec: appsv1.DeploymentSpec{
			Replicas: &one,
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{Containers: []corev1.Container{
					{
						Name: "web", Image: "nginx:1.27",
						Ports:          []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}},
						ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/healthz", Port: intstr.FromString("http")}}},
					},
					{Name: "cache", Image: "redis:7.4", Ports: []corev1.ContainerPort{{Name: "redis", ContainerPort: 6379}}},
				}},
			},
		},
	}
	if _, err := d.cs.AppsV1().Deployments(ns).Create(ctx, dep, metav1.CreateOptions{}); err != nil {
		return nil, fmt.Errorf("create Deployment %s/shop: %w", ns, err)
	}
	if err := testenv.WaitForServiceAccount(ctx, d.cs, ns, d.cfg.Timeout); err != nil {
		return nil, err
	}
	var pod *corev1.Pod
	err = testenv.WaitFor(ctx, nil, d.cfg.Timeout, func(ctx context.Context) error {
		l, err := d.cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=shop"})
		if err != nil {
			return err
		}
		if len(l.Items) == 0 {
			return errors.New("no pod yet")
		}
		pod = &l.Items[0]
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("wait for kube-controller-manager to create the Deployment's pod (see %s): %w", filepath.Join(d.cp.LogDir(), "kube-controller-manager.log"), err)
	}
	return pod, nil
}

func (d *demo) printListeners(ctx context.Context, pod *corev1.Pod, addr string) error {
	if pod.Status.PodIP == "" {
		fmt.Fprintln(d.out, "      (no kubelet runs here, so the pod has no IP: $(POD_IP) expands to the empty string)")
	}
	node, err := adsclient.NodeFromPod(pod)
	if err != nil {
		return err
	}
	res, err := adsclient.Fetch(ctx, addr, node, d.cfg.Timeout)
	if err != nil {
		return err
	}
	fmt.Fprintf(d.out, "      node %s (cluster %s): %d clusters (version %s), %d listeners (version %s)\n",
		node.GetId(), node.GetCluster(), len(res.Clusters), res.ClusterVersion, len(res.Listeners), res.ListenerVersion)
	for _, line := range strings.Split(strings.TrimRight(adsclient.Summary(res.Listeners), "\n"), "\n") {
		fmt.Fprintln(d.out, "      "+line)
	}
	return nil
}

// printPod prints the containers, init containers, volumes, ports and the
// status annotation.
func printPod(w io.Writer, pod *corev1.Pod) {
	section := func(title string, cs []corev1.Container) {
		fmt.Fprintf(w, "    %s:\n", title)
		if len(cs) == 0 {
			fmt.Fprintln(w, "      (none)")
		}
		for _, c := range cs {
			var notes []string
			if c.RestartPolicy != nil && *c.RestartPolicy == corev1.ContainerRestartPolicyAlways {
				notes = append(notes, "native sidecar (restartPolicy Always)")
			}
			for _, p := range c.Ports {
				notes = append(notes, fmt.Sprintf("port %s %d/%s", p.Name, p.ContainerPort, p.Protocol))
			}
			if sc := c.SecurityContext; sc != nil && sc.Capabilities != nil && len(sc.Capabilities.Add) > 0 {
				notes = append(notes, fmt.Sprintf("adds capabilities %v", sc.Capabilities.Add))
			}
			fmt.Fprintf(w, "      %-14s %-44s %s\n", c.Name, c.Image, strings.Join(notes, "; "))
		}
	}
	section("init containers", pod.Spec.InitContainers)
	section("containers", pod.Spec.Containers)
	fmt.Fprintln(w, "    volumes:")
	for _, v := range pod.Spec.Volumes {
		kind := "other"
		switch {
		case v.ConfigMap != nil:
			kind = "ConfigMap " + v.ConfigMap.Name
		case v.Projected != nil:
			kind = "projected (service-account token)"
		case v.EmptyDir != nil:
			kind = "emptyDir"
		case v.Secret != nil:
			kind = "Secret " + v.Secret.SecretName
		}
		fmt.Fprintf(w, "      %-24s %s\n", v.Name, kind)
	}
	status, ok := pod.Annotations[inject.StatusAnnotation]
	if !ok {
		fmt.Fprintf(w, "    annotation %s: MISSING: the pod was not injected (see the webhook log)\n", inject.StatusAnnotation)
		return
	}
	var pretty map[string]any
	if err := json.Unmarshal([]byte(status), &pretty); err == nil {
		if b, err := json.MarshalIndent(pretty, "      ", "  "); err == nil {
			status = string(b)
		}
	}
	fmt.Fprintf(w, "    annotation %s:\n      %s\n", inject.StatusAnnotation, status)
}

func getOK(ctx context.Context, url string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return nil
}

func since(t time.Time) time.Duration { return time.Since(t).Round(100 * time.Millisecond) }

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

func deref[T any](p *T) string {
	if p == nil {
		return "(unset)"
	}
	return fmt.Sprint(*p)
}
