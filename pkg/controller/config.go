package controller

import (
	"errors"
	"flag"
	"fmt"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
)

// FieldManager is the default server-side apply field manager: the name
// `kubectl get cm envoy-config -o yaml --show-managed-fields` shows.
const FieldManager = "sidecar-injector"

// DefaultPodFieldSelector keeps the pod informer to pods that can carry a
// sidecar and still run: hostNetwork pods are never injected, finished pods
// need no restart. spec.hostNetwork is selectable since Kubernetes 1.28;
// older clusters need --pod-field-selector without it.
const DefaultPodFieldSelector = "spec.hostNetwork=false,status.phase!=Succeeded,status.phase!=Failed"

// Config configures the reconciler of `sidecar-injector controller`:
// envoy-config distribution, Events and the pod and namespace gauges.
type Config struct {
	// Resync is the informers' resync period: every namespace is checked
	// again this often even without a change.
	Resync time.Duration
	// FieldManager is the server-side apply field manager.
	FieldManager string
	// NamespaceSelector limits the controller to namespaces with these
	// labels (a label selector); empty: every namespace.
	NamespaceSelector string
	// PodFieldSelector filters the metadata-only pod informer.
	PodFieldSelector string
	// Workers reconcile namespaces in parallel.
	Workers int
	// OwnerClusterRole names a cluster-scoped object of the release (the
	// controller's ClusterRole) that owns every envoy-config we write, so
	// that the cluster's garbage collector deletes them on helm uninstall.
	// Empty: no owner (a controller run by hand).
	OwnerClusterRole string
	// XDSCAFile is the CA (PEM) that signs the xDS server's certificate,
	// put into every envoy-config in place of the injector config's
	// xds.caCert when xDS TLS is on (cert-manager's ca.crt). Read again when
	// it changes. Empty: xds.caCert.
	XDSCAFile string

	// PodRecount is how often the pod state gauge is recomputed after a
	// change (it walks every pod in the cache: O(pods)).
	PodRecount time.Duration
	// ConfigPoll is how often the injector config source is checked for a
	// new config.
	ConfigPoll time.Duration
	// EventEvery is the least time between two Events of the same reason in
	// the same namespace (EventBurst at once).
	EventBurst int
	EventEvery time.Duration
}

// DefaultConfig returns the defaults.
func DefaultConfig() Config {
	return Config{
		Resync:           10 * time.Minute,
		FieldManager:     FieldManager,
		PodFieldSelector: DefaultPodFieldSelector,
		Workers:          2,
		PodRecount:       2 * time.Second,
		ConfigPoll:       time.Second,
		EventBurst:       3,
		EventEvery:       10 * time.Minute,
	}
}

// AddFlags registers the reconciler's flags.
func (c *Config) AddFlags(fs *flag.FlagSet) {
	fs.DurationVar(&c.Resync, "resync", c.Resync, "check every namespace again this often, even without a change")
	fs.StringVar(&c.FieldManager, "field-manager", c.FieldManager, "server-side apply field `name` of the envoy-config writes")
	fs.StringVar(&c.NamespaceSelector, "namespace-selector", c.NamespaceSelector, "label `selector` of the namespaces the controller manages (default: all)")
	fs.StringVar(&c.PodFieldSelector, "pod-field-selector", c.PodFieldSelector, "field `selector` of the pods watched for the stale/missing metrics (drop spec.hostNetwork=false before Kubernetes 1.28)")
	fs.IntVar(&c.Workers, "workers", c.Workers, "namespaces reconciled in parallel")
	fs.StringVar(&c.XDSCAFile, "xds-ca-file", c.XDSCAFile, "PEM `file` of the CA that signs the xDS server's certificate, put into every envoy-config when the injector config has xDS TLS on (in place of xds.caCert); re-read when it changes")
	fs.StringVar(&c.OwnerClusterRole, "owner-cluster-role", c.OwnerClusterRole, "`name` of the ClusterRole that owns every envoy-config written, so that deleting it (helm uninstall) garbage-collects them; empty: no owner")
}

// Validate reports every wrong field, each with how to fix it.
func (c Config) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if c.Resync < 0 || (c.Resync > 0 && c.Resync < 10*time.Second) {
		bad("--resync=%s: want 0 (never) or at least 10s, such as 10m", c.Resync)
	}
	if c.FieldManager == "" || len(c.FieldManager) > 128 || strings.IndexFunc(c.FieldManager, func(r rune) bool { return r <= ' ' || r == 0x7f }) >= 0 {
		bad("--field-manager=%q: want a short name without spaces, such as %s", c.FieldManager, FieldManager)
	}
	if _, err := labels.Parse(c.NamespaceSelector); err != nil {
		bad("--namespace-selector=%q: not a label selector (%v); want e.g. team=shop or env in (prod,staging)", c.NamespaceSelector, err)
	}
	if _, err := fields.ParseSelector(c.PodFieldSelector); err != nil {
		bad("--pod-field-selector=%q: not a field selector (%v); want e.g. %s", c.PodFieldSelector, err, DefaultPodFieldSelector)
	}
	if c.Workers < 1 || c.Workers > 64 {
		bad("--workers=%d: want 1-64", c.Workers)
	}
	if n := c.OwnerClusterRole; strings.ContainsAny(n, "/% ") || n == "." || n == ".." {
		bad("--owner-cluster-role=%q: not a ClusterRole name", n)
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"pod recount interval", c.PodRecount}, {"config poll interval", c.ConfigPoll}, {"event interval", c.EventEvery}} {
		if d.v <= 0 {
			bad("%s %s: want a positive duration", d.name, d.v)
		}
	}
	if c.EventBurst < 1 {
		bad("event burst %d: want at least 1", c.EventBurst)
	}
	return errors.Join(errs...)
}
