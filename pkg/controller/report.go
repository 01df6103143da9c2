package controller

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/metadata"

	"github.com/sidecar-injector/sidecar-injector/pkg/inject"
	"github.com/sidecar-injector/sidecar-injector/pkg/nsview"
)

var replicaSetsResource = schema.GroupVersionResource{Group: "apps", Version: "v1", Resource: "replicasets"}

// Limits of one report: pages of listPage objects, at most maxPages of them.
const (
	listPage = 500
	maxPages = 10000
)

// ClusterReport is what `sidecar-injector explain --cluster` prints: per
// namespace, the pods whose sidecar is stale or missing, grouped by the
// workload that owns them, each with the command that fixes it.
type ClusterReport struct {
	ConfigHash   string            `json:"configHash"`
	ConfigSource string            `json:"configSource"`
	Namespaces   []NamespaceReport `json:"namespaces"`
	// Pod counts over every namespace looked at.
	Current int `json:"current"`
	Stale   int `json:"stale"`
	Missing int `json:"missing"`
}

// NamespaceReport is one namespace with something to fix or to know.
type NamespaceReport struct {
	Name string `json:"name"`
	// Injection is the sidecar-injection label ("" when unlabelled).
	Injection string `json:"injection,omitempty"`
	// LabelInvalid: Injection is neither enabled, disabled nor audit, so
	// no pod here gets a sidecar.
	LabelInvalid bool                  `json:"labelInvalid,omitempty"`
	EnvoyConfig  nsview.ConfigMapState `json:"envoyConfig"`
	Warnings     []string              `json:"warnings,omitempty"`
	Workloads    []WorkloadReport      `json:"workloads,omitempty"`
}

// WorkloadReport is one workload (or bare pod) with stale or missing pods.
type WorkloadReport struct {
	// Kind and Name of the workload: Deployment, StatefulSet, DaemonSet,
	// another owner kind, or Pod for a pod nothing owns.
	Kind    string   `json:"kind"`
	Name    string   `json:"name"`
	Stale   []string `json:"stale,omitempty"`   // pod names
	Missing []string `json:"missing,omitempty"` // pod names
	// Hashes are the config hashes the stale pods were injected with.
	Hashes []string `json:"staleConfigHashes,omitempty"`
	// Fix is the command that gives every pod of the workload a current sidecar.
	Fix  string `json:"fix"`
	Note string `json:"note,omitempty"`
}

// ReportOptions narrow a report.
type ReportOptions struct {
	// Namespace limits the report to one namespace ("" for all).
	Namespace string
	// PodFieldSelector filters the pods listed (DefaultPodFieldSelector).
	PodFieldSelector string
	// ConfigSource says where the config came from, for the output.
	ConfigSource string
}

// BuildClusterReport lists namespaces, their envoy-config and pod metadata,
// and classifies every pod against the injector in's config hash. A pod
// owned by a ReplicaSet is reported under the ReplicaSet's Deployment (one
// GET per ReplicaSet).
func BuildClusterReport(ctx context.Context, cs kubernetes.Interface, md metadata.Interface, in *inject.Injector, o ReportOptions) (*ClusterReport, error) {
	cfg := in.Config()
	r := &ClusterReport{ConfigHash: in.Hash(), ConfigSource: o.ConfigSource}
	nss, err := listNamespaces(ctx, cs, o.Namespace)
	if err != nil {
		return nil, err
	}
	cms, err := cs.CoreV1().ConfigMaps(o.Namespace).List(ctx, metav1.ListOptions{
		FieldSelector: fields.OneTermEqualSelector("metadata.name", inject.ConfigMapName).String(),
	})
	if err != nil {
		return nil, fmt.Errorf("list %s ConfigMaps: %w", inject.ConfigMapName, err)
	}
	envoyConfigs := map[string]*corev1.ConfigMap{}
	for i := range cms.Items {
		envoyConfigs[cms.Items[i].Namespace] = &cms.Items[i]
	}

	type nsInfo struct {
		ns        *corev1.Namespace
		exp       Expectation
		injected  bool
		workloads map[string]*WorkloadReport // kind/name
	}
	infos := map[string]*nsInfo{}
	for i := range nss {
		ns := &nss[i]
		infos[ns.Name] = &nsInfo{ns: ns, exp: NamespaceExpectation(ns.Name, ns.Labels, &cfg), workloads: map[string]*WorkloadReport{}}
	}
	owners := ownerResolver{md: md, cache: map[string]metav1.OwnerReference{}}
	sel := o.PodFieldSelector
	if sel == "" {
		sel = DefaultPodFieldSelector
	}
	cont := ""
	for page := 0; ; page++ {
		if page == maxPages {
			return nil, fmt.Errorf("list pods: more than %d pages of %d; narrow the report with --namespace", maxPages, listPage)
		}
		l, err := md.Resource(podsResource).Namespace(o.Namespace).List(ctx, metav1.ListOptions{FieldSelector: sel, Limit: listPage, Continue: cont})
		if err != nil {
			return nil, fmt.Errorf("list pods: %w", err)
		}
		for i := range l.Items {
			p := &l.Items[i]
			info, ok := infos[p.Namespace]
			if !ok {
				continue
			}
			f := FactsOf(p.Labels, p.Annotations)
			if f.Injected {
				info.injected = true
			}
			state := ClassifyPod(f, info.exp, r.ConfigHash)
			switch state {
			case PodCurrent:
				r.Current++
				continue
			case PodIgnored:
				continue
			case PodStale:
				r.Stale++
			case PodMissing:
				r.Missing++
			}
			kind, name, err := owners.workload(ctx, p)
			if err != nil {
				return nil, err
			}
			key := kind + "/" + name
			w, ok := info.workloads[key]
			if !ok {
				w = &WorkloadReport{Kind: kind, Name: name}
				info.workloads[key] = w
			}
			if state == PodStale {
				w.Stale = append(w.Stale, p.Name)
				h := f.ConfigHash
				if h == "" {
					h = "(unreadable status)"
				}
				if !slices.Contains(w.Hashes, h) {
					w.Hashes = append(w.Hashes, h)
				}
			} else {
				w.Missing = append(w.Missing, p.Name)
			}
		}
		if cont = l.Continue; cont == "" {
			break
		}
	}

	for _, ns := range nss {
		info := infos[ns.Name]
		nr := NamespaceReport{Name: ns.Name, Injection: ns.Labels[inject.NamespaceLabel], EnvoyConfig: stateOf(envoyConfigs[ns.Name])}
		if v, ok := ns.Labels[inject.NamespaceLabel]; ok && !ValidNamespaceLabel(v) {
			nr.LabelInvalid = true
			nr.Warnings = append(nr.Warnings, InvalidLabelNote(ns.Name, v))
		}
		if WantsEnvoyConfig(info.exp, info.injected) {
			nr.Warnings = append(nr.Warnings, nsview.NamespaceWarnings(ns.Name, nr.EnvoyConfig, nsview.PodSecurityBlocks(ns.Labels))...)
		}
		for _, w := range info.workloads {
			slices.Sort(w.Stale)
			slices.Sort(w.Missing)
			slices.Sort(w.Hashes)
			w.Fix, w.Note = fixFor(ns.Name, w)
			nr.Workloads = append(nr.Workloads, *w)
		}
		slices.SortFunc(nr.Workloads, func(a, b WorkloadReport) int {
			return strings.Compare(a.Kind+"/"+a.Name, b.Kind+"/"+b.Name)
		})
		if len(nr.Workloads) > 0 || len(nr.Warnings) > 0 {
			r.Namespaces = append(r.Namespaces, nr)
		}
	}
	return r, nil
}

func listNamespaces(ctx context.Context, cs kubernetes.Interface, only string) ([]corev1.Namespace, error) {
	if only != "" {
		ns, err := cs.CoreV1().Namespaces().Get(ctx, only, metav1.GetOptions{})
		if err != nil {
			return nil, fmt.Errorf("namespace %s: %w", only, err)
		}
		return []corev1.Namespace{*ns}, nil
	}
	var out []corev1.Namespace
	cont := ""
	for page := 0; page < maxPages; page++ {
		l, err := cs.CoreV1().Namespaces().List(ctx, metav1.ListOptions{Limit: listPage, Continue: cont})
		if err != nil {
			return nil, fmt.Errorf("list namespaces: %w", err)
		}
		out = append(out, l.Items...)
		if cont = l.Continue; cont == "" {
			slices.SortFunc(out, func(a, b corev1.Namespace) int { return strings.Compare(a.Name, b.Name) })
			return out, nil
		}
	}
	return nil, fmt.Errorf("list namespaces: more than %d pages of %d", maxPages, listPage)
}

// ownerResolver finds the workload a pod belongs to.
type ownerResolver struct {
	md    metadata.Interface
	cache map[string]metav1.OwnerReference // namespace/replicaset -> its controller (Kind "" if none)
}

// workload is the kind and name of the object to restart for pod p: its
// controller, or the Deployment of its ReplicaSet; Pod and its name when
// nothing owns it.
func (o *ownerResolver) workload(ctx context.Context, p *metav1.PartialObjectMetadata) (string, string, error) {
	ref := metav1.GetControllerOfNoCopy(p)
	if ref == nil {
		return "Pod", p.Name, nil
	}
	if ref.Kind != "ReplicaSet" || !strings.HasPrefix(ref.APIVersion, "apps/") {
		return ref.Kind, ref.Name, nil
	}
	key := p.Namespace + "/" + ref.Name
	owner, ok := o.cache[key]
	if !ok {
		rs, err := o.md.Resource(replicaSetsResource).Namespace(p.Namespace).Get(ctx, ref.Name, metav1.GetOptions{})
		switch {
		case err == nil:
			if c := metav1.GetControllerOfNoCopy(rs); c != nil {
				owner = *c
			}
		case apierrors.IsNotFound(err):
		case apierrors.IsForbidden(err):
			// Cannot see ReplicaSets: report the ReplicaSet itself.
		default:
			return "", "", fmt.Errorf("get replicaset %s: %w", key, err)
		}
		o.cache[key] = owner
	}
	if owner.Kind == "Deployment" && strings.HasPrefix(owner.APIVersion, "apps/") {
		return "Deployment", owner.Name, nil
	}
	return ref.Kind, ref.Name, nil
}

// fixFor is the command that refreshes every pod of w, and a note when the
// command alone is not the whole story.
func fixFor(ns string, w *WorkloadReport) (fix, note string) {
	switch w.Kind {
	case "Deployment", "StatefulSet", "DaemonSet":
		return fmt.Sprintf("kubectl rollout restart %s/%s -n %s", strings.ToLower(w.Kind), w.Name, ns), ""
	}
	pods := append(append([]string{}, w.Stale...), w.Missing...)
	slices.Sort(pods)
	fix = fmt.Sprintf("kubectl delete pod %s -n %s", strings.Join(pods, " "), ns)
	if w.Kind == "Pod" {
		return fix, "a bare pod: nothing recreates it; create it again from its manifest"
	}
	return fix, fmt.Sprintf("its %s %s creates the replacement", w.Kind, w.Name)
}

// WriteText writes the report for a terminal.
func (r *ClusterReport) WriteText(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "injector config hash %s (%s)\n", r.ConfigHash, r.ConfigSource)
	workloads := 0
	for _, ns := range r.Namespaces {
		label := ns.Injection
		if label == "" {
			label = "unlabelled"
		} else {
			label = inject.NamespaceLabel + "=" + label
		}
		fmt.Fprintf(&b, "\nnamespace %s (%s)\n", ns.Name, label)
		for _, warning := range ns.Warnings {
			fmt.Fprintf(&b, "  warning: %s\n", warning)
		}
		for _, wl := range ns.Workloads {
			workloads++
			var what []string
			if n := len(wl.Stale); n > 0 {
				what = append(what, fmt.Sprintf("%d stale (injected with config hash %s)", n, strings.Join(wl.Hashes, ", ")))
			}
			if n := len(wl.Missing); n > 0 {
				what = append(what, fmt.Sprintf("%d missing the sidecar", n))
			}
			fmt.Fprintf(&b, "  %s/%s: %s\n", strings.ToLower(wl.Kind), wl.Name, strings.Join(what, ", "))
			if len(wl.Stale) > 0 {
				fmt.Fprintf(&b, "    stale:   %s\n", strings.Join(wl.Stale, " "))
			}
			if len(wl.Missing) > 0 {
				fmt.Fprintf(&b, "    missing: %s\n", strings.Join(wl.Missing, " "))
			}
			fmt.Fprintf(&b, "    fix:     %s\n", wl.Fix)
			if wl.Note != "" {
				fmt.Fprintf(&b, "    note:    %s\n", wl.Note)
			}
		}
	}
	if r.Stale+r.Missing == 0 {
		fmt.Fprintf(&b, "\nevery pod is current: nothing to restart (%d injected pods)\n", r.Current)
	} else {
		fmt.Fprintf(&b, "\n%s in %s need a restart: %d stale, %d missing the sidecar; %d current\n",
			plural(r.Stale+r.Missing, "pod"), plural(workloads, "workload"), r.Stale, r.Missing, r.Current)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}

// Labels of the chart's injector config ConfigMap.
const (
	chartPartOfSelector = "app.kubernetes.io/part-of=sidecar-injector,app.kubernetes.io/component=webhook"
	injectorConfigKey   = "config.yaml"
)

// FindInjectorConfig reads the injector config of the installed chart: the
// ConfigMap named ref (namespace/name) or, when ref is empty, the one
// ConfigMap labelled as the chart labels it that has a config.yaml. It
// returns the file's content and where it came from; found is false when
// the cluster has none (the caller uses the built-in defaults).
func FindInjectorConfig(ctx context.Context, cs kubernetes.Interface, ref string) (data []byte, source string, found bool, err error) {
	if ref != "" {
		ns, name, ok := strings.Cut(ref, "/")
		if !ok || ns == "" || name == "" {
			return nil, "", false, fmt.Errorf("injector ConfigMap %q: want NAMESPACE/NAME", ref)
		}
		cm, err := cs.CoreV1().ConfigMaps(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return nil, "", false, fmt.Errorf("injector ConfigMap %s: %w", ref, err)
		}
		v, ok := cm.Data[injectorConfigKey]
		if !ok {
			return nil, "", false, fmt.Errorf("injector ConfigMap %s has no key %s", ref, injectorConfigKey)
		}
		return []byte(v), "ConfigMap " + ref, true, nil
	}
	l, err := cs.CoreV1().ConfigMaps(metav1.NamespaceAll).List(ctx, metav1.ListOptions{LabelSelector: chartPartOfSelector})
	if err != nil {
		return nil, "", false, fmt.Errorf("look for the injector config (ConfigMaps labelled %s): %w; pass --config FILE or --injector-configmap NAMESPACE/NAME", chartPartOfSelector, err)
	}
	var hits []*corev1.ConfigMap
	for i := range l.Items {
		if _, ok := l.Items[i].Data[injectorConfigKey]; ok {
			hits = append(hits, &l.Items[i])
		}
	}
	switch len(hits) {
	case 0:
		return nil, "", false, nil
	case 1:
		cm := hits[0]
		return []byte(cm.Data[injectorConfigKey]), "ConfigMap " + cm.Namespace + "/" + cm.Name, true, nil
	}
	var names []string
	for _, cm := range hits {
		names = append(names, cm.Namespace+"/"+cm.Name)
	}
	return nil, "", false, errors.New("several injector configs in the cluster (" + strings.Join(names, ", ") + "): choose one with --injector-configmap NAMESPACE/NAME")
}
