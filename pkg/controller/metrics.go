package controller

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sidecar-injector/sidecar-injector/pkg/nsview"
)

// Results of sidecar_injector_envoy_config_writes_total.
const (
	WriteApplied   = "applied"   // server-side apply created or changed the ConfigMap
	WriteUnchanged = "unchanged" // the apply was a no-op (the content was already there)
	WriteDeleted   = "deleted"   // ours removed: the namespace no longer needs it
	WriteConflict  = "conflict"  // someone else owns the content: left untouched
	WriteError     = "error"     // the API call failed: retried with backoff
)

// Event reasons (the reason of the Kubernetes Event and of
// sidecar_injector_events_total).
const (
	EventSidecarMissing         = "SidecarMissing"
	EventEnvoyConfigNotManaged  = "EnvoyConfigNotManaged"
	EventEnvoyConfigWriteFailed = "EnvoyConfigWriteFailed"
	EventNamespaceLabelInvalid  = "NamespaceLabelInvalid"
)

// EventReasons lists the reasons of our Events.
func EventReasons() []string {
	return []string{EventSidecarMissing, EventEnvoyConfigNotManaged, EventEnvoyConfigWriteFailed, EventNamespaceLabelInvalid}
}

// Results of sidecar_injector_events_total.
const (
	EventRecorded  = "recorded"  // handed to the Event broadcaster
	EventThrottled = "throttled" // over the rate limit of its reason and namespace
)

// Metrics of the controller. Labels are bounded sets only.
type Metrics struct {
	pods         *prometheus.GaugeVec
	namespaces   *prometheus.GaugeVec
	writes       *prometheus.CounterVec
	events       *prometheus.CounterVec
	synced       prometheus.Gauge
	leader       prometheus.Gauge
	labelInvalid prometheus.Gauge
}

// NewMetrics creates the controller metrics and registers them on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		pods: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "sidecar_injector_pods",
			Help: "Running pods by sidecar state: current (injected with the config in use), stale (injected with another config; a restart refreshes it), missing (should have a sidecar but has none).",
		}, []string{"state"}),
		namespaces: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "sidecar_injector_namespaces",
			Help: "Namespaces that need the envoy-config ConfigMap, by its state: ours, missing, foreign (made by someone else, left untouched).",
		}, []string{"state"}),
		writes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sidecar_injector_envoy_config_writes_total",
			Help: "envoy-config ConfigMap writes, by result (applied, unchanged, deleted, conflict, error).",
		}, []string{"result"}),
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sidecar_injector_events_total",
			Help: "Kubernetes Events, by reason and result (recorded, throttled).",
		}, []string{"reason", "result"}),
		synced: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "sidecar_injector_controller_synced",
			Help: "1 once the controller's namespace, ConfigMap and pod caches have synced (the leader only).",
		}),
		leader: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "sidecar_injector_controller_leader",
			Help: "1 on the controller replica that holds the Lease and reconciles; the state gauges of the other replicas are 0.",
		}),
		labelInvalid: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "sidecar_injector_namespaces_label_invalid",
			Help: "Namespaces whose sidecar-injection label is neither enabled, disabled nor audit: their pods get no sidecar.",
		}),
	}
	reg.MustRegister(m.pods, m.namespaces, m.writes, m.events, m.synced, m.leader, m.labelInvalid)
	// Every series exists from the start, at 0.
	for _, s := range PodStates() {
		m.pods.WithLabelValues(string(s))
	}
	for _, s := range nsview.ConfigMapStates() {
		m.namespaces.WithLabelValues(string(s))
	}
	for _, r := range []string{WriteApplied, WriteUnchanged, WriteDeleted, WriteConflict, WriteError} {
		m.writes.WithLabelValues(r)
	}
	for _, reason := range EventReasons() {
		for _, r := range []string{EventRecorded, EventThrottled} {
			m.events.WithLabelValues(reason, r)
		}
	}
	return m
}
