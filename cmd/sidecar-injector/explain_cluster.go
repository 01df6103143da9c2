package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"k8s.io/client-go/tools/clientcmd"

	"github.com/sidecar-injector/sidecar-injector/pkg/controller"
	"github.com/sidecar-injector/sidecar-injector/pkg/inject"
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

	file string // -f: refused with --cluster
}

func defaultExplainClusterConfig() explainClusterConfig {
	return explainClusterConfig{Output: "text", PodFieldSelector: controller.DefaultPodFieldSelector, Timeout: 2 * time.Minute}
}

func (c *explainClusterConfig) AddFlags(fs *flag.FlagSet) {
	fs.BoolVar(&c.Cluster, "cluster", c.Cluster, "list the running pods whose sidecar is stale or missing, per workload, with the command that fixes each")
	fs.StringVar(&c.Kubeconfig, "kubeconfig", c.Kubeconfig, "kubeconfig `file` (default: $KUBECONFIG, ~/.kube/config, or the in-cluster config)")
	fs.StringVar(&c.Context, "context", c.Context, "kubeconfig `context` (default: the current one)")
	fs.StringVar(&c.ConfigFile, "config", c.ConfigFile, "injector config `file` whose hash is current (default: the chart's injector ConfigMap found in the cluster, else the built-in defaults)")
	fs.StringVar(&c.InjectorConfigMap, "injector-configmap", c.InjectorConfigMap, "read the injector config from this ConfigMap (`NAMESPACE/NAME`, key config.yaml)")
	fs.StringVar(&c.Namespace, "namespace", c.Namespace, "look at this `namespace` only (default: all)")
	fs.StringVar(&c.Namespace, "n", c.Namespace, "short for --namespace")
	fs.StringVar(&c.Output, "o", c.Output, "output format: text|json")
	fs.StringVar(&c.PodFieldSelector, "pod-field-selector", c.PodFieldSelector, "field `selector` of the pods looked at")
	fs.DurationVar(&c.Timeout, "timeout", c.Timeout, "give up after this long")
	fs.StringVar(&c.file, "f", c.file, "not with --cluster: explain reads the cluster instead of a manifest")
}

func (c *explainClusterConfig) Validate() error {
	var errs []error
	if !c.Cluster {
		errs = append(errs, errors.New("--cluster is required here"))
	}
	if c.file != "" {
		errs = append(errs, errors.New("-f and --cluster exclude each other: -f explains a manifest, --cluster what runs in the cluster"))
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

// explainClusterRequested says whether explain's arguments ask for
// --cluster (then runExplainClusterCmd handles them all).
func explainClusterRequested(args []string) bool {
	for _, a := range args {
		if a == "--" {
			return false
		}
		name, value, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if !strings.HasPrefix(a, "-") || name != "cluster" {
			continue
		}
		if !hasValue {
			return true
		}
		b, err := strconv.ParseBool(value)
		return err == nil && b
	}
	return false
}

// runExplainClusterCmd parses `explain --cluster` flags and runs it.
func runExplainClusterCmd(ctx context.Context, args []string, io stdio) error {
	c := defaultExplainClusterConfig()
	fs := newFlagSet("explain --cluster", io)
	c.AddFlags(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := c.Validate(); err != nil {
		fmt.Fprintf(io.err, "sidecar-injector explain: %v\n", err)
		fs.Usage()
		return errUsage
	}
	return runExplainCluster(ctx, c, io)
}

// runExplainCluster reads the cluster and writes the report.
func runExplainCluster(ctx context.Context, c explainClusterConfig, io stdio) error {
	ctx, cancel := context.WithTimeout(ctx, c.Timeout)
	defer cancel()
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	rules.ExplicitPath = c.Kubeconfig
	restCfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{CurrentContext: c.Context}).ClientConfig()
	if err != nil {
		return fmt.Errorf("cluster config: %w; pass --kubeconfig FILE", err)
	}
	restCfg.QPS, restCfg.Burst = 20, 40
	restCfg.Timeout = 30 * time.Second
	cs, md, err := controller.NewClients(restCfg)
	if err != nil {
		return err
	}

	cfg := inject.DefaultConfig()
	source := "the built-in defaults: no injector ConfigMap found in the cluster"
	switch {
	case c.ConfigFile != "":
		data, err := os.ReadFile(c.ConfigFile)
		if err != nil {
			return fmt.Errorf("read injector config: %w", err)
		}
		if cfg, err = inject.LoadConfig(data); err != nil {
			return fmt.Errorf("%s: %w", c.ConfigFile, err)
		}
		source = "file " + c.ConfigFile
	default:
		data, from, found, err := controller.FindInjectorConfig(ctx, cs, c.InjectorConfigMap)
		if err != nil {
			return err
		}
		if found {
			if cfg, err = inject.LoadConfig(data); err != nil {
				return fmt.Errorf("%s: %w", from, err)
			}
			source = from
		}
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
