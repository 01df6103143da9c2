package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/sidecar-injector/sidecar-injector/internal/version"
	"github.com/sidecar-injector/sidecar-injector/pkg/inject"
)

// manifestConfig holds the flags of inject, uninject and explain.
type manifestConfig struct {
	File            string
	ConfigFile      string
	NamespaceLabels string
	Output          string

	outputs   []string // allowed -o values; the first is the default
	useConfig bool     // --config and --namespace-labels apply
}

func defaultManifestConfig(outputs []string, useConfig bool) manifestConfig {
	return manifestConfig{Output: outputs[0], outputs: outputs, useConfig: useConfig}
}

func (c *manifestConfig) AddFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.File, "f", c.File, "manifest file (YAML or JSON, several documents allowed); - reads standard input")
	fs.StringVar(&c.Output, "o", c.Output, "output format: "+strings.Join(c.outputs, "|"))
	if c.useConfig {
		fs.StringVar(&c.ConfigFile, "config", c.ConfigFile, "injector config file (default: the built-in defaults)")
		fs.StringVar(&c.NamespaceLabels, "namespace-labels", c.NamespaceLabels,
			"labels of the namespace the pods go to, k=v,... (default: "+inject.NamespaceLabel+"=enabled)")
	}
}

func (c *manifestConfig) Validate() error {
	var errs []error
	if c.File == "" {
		errs = append(errs, errors.New("-f is required: a manifest file, or - for standard input"))
	}
	if !slices.Contains(c.outputs, c.Output) {
		errs = append(errs, fmt.Errorf("-o %q: want %s", c.Output, strings.Join(c.outputs, " or ")))
	}
	if _, err := parseLabels(c.NamespaceLabels); err != nil {
		errs = append(errs, fmt.Errorf("--namespace-labels: %w", err))
	}
	return errors.Join(errs...)
}

// parseLabels parses "k=v,k2=v2"; empty means the default
// sidecar-injection=enabled (the user asked to inject).
func parseLabels(s string) (map[string]string, error) {
	if strings.TrimSpace(s) == "" {
		return map[string]string{inject.NamespaceLabel: "enabled"}, nil
	}
	labels := map[string]string{}
	for item := range strings.SplitSeq(s, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(item), "=")
		if !ok {
			return nil, fmt.Errorf("%q: want key=value", item)
		}
		if errs := validation.IsQualifiedName(k); len(errs) > 0 {
			return nil, fmt.Errorf("label key %q: %s", k, strings.Join(errs, "; "))
		}
		if errs := validation.IsValidLabelValue(v); len(errs) > 0 {
			return nil, fmt.Errorf("label value %q: %s", v, strings.Join(errs, "; "))
		}
		labels[k] = v
	}
	return labels, nil
}

// parseManifestFlags parses and validates; usage errors print the usage.
func parseManifestFlags(name string, args []string, io stdio, c *manifestConfig) error {
	fs := newFlagSet(name, io)
	c.AddFlags(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := c.Validate(); err != nil {
		fmt.Fprintf(io.err, "sidecar-injector %s: %v\n", name, err)
		fs.Usage()
		return errUsage
	}
	return nil
}

func readInput(file string, in io.Reader) ([]byte, error) {
	if file == "-" {
		return io.ReadAll(in)
	}
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("read manifest: %w", err)
	}
	return data, nil
}

// injector loads the config file (or the defaults) into an Injector.
func (c *manifestConfig) injector() (*inject.Injector, error) {
	cfg := inject.DefaultConfig()
	if c.ConfigFile != "" {
		data, err := os.ReadFile(c.ConfigFile)
		if err != nil {
			return nil, fmt.Errorf("read injector config: %w", err)
		}
		if cfg, err = inject.LoadConfig(data); err != nil {
			return nil, fmt.Errorf("%s: %w", c.ConfigFile, err)
		}
	}
	return inject.New(cfg)
}

func (c *manifestConfig) overrides() inject.Overrides {
	labels, _ := parseLabels(c.NamespaceLabels) // validated
	return inject.Overrides{NamespaceLabels: labels, InjectorVersion: version.Get()}
}

// transform reads the manifest, runs fn on every pod and pod template,
// and writes the result only when every document succeeded.
func transform(c *manifestConfig, io stdio, fn inject.PodFunc) error {
	data, err := readInput(c.File, io.in)
	if err != nil {
		return err
	}
	docs, err := inject.ReadDocuments(data)
	if err != nil {
		return err
	}
	for i := range docs {
		if err := inject.EachPod(&docs[i], fn); err != nil {
			return err
		}
	}
	var out bytes.Buffer
	if err := inject.WriteDocuments(&out, docs, c.Output); err != nil {
		return err
	}
	_, err = io.out.Write(out.Bytes())
	return err
}

func runInject(_ context.Context, args []string, io stdio) error {
	c := defaultManifestConfig([]string{"yaml", "json"}, true)
	if err := parseManifestFlags("inject", args, io, &c); err != nil {
		return err
	}
	in, err := c.injector()
	if err != nil {
		return err
	}
	ov := c.overrides()
	return transform(&c, io, func(w inject.Workload, pod *corev1.Pod) (inject.Patch, error) {
		o := ov
		o.Namespace = pod.Namespace
		res, err := in.Inject(pod, o)
		if err != nil {
			return nil, err
		}
		for _, warning := range res.Warnings {
			fmt.Fprintf(io.err, "warning: %s: %s\n", w, warning)
		}
		if res.Decision == inject.DecisionSkip && res.Reason != inject.ReasonAlreadyInjected {
			fmt.Fprintf(io.err, "skipped: %s: %s (%s)\n", w, res.Message, res.Reason)
		}
		return res.Patch, nil
	})
}

func runUninject(_ context.Context, args []string, io stdio) error {
	c := defaultManifestConfig([]string{"yaml", "json"}, false)
	if err := parseManifestFlags("uninject", args, io, &c); err != nil {
		return err
	}
	return transform(&c, io, func(_ inject.Workload, pod *corev1.Pod) (inject.Patch, error) {
		res, err := inject.Uninject(pod)
		return res.Patch, err
	})
}

func runExplain(ctx context.Context, args []string, io stdio) error {
	if explainClusterRequested(args) {
		return runExplainClusterCmd(ctx, args, io)
	}
	c := defaultManifestConfig([]string{"text", "json"}, true)
	if err := parseManifestFlags("explain", args, io, &c); err != nil {
		return err
	}
	in, err := c.injector()
	if err != nil {
		return err
	}
	data, err := readInput(c.File, io.in)
	if err != nil {
		return err
	}
	ex, err := in.Explain(data, c.overrides())
	if err != nil {
		return err
	}
	return writeReport(io, c.Output, ex, func(b *bytes.Buffer) error {
		writeExplanations(b, ex)
		return nil
	})
}

// writeReport writes v as indented JSON (format "json") or as text, and
// only once all of it is rendered: a failure leaves standard output empty.
func writeReport(io stdio, format string, v any, text func(*bytes.Buffer) error) error {
	var out bytes.Buffer
	if format == "json" {
		enc := json.NewEncoder(&out)
		enc.SetIndent("", "  ")
		if err := enc.Encode(v); err != nil {
			return err
		}
	} else if err := text(&out); err != nil {
		return err
	}
	_, err := io.out.Write(out.Bytes())
	return err
}

// writeExplanations prints the human form of explain.
func writeExplanations(w *bytes.Buffer, ex []inject.Explanation) {
	if len(ex) == 0 {
		fmt.Fprintln(w, "no pods or pod templates found")
		return
	}
	for i, e := range ex {
		if i > 0 {
			w.WriteByte('\n')
		}
		fmt.Fprintf(w, "%s\n", e.Workload)
		verdict := map[inject.Decision]string{
			inject.DecisionInject: "would be injected",
			inject.DecisionSkip:   "would NOT be injected",
			inject.DecisionDeny:   "would be REFUSED at admission",
		}[e.Decision]
		if e.Audit {
			verdict += " (audit mode: reported only, not changed)"
		}
		fmt.Fprintf(w, "  decision: %s\n  reason:   %s\n  why:      %s\n", verdict, e.Reason, e.Message)
		for _, warning := range e.Warnings {
			fmt.Fprintf(w, "  warning:  %s\n", warning)
		}
		if st := e.Status; st != nil && e.Decision == inject.DecisionInject {
			mode := "classic sidecar (first container)"
			if st.Native {
				mode = "native sidecar (init container, restartPolicy Always)"
			}
			fmt.Fprintf(w, "  envoy:    %s\n", mode)
			fmt.Fprintf(w, "  ports:    inbound %d, outbound %d (127.0.0.1), stats %d, admin %d (127.0.0.1)\n",
				st.Ports.Inbound, st.Ports.Outbound, st.Ports.Stats, st.Ports.Admin)
			fmt.Fprintf(w, "  config:   hash %s\n", st.ConfigHash)
			fmt.Fprintf(w, "  patch:    %d operations\n", len(e.Patch))
			for _, op := range e.Patch {
				fmt.Fprintf(w, "    %-7s %s\n", op.Op, op.Path)
			}
		}
	}
}
