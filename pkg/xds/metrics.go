package xds

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/sidecar-injector/sidecar-injector/internal/version"
)

// Metrics of the xDS server. Labels are bounded sets only: the xDS type
// (TypeName), a result and a reason; never a node id, pod or namespace.
type Metrics struct {
	ConnectedProxies prometheus.Gauge
	Snapshots        prometheus.Gauge
	SendTimeouts     prometheus.Counter
	Requests         *prometheus.CounterVec // type, result: initial|ack|nack
	Responses        *prometheus.CounterVec // type
	InvalidMetadata  *prometheus.CounterVec // reason: missing|malformed|unsupported_version|oversized|foreign_pod_ip
	BuildDuration    prometheus.Histogram
	PushDuration     prometheus.Histogram
	SettingsReloads  *prometheus.CounterVec // result: success|error|unchanged
	TLSReloads       *prometheus.CounterVec // result: success|error

	// The served types' children of Requests and Responses, by the index
	// of the type in servedTypes (found once, not per request).
	requests  [len(servedTypes)]map[string]prometheus.Counter
	responses [len(servedTypes)]prometheus.Counter
}

// Request results.
const (
	ResultInitial = "initial"
	ResultACK     = "ack"
	ResultNACK    = "nack"
)

// NewMetrics makes the xDS metrics and registers them with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		ConnectedProxies: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "sidecar_injector_xds_connected_proxies",
			Help: "ADS streams whose proxy has identified itself, open now.",
		}),
		Snapshots: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "sidecar_injector_xds_snapshots",
			Help: "Snapshots held: one per group of proxies with the same config-relevant metadata.",
		}),
		Requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sidecar_injector_xds_requests_total",
			Help: "Discovery requests received, by xDS type and result (initial request, ACK or NACK).",
		}, []string{"type", "result"}),
		Responses: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sidecar_injector_xds_responses_total",
			Help: "Discovery responses (pushes) sent, by xDS type.",
		}, []string{"type"}),
		InvalidMetadata: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sidecar_injector_xds_invalid_node_metadata_total",
			Help: "Proxies served the safe default snapshot because their node metadata was missing, malformed, oversized or of an unsupported version, or refused because its podIP was not their address.",
		}, []string{"reason"}),
		BuildDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "sidecar_injector_xds_snapshot_build_duration_seconds",
			Help:    "Time to build and validate one snapshot.",
			Buckets: prometheus.ExponentialBuckets(0.00005, 2.5, 12),
		}),
		PushDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "sidecar_injector_xds_settings_push_duration_seconds",
			Help:    "Time from a mesh settings change being read to every cached snapshot rebuilt and handed to the open streams.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2.5, 12),
		}),
		SettingsReloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sidecar_injector_xds_settings_reloads_total",
			Help: "Reads of the mesh settings file after a change, by result (success, error: old settings kept, unchanged).",
		}, []string{"result"}),
		SendTimeouts: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sidecar_injector_xds_send_timeouts_total",
			Help: "Connections cut because a response waited longer than --send-timeout for the proxy to read it.",
		}),
		TLSReloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sidecar_injector_xds_tls_reloads_total",
			Help: "Reloads of the serving certificate, by result (error: old certificate kept).",
		}, []string{"result"}),
	}
	reg.MustRegister(m.ConnectedProxies, m.Snapshots, m.SendTimeouts, m.Requests, m.Responses, m.InvalidMetadata,
		m.BuildDuration, m.PushDuration, m.SettingsReloads, m.TLSReloads, version.NewCollector("xds"),
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	// Every series exists from the start, at 0.
	for i, typeURL := range servedTypes {
		t := TypeName(typeURL)
		m.requests[i] = map[string]prometheus.Counter{}
		for _, r := range []string{ResultInitial, ResultACK, ResultNACK} {
			m.requests[i][r] = m.Requests.WithLabelValues(t, r)
		}
		m.responses[i] = m.Responses.WithLabelValues(t)
	}
	for _, r := range []string{ReasonMissing, ReasonMalformed, ReasonUnsupported, ReasonOversized, ReasonForeignPodIP} {
		m.InvalidMetadata.WithLabelValues(r)
	}
	for _, r := range []string{"success", "error", "unchanged"} {
		m.SettingsReloads.WithLabelValues(r)
	}
	for _, r := range []string{"success", "error"} {
		m.TLSReloads.WithLabelValues(r)
	}
	return m
}
