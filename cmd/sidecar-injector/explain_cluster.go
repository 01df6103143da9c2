package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/sidecar-injector/sidecar-injector/pkg/controller"
	"github.com/sidecar-injector/sidecar-injector/pkg/inject"
	"github.com/sidecar-injector/sidecar-injector/pkg/webhook"
)

// explainClusterConfig holds the flags of `explain --cluster`: what runs in
// the cluster rather than what a manifest would become.
type explainClusterConfig struct {
	Cluster           bool
	Kubeconfig        string
	Context           string
	ConfigFile        string
	InjectorConfigMap string
	Namespace         string
	Output            string
	PodFieldSelector  string
	Timeout           time.Duration
}

func defaultExplainClusterConfig() explainClusterConfig {
	return explainClusterConfig{Output: "text", PodFieldSelector: controller.DefaultPodFieldSelector, Timeout: 2 * time.Minute}
}

// AddFlags adds the flags of --cluster that explain of manifests does not
// have; the shared ones (--kubeconfig, --context, --config, -n, -o,
// --injector-configmap) are the manifest flags, copied by fromManifest.
func (c *explainClusterConfig) AddFlags(fs *pflag.FlagSet) {
	fs.BoolVar(&c.Cluster, "cluster", c.Cluster, "list the running pods whose sidecar is stale or missing, per workload, with the command that fixes each (no -f)")
	fs.StringVar(&c.PodFieldSelector, "pod-field-selector", c.PodFieldSelector, "with --cluster: field `selector` of the pods looked at")
	fs.DurationVar(&c.Timeout, "timeout", c.Timeout, "with --cluster or --from-cluster: give up after this long")
}

// fromManifest takes the shared flags.
func (c *explainClusterConfig) fromManifest(m *manifestConfig) {
	c.Kubeconfig, c.Context, c.Namespace = m.cluster.Kubeconfig, m.cluster.Context, m.cluster.Namespace
	c.ConfigFile, c.InjectorConfigMap, c.Output = m.ConfigFile, m.cluster.InjectorConfigMap, m.Output
}

func (c *explainClusterConfig) Validate(files []string, namespaceLabels string) error {
	var errs []error
	if !c.Cluster {
		errs = append(errs, errors.New("--cluster is required here"))
	}
	if len(files) > 0 {
		errs = append(errs, errors.New("-f and --cluster exclude each other: -f explains a manifest, --cluster what runs in the cluster"))
	}
	if namespaceLabels != "" {
		errs = append(errs, errors.New("--namespace-labels does not apply to --cluster: the namespaces' own labels are read"))
	}
	if c.Output != "text" && c.Output != "json" {
		errs = append(errs, fmt.Errorf("-o %q: want text or json", c.Output))
	}
	if c.ConfigFile != "" && c.InjectorConfigMap != "" {
		errs = append(errs, errors.New("--config and --injector-configmap exclude each other: give one source of the injector config"))
	}
	if c.InjectorConfigMap != "" {
		if ns, name, ok := strings.Cut(c.InjectorConfigMap, "/"); !ok || ns == "" || name == "" {
			errs = append(errs, fmt.Errorf("--injector-configmap %q: want NAMESPACE/NAME", c.InjectorConfigMap))
		}
	}
	if c.Timeout <= 0 {
		errs = append(errs, fmt.Errorf("--timeout=%s: want a positive duration such as 2m", c.Timeout))
	}
	return errors.Join(errs...)
}

func newExplainCmd(io stdio) *cobra.Command {
	m := defaultManifestConfig([]string{"text", "json"}, true)
	cl := defaultExplainClusterConfig()
	cmd := &cobra.Command{
		Use:   "explain",
		Short: "say why each pod would or would not be injected",
		Long: "explain -f says, for every pod and pod template of the manifests, what the webhook would do:\n" +
			"whether it is called at all, the decision, the reason, the warnings, the ports and the patch.\n" +
			"With --from-cluster it uses the cluster's injector config and namespace labels.\n\n" +
			"explain --cluster lists the running pods whose sidecar is stale or missing.",
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if cl.Cluster {
				cl.fromManifest(&m)
				if err := cl.Validate(m.Files, m.NamespaceLabels); err != nil {
					return usageError{err}
				}
				return runExplainCluster(cmd.Context(), cl, io)
			}
			if err := m.Validate(); err != nil {
				return usageError{err}
			}
			ctx := cmd.Context()
			if m.cluster.FromCluster {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, cl.Timeout)
				defer cancel()
			}
			return runExplainManifests(ctx, &m, io)
		},
	}
	m.AddFlags(cmd.Flags())
	cl.AddFlags(cmd.Flags())
	return cmd
}

// restConfig loads the kubeconfig (or the in-cluster config); namespace is
// the context's namespace ("default" when it names none).
func restConfig(kubeconfig, kubeContext string) (*rest.Config, string, error) {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	rules.ExplicitPath = kubeconfig
	cc := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{CurrentContext: kubeContext})
	restCfg, err := cc.ClientConfig()
	if err != nil {
		return nil, "", fmt.Errorf("cluster config: %w; pass --kubeconfig FILE", err)
	}
	ns, _, err := cc.Namespace()
	if err != nil || ns == "" {
		ns = "default"
	}
	restCfg.QPS, restCfg.Burst = 20, 40
	restCfg.Timeout = 30 * time.Second
	return restCfg, ns, nil
}

// loadInjectorConfig reads the injector config: the file, else the
// ConfigMap named, else the chart's ConfigMap found by its labels, else
// the built-in defaults. It says which.
func loadInjectorConfig(ctx context.Context, cs kubernetes.Interface, file, configMap string) (inject.Config, string, error) {
	cfg := inject.DefaultConfig()
	if file != "" {
		data, err := os.ReadFile(file)
		if err != nil {
			return cfg, "", fmt.Errorf("read injector config: %w", err)
		}
		if cfg, err = inject.LoadConfig(data); err != nil {
			return cfg, "", fmt.Errorf("%s: %w", file, err)
		}
		return cfg, "file " + file, nil
	}
	data, from, found, err := controller.FindInjectorConfig(ctx, cs, configMap)
	if err != nil {
		return cfg, "", err
	}
	if !found {
		return cfg, "the built-in defaults: no injector ConfigMap found in the cluster", nil
	}
	if cfg, err = inject.LoadConfig(data); err != nil {
		return cfg, "", fmt.Errorf("%s: %w", from, err)
	}
	return cfg, from, nil
}

// loadClusterSource is --from-cluster: the cluster's injector config, its
// namespaces' labels and its version (native sidecars).
func loadClusterSource(ctx context.Context, c *manifestConfig) (*source, error) {
	restCfg, ctxNamespace, err := restConfig(c.cluster.Kubeconfig, c.cluster.Context)
	if err != nil {
		return nil, err
	}
	cs, err := kubernetes.NewForConfig(restCfg)
	if err != nil {
		return nil, fmt.Errorf("cluster client: %w", err)
	}
	cfg, _, err := loadInjectorConfig(ctx, cs, c.ConfigFile, c.cluster.InjectorConfigMap)
	if err != nil {
		return nil, err
	}
	in, err := inject.New(cfg)
	if err != nil {
		return nil, err
	}
	src := &source{injector: in, namespace: c.cluster.Namespace}
	if src.namespace == "" {
		src.namespace = ctxNamespace
	}
	if info, err := cs.Discovery().ServerVersion(); err == nil {
		if ok, err := webhook.SupportsNativeSidecar(*info); err == nil {
			src.native = &ok
		}
	}
	cache := map[string]map[string]string{}
	src.labels = func(ctx context.Context, ns string) (map[string]string, error) {
		if l, ok := cache[ns]; ok {
			return l, nil
		}
		n, err := cs.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})
		if err != nil {
			return nil, fmt.Errorf("namespace %q: %w; create it, or explain offline with --namespace-labels", ns, err)
		}
		l := n.Labels
		if l == nil {
			l = map[string]string{}
		}
		cache[ns] = l
		return l, nil
	}
	return src, nil
}

// runExplainCluster reads the cluster and writes the report.
func runExplainCluster(ctx context.Context, c explainClusterConfig, io stdio) error {
	ctx, cancel := context.WithTimeout(ctx, c.Timeout)
	defer cancel()
	restCfg, _, err := restConfig(c.Kubeconfig, c.Context)
	if err != nil {
		return err
	}
	cs, md, err := controller.NewClients(restCfg)
	if err != nil {
		return err
	}
	cfg, source, err := loadInjectorConfig(ctx, cs, c.ConfigFile, c.InjectorConfigMap)
	if err != nil {
		return err
	}
	in, err := inject.New(cfg)
	if err != nil {
		return err
	}
	report, err := controller.BuildClusterReport(ctx, cs, md, in, controller.ReportOptions{
		Namespace: c.Namespace, PodFieldSelector: c.PodFieldSelector, ConfigSource: source,
	})
	if err != nil {
		return err
	}
	return writeReport(io, c.Output, report, func(b *bytes.Buffer) error { return report.WriteText(b) })
}
