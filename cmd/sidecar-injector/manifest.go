package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/sidecar-injector/sidecar-injector/internal/version"
	"github.com/sidecar-injector/sidecar-injector/pkg/inject"
)

// manifestConfig holds the flags of inject, uninject and explain.
type manifestConfig struct {
	Files           []string
	Recursive       bool
	ConfigFile      string
	NamespaceLabels string
	Output          string
	Quiet           bool
	cluster         clusterFlags

	outputs   []string // allowed -o values; the first is the default
	useConfig bool     // --config, --namespace-labels and --from-cluster apply
}

// clusterFlags say where --from-cluster (and explain --cluster) read from.
type clusterFlags struct {
	FromCluster       bool
	Kubeconfig        string
	Context           string
	Namespace         string
	InjectorConfigMap string
}

func defaultManifestConfig(outputs []string, useConfig bool) manifestConfig {
	return manifestConfig{Output: outputs[0], outputs: outputs, useConfig: useConfig}
}

func (c *manifestConfig) AddFlags(fs *pflag.FlagSet) {
	fs.StringArrayVarP(&c.Files, "filename", "f", c.Files, "manifest `file`, directory (its .yaml, .yml and .json files) or - for standard input; repeat for several (YAML or JSON, several documents and Lists allowed)")
	fs.BoolVarP(&c.Recursive, "recursive", "R", c.Recursive, "read the directories given with -f recursively")
	fs.StringVarP(&c.Output, "output", "o", c.Output, "output format: "+strings.Join(c.outputs, "|"))
	if c.outputs[0] != "text" { // inject and uninject: explain reports on standard output
		fs.BoolVarP(&c.Quiet, "quiet", "q", c.Quiet, "print no per-workload summary and no warnings on standard error (errors still)")
	}
	if c.useConfig {
		fs.StringVar(&c.ConfigFile, "config", c.ConfigFile, "injector config `file` (default: the built-in defaults, or the cluster's with --from-cluster)")
		fs.StringVar(&c.NamespaceLabels, "namespace-labels", c.NamespaceLabels,
			"labels of the namespace the pods go to, k=v,... (default: "+inject.NamespaceLabel+"=enabled, or the namespace's own with --from-cluster)")
		fs.BoolVar(&c.cluster.FromCluster, "from-cluster", c.cluster.FromCluster, "read the injector config and each namespace's labels from the cluster, so the answer is the cluster's")
		fs.StringVar(&c.cluster.Kubeconfig, "kubeconfig", c.cluster.Kubeconfig, "kubeconfig `file` (default: $KUBECONFIG, ~/.kube/config, or the in-cluster config)")
		fs.StringVar(&c.cluster.Context, "context", c.cluster.Context, "kubeconfig `context` (default: the current one)")
		fs.StringVarP(&c.cluster.Namespace, "namespace", "n", c.cluster.Namespace, "`namespace` of objects that name none (default: the kubeconfig context's with --from-cluster); explain --cluster: look at this namespace only (default: all)")
		fs.StringVar(&c.cluster.InjectorConfigMap, "injector-configmap", c.cluster.InjectorConfigMap, "with --from-cluster: read the injector config from this ConfigMap (`NAMESPACE/NAME`, key config.yaml; default: the chart's, found by its labels)")
	}
}

func (c *manifestConfig) Validate() error {
	var errs []error
	if len(c.Files) == 0 {
		errs = append(errs, errors.New("-f is required: a manifest file, a directory, or - for standard input"))
	}
	if n := slices.Index(c.Files, "-"); n >= 0 && slices.Index(c.Files[n+1:], "-") >= 0 {
		errs = append(errs, errors.New("-f -: standard input can be read once"))
	}
	if !slices.Contains(c.outputs, c.Output) {
		errs = append(errs, fmt.Errorf("-o %q: want %s", c.Output, strings.Join(c.outputs, " or ")))
	}
	if _, err := parseLabels(c.NamespaceLabels); err != nil {
		errs = append(errs, fmt.Errorf("--namespace-labels: %w", err))
	}
	if c.cluster.FromCluster && c.NamespaceLabels != "" {
		errs = append(errs, errors.New("--from-cluster and --namespace-labels exclude each other: the namespace's labels are read from the cluster"))
	}
	if c.cluster.FromCluster && c.ConfigFile != "" && c.cluster.InjectorConfigMap != "" {
		errs = append(errs, errors.New("--config and --injector-configmap exclude each other: give one source of the injector config"))
	}
	if !c.cluster.FromCluster && (c.cluster.InjectorConfigMap != "" || c.cluster.Kubeconfig != "" || c.cluster.Context != "") {
		errs = append(errs, errors.New("--kubeconfig, --context and --injector-configmap need --from-cluster"))
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

// manifestCommand makes inject, uninject or explain: flags, validation
// (a usage error, exit 2), then run.
func manifestCommand(use, short, long string, c *manifestConfig, run func(cmd *cobra.Command) error) *cobra.Command {
	cmd := &cobra.Command{
		Use:   use,
		Short: short,
		Long:  long,
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := c.Validate(); err != nil {
				return usageError{err}
			}
			return run(cmd)
		},
	}
	c.AddFlags(cmd.Flags())
	return cmd
}

// input is one manifest source read.
type input struct {
	name string // the file, or "" for standard input
	data []byte
}

// manifestExtensions are the files a directory contributes, as kubectl reads them.
var manifestExtensions = []string{".yaml", ".yml", ".json"}

// readInputs reads every -f: files, directories (their manifest files in
// name order, recursively with -R) and standard input.
func readInputs(files []string, recursive bool, stdin io.Reader) ([]input, error) {
	var out []input
	for _, f := range files {
		if f == "-" {
			data, err := io.ReadAll(stdin)
			if err != nil {
				return nil, fmt.Errorf("read standard input: %w", err)
			}
			out = append(out, input{data: data})
			continue
		}
		st, err := os.Stat(f)
		if err != nil {
			return nil, fmt.Errorf("read manifest: %w", err)
		}
		if !st.IsDir() {
			data, err := os.ReadFile(f)
			if err != nil {
				return nil, fmt.Errorf("read manifest: %w", err)
			}
			out = append(out, input{name: f, data: data})
			continue
		}
		found := 0
		err = filepath.WalkDir(f, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.IsDir() {
				if path != f && !recursive {
					return filepath.SkipDir
				}
				return nil
			}
			if !slices.Contains(manifestExtensions, strings.ToLower(filepath.Ext(path))) {
				return nil
			}
			data, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			found++
			out = append(out, input{name: path, data: data})
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("read manifest directory: %w", err)
		}
		if found == 0 {
			hint := ""
			if !recursive {
				hint = " (use -R to read its subdirectories)"
			}
			return nil, fmt.Errorf("directory %s has no .yaml, .yml or .json files%s", f, hint)
		}
	}
	return out, nil
}

// readAllDocuments parses every input.
func readAllDocuments(inputs []input) ([]inject.Document, error) {
	var docs []inject.Document
	for _, in := range inputs {
		name := in.name
		if name == "" && len(inputs) > 1 {
			name = "stdin" // named only when other inputs could be confused with it
		}
		d, err := inject.ReadDocumentsFrom(name, in.data)
		if err != nil {
			return nil, err
		}
		docs = append(docs, d...)
	}
	return docs, nil
}

// source is where the injector config and the namespace labels come from.
type source struct {
	injector *inject.Injector
	// labels returns the labels of the namespace a pod goes to.
	labels func(ctx context.Context, namespace string) (map[string]string, error)
	// namespace is given to objects that name none ("" offline).
	namespace string
	native    *bool
}

// loadSource builds the source: the cluster's with --from-cluster, else the
// config file (or the built-in defaults) and --namespace-labels.
func (c *manifestConfig) loadSource(ctx context.Context) (*source, error) {
	if c.cluster.FromCluster {
		return loadClusterSource(ctx, c)
	}
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
	in, err := inject.New(cfg)
	if err != nil {
		return nil, err
	}
	labels, _ := parseLabels(c.NamespaceLabels) // validated
	return &source{
		injector:  in,
		labels:    func(context.Context, string) (map[string]string, error) { return labels, nil },
		namespace: c.cluster.Namespace,
	}, nil
}

// decide runs what the apiserver and the webhook would do with one pod:
// the webhook entry selection, then the engine. called is false when no
// webhook entry selects the pod.
func (s *source) decide(ctx context.Context, pod *corev1.Pod) (inject.Result, error) {
	ns := pod.Namespace
	if ns == "" {
		ns = s.namespace
	}
	labels, err := s.labels(ctx, ns)
	if err != nil {
		return inject.Result{}, err
	}
	call := selectEntry(labels, pod.Labels, s.injector.Config().Injection.DefaultPolicy)
	if !call.Called {
		return inject.Result{Decision: inject.DecisionSkip, Reason: call.Reason, Message: call.Why, Patch: inject.Patch{}}, nil
	}
	if call.Entry == entryInvalidLabel {
		msg := inject.InvalidNamespaceLabel(labels[inject.NamespaceLabel])
		return inject.Result{Decision: inject.DecisionSkip, Reason: inject.ReasonNamespaceLabelInvalid, Message: msg,
			Warnings: []string{"no sidecar: " + msg}, Patch: inject.Patch{}}, nil
	}
	return s.injector.Inject(pod, inject.Overrides{
		Namespace: ns, NamespaceLabels: labels, InjectorVersion: version.Get(), NativeSidecarSupported: s.native,
	})
}

// writeDocuments renders every document, then writes: a failure leaves
// standard output empty.
func writeDocuments(w io.Writer, docs []inject.Document, format string) error {
	var out bytes.Buffer
	if err := inject.WriteDocuments(&out, docs, format); err != nil {
		return err
	}
	_, err := w.Write(out.Bytes())
	return err
}

func newInjectCmd(io stdio) *cobra.Command {
	c := defaultManifestConfig([]string{"yaml", "json"}, true)
	return manifestCommand("inject", "inject sidecars into manifests offline",
		"inject adds the sidecar to every pod and pod template of the manifests, as the webhook would,\n"+
			"and writes the manifests to standard output. A summary per workload and the warnings go to\n"+
			"standard error. Pods in an audit namespace are reported, not changed; pods the webhook would\n"+
			"refuse make the command fail with nothing written.",
		&c, func(cmd *cobra.Command) error { return runInject(cmd.Context(), &c, io) })
}

func runInject(ctx context.Context, c *manifestConfig, io stdio) error {
	var src *source
	return rewriteManifests(c, io, func() (err error) { src, err = c.loadSource(ctx); return err },
		func(rep *report, w inject.Workload, pod *corev1.Pod) (inject.Patch, error) {
			res, err := src.decide(ctx, pod)
			if err != nil {
				return nil, err
			}
			rep.add(w, res)
			if res.Audit {
				return nil, nil // audit: reported, never changed (the webhook's /audit patches nothing)
			}
			return res.Patch, nil
		})
}

func newUninjectCmd(io stdio) *cobra.Command {
	c := defaultManifestConfig([]string{"yaml", "json"}, false)
	return manifestCommand("uninject", "remove injected sidecars from manifests",
		"uninject removes exactly what the sidecar.io/status annotation says the injector added,\n"+
			"so uninject(inject(x)) is x, empty lists and maps included.",
		&c, func(*cobra.Command) error { return runUninject(&c, io) })
}

func runUninject(c *manifestConfig, io stdio) error {
	return rewriteManifests(c, io, nil,
		func(rep *report, w inject.Workload, pod *corev1.Pod) (inject.Patch, error) {
			res, err := inject.Uninject(pod)
			if err != nil {
				return nil, err
			}
			switch {
			case len(res.Patch) > 0:
				rep.summaries = append(rep.summaries, w.Ref()+" sidecar removed")
			case len(res.Warnings) > 0:
				// A status the injector did not write: nothing removed.
				rep.summaries = append(rep.summaries, w.Ref()+" not changed: its "+inject.StatusAnnotation+" is not the injector's")
			}
			rep.addWarnings(w, res.Warnings)
			return res.Patch, nil
		})
}

// readDocuments reads every input (--filename, stdin for "-") and splits
// it into documents.
func (c *manifestConfig) readDocuments(stdin io.Reader) ([]inject.Document, error) {
	inputs, err := readInputs(c.Files, c.Recursive, stdin)
	if err != nil {
		return nil, err
	}
	return readAllDocuments(inputs)
}

// rewriteManifests reads every input, then (after prepare, when given)
// patches each pod and pod template with patch, writes the documents only
// once all are done, and the report unless --quiet.
func rewriteManifests(c *manifestConfig, io stdio, prepare func() error, patch func(*report, inject.Workload, *corev1.Pod) (inject.Patch, error)) error {
	docs, err := c.readDocuments(io.in)
	if err != nil {
		return err
	}
	if prepare != nil {
		if err := prepare(); err != nil {
			return err
		}
	}
	rep := newReport()
	for i := range docs {
		if err := inject.EachPod(&docs[i], func(w inject.Workload, pod *corev1.Pod) (inject.Patch, error) { return patch(rep, w, pod) }); err != nil {
			return err
		}
	}
	if err := writeDocuments(io.out, docs, c.Output); err != nil {
		return err
	}
	if !c.Quiet {
		rep.write(io.err)
	}
	return nil
}

// explanation is one line of explain's output: where the pod is and what
// the webhook would do with it.
type explanation struct {
	inject.Workload
	inject.Result
	// WebhookCalled is false when no webhook entry selects the pod.
	WebhookCalled bool   `json:"webhookCalled"`
	Entry         string `json:"webhookEntry,omitempty"`
}

func runExplainManifests(ctx context.Context, c *manifestConfig, io stdio) error {
	docs, err := c.readDocuments(io.in)
	if err != nil {
		return err
	}
	src, err := c.loadSource(ctx)
	if err != nil {
		return err
	}
	out := []explanation{}
	for i := range docs {
		err := inject.EachPod(&docs[i], func(w inject.Workload, pod *corev1.Pod) (inject.Patch, error) {
			ns := pod.Namespace
			if ns == "" {
				ns = src.namespace
			}
			labels, err := src.labels(ctx, ns)
			if err != nil {
				return nil, err
			}
			call := selectEntry(labels, pod.Labels, src.injector.Config().Injection.DefaultPolicy)
			res, _ := src.decide(ctx, pod) // a deny is a result to explain, not a failure
			res.Pod = nil
			out = append(out, explanation{Workload: w, Result: res, WebhookCalled: call.Called, Entry: call.Entry})
			return nil, nil
		})
		if err != nil {
			return err
		}
	}
	return writeReport(io, c.Output, out, func(b *bytes.Buffer) error {
		writeExplanations(b, out)
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
func writeExplanations(w *bytes.Buffer, ex []explanation) {
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
		switch {
		case !e.WebhookCalled:
			verdict = "would NOT be injected (the webhook is not called)"
		case e.Audit && e.Decision == inject.DecisionDeny:
			verdict = "would be refused if injection were enabled (audit mode: reported only, the pod is admitted unchanged)"
		case e.Audit:
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
