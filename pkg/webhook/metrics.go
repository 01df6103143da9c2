package webhook

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/sidecar-injector/sidecar-injector/internal/version"
	"github.com/sidecar-injector/sidecar-injector/pkg/inject"
)

// Result is the result label of sidecar_injector_admission_requests_total:
// a small fixed set.
type Result string

const (
	ResultInjected Result = "injected" // allowed with the sidecar patch
	ResultSkipped  Result = "skipped"  // a pod the engine left alone (reason says why)
	ResultDenied   Result = "denied"   // allowed: false
	ResultAllowed  Result = "allowed"  // not a pod CREATE: allowed untouched
	ResultAudited  Result = "audited"  // audit mode: decision reported, nothing applied
	ResultError    Result = "error"    // not answered with a review (HTTP 4xx/5xx), or a panic
)

// Reasons the webhook gives besides the engine's inject.Reasons(). Together
// they are the bounded value set of the reason label.
const (
	ReasonBadRequest           inject.Reason = "bad_request"            // malformed body or envelope (HTTP 400)
	ReasonUnsupportedMediaType inject.Reason = "unsupported_media_type" // Content-Type not JSON (HTTP 415)
	ReasonBodyTooLarge         inject.Reason = "body_too_large"         // over the body cap (HTTP 413)
	ReasonReadError            inject.Reason = "read_error"             // body read failed or timed out
	ReasonOverloaded           inject.Reason = "overloaded"             // above max-in-flight (HTTP 429)
	ReasonNotPod               inject.Reason = "not_pod"                // another kind: allowed untouched
	ReasonSubresource          inject.Reason = "subresource"            // pods/status, pods/ephemeralcontainers...: allowed untouched
	ReasonNotCreate            inject.Reason = "not_create"             // UPDATE, DELETE, CONNECT: allowed untouched
	ReasonBadObject            inject.Reason = "bad_object"             // CREATE whose object is null or not a Pod
	ReasonNoNamespace          inject.Reason = "no_namespace"           // request.namespace empty
	ReasonPanic                inject.Reason = "panic"                  // a recovered panic
	ReasonInternal             inject.Reason = "internal_error"         // an engine error that is not a deny
	ReasonOther                inject.Reason = "other"                  // a reason outside the known set (a bug; keeps labels bounded)
)

// WebhookReasons lists the webhook's own reasons in a fixed order.
func WebhookReasons() []inject.Reason {
	return []inject.Reason{
		ReasonBadRequest, ReasonUnsupportedMediaType, ReasonBodyTooLarge, ReasonReadError,
		ReasonOverloaded, ReasonNotPod, ReasonSubresource, ReasonNotCreate, ReasonBadObject,
		ReasonNoNamespace, ReasonPanic, ReasonInternal, ReasonOther,
	}
}

// Metrics are the webhook's Prometheus metrics, registered on the registry
// passed to NewMetrics (never the global one).
type Metrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	inFlight prometheus.Gauge
	panics   prometheus.Counter
	explains *prometheus.CounterVec

	configInfo       *prometheus.GaugeVec
	configReloads    *prometheus.CounterVec
	configLastReload prometheus.Gauge
	certExpiry       prometheus.Gauge
	certReloads      *prometheus.CounterVec
	certLastReload   prometheus.Gauge
	ready            prometheus.Gauge
	nativeSidecar    prometheus.Gauge

	// Pre-resolved children: no label hashing on the hot path.
	mu        sync.RWMutex
	counters  map[countKey]prometheus.Counter
	durations map[Result]prometheus.Observer
	known     map[inject.Reason]bool
}

type countKey struct {
	result Result
	reason inject.Reason
}

// DurationBuckets are the admission latency buckets: 0.5 ms to 10 s.
func DurationBuckets() []float64 {
	return []float64{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10}
}

// NewMetrics creates and registers the webhook metrics, the build info and
// the Go and process collectors on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sidecar_injector_admission_requests_total",
			Help: "Admission requests answered, by result (injected, skipped, denied, allowed, audited, error) and reason.",
		}, []string{"result", "reason"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "sidecar_injector_admission_duration_seconds",
			Help:    "Time from receiving an admission request to writing its answer, by result.",
			Buckets: DurationBuckets(),
		}, []string{"result"}),
		inFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "sidecar_injector_admission_in_flight",
			Help: "Admission requests being served now (bounded by --max-in-flight).",
		}),
		panics: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sidecar_injector_panics_total",
			Help: "Panics recovered while serving requests.",
		}),
		explains: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sidecar_injector_explain_requests_total",
			Help: "POST /explain requests, by result (ok, error).",
		}, []string{"result"}),
		configInfo: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "sidecar_injector_config_info",
			Help: "The injector config in use: 1 for its hash (the configHash recorded in injected pods).",
		}, []string{"hash"}),
		configReloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sidecar_injector_config_reloads_total",
			Help: "Injector config loads, by result (success, error); an error keeps the previous config.",
		}, []string{"result"}),
		configLastReload: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "sidecar_injector_config_last_reload_success_timestamp_seconds",
			Help: "When the injector config in use was loaded (Unix time).",
		}),
		certExpiry: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "sidecar_injector_certificate_expiry_timestamp_seconds",
			Help: "NotAfter of the serving certificate in use (Unix time); 0 before one is loaded.",
		}),
		certReloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sidecar_injector_certificate_reloads_total",
			Help: "Serving certificate loads, by result (success, error); an error keeps the previous pair.",
		}, []string{"result"}),
		certLastReload: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "sidecar_injector_certificate_last_reload_success_timestamp_seconds",
			Help: "When the serving certificate in use was loaded (Unix time).",
		}),
		ready: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "sidecar_injector_ready",
			Help: "1 when /readyz answers 200 (certificate and config loaded, not shutting down).",
		}),
		nativeSidecar: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "sidecar_injector_native_sidecar_supported",
			Help: "What proxy.nativeSidecar auto resolves to: 1 native sidecars (cluster 1.29+, or version unknown), 0 classic.",
		}),
	}
	buildInfo := version.NewCollector("webhook")

	reg.MustRegister(m.requests, m.duration, m.inFlight, m.panics, m.explains,
		m.configInfo, m.configReloads, m.configLastReload,
		m.certExpiry, m.certReloads, m.certLastReload, m.ready, m.nativeSidecar, buildInfo,
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	for _, r := range []string{"success", "error"} {
		m.configReloads.WithLabelValues(r)
		m.certReloads.WithLabelValues(r)
	}
	m.explains.WithLabelValues("ok")
	m.explains.WithLabelValues("error")

	// Every valid (result, reason) pair exists from the start at 0, so rates
	// and alerts work before the first occurrence.
	m.counters = map[countKey]prometheus.Counter{}
	m.known = map[inject.Reason]bool{}
	add := func(res Result, reasons ...inject.Reason) {
		for _, r := range reasons {
			m.known[r] = true
			m.counters[countKey{res, r}] = m.requests.WithLabelValues(string(res), string(r))
		}
	}
	for _, r := range inject.Reasons() {
		add(ResultAudited, r)
		switch naturalResult(r) {
		case ResultInjected:
			add(ResultInjected, r)
		case ResultSkipped:
			add(ResultSkipped, r)
		case ResultDenied:
			add(ResultDenied, r)
		default: // a reason this code does not know yet: any of the three
			add(ResultInjected, r)
			add(ResultSkipped, r)
			add(ResultDenied, r)
		}
	}
	add(ResultDenied, ReasonBadObject, ReasonNoNamespace, ReasonInternal)
	add(ResultAllowed, ReasonNotPod, ReasonSubresource, ReasonNotCreate)
	add(ResultError, ReasonBadRequest, ReasonUnsupportedMediaType, ReasonBodyTooLarge,
		ReasonReadError, ReasonOverloaded, ReasonPanic)
	m.known[ReasonOther] = true

	m.durations = map[Result]prometheus.Observer{}
	for _, res := range []Result{ResultInjected, ResultSkipped, ResultDenied, ResultAllowed, ResultAudited, ResultError} {
		m.durations[res] = m.duration.WithLabelValues(string(res))
	}
	return m
}

// naturalResult is the result an engine reason comes with outside audit mode.
func naturalResult(r inject.Reason) Result {
	switch r.Decision() {
	case inject.DecisionInject:
		return ResultInjected
	case inject.DecisionSkip:
		return ResultSkipped
	case inject.DecisionDeny:
		return ResultDenied
	}
	return ""
}

// observe counts one answered request and its duration in seconds.
func (m *Metrics) observe(res Result, reason inject.Reason, seconds float64) {
	if !m.known[reason] {
		reason = ReasonOther
	}
	k := countKey{res, reason}
	m.mu.RLock()
	c, ok := m.counters[k]
	m.mu.RUnlock()
	if !ok {
		// An unusual but bounded pair (both sets are fixed): create it once.
		c = m.requests.WithLabelValues(string(res), string(reason))
		m.mu.Lock()
		m.counters[k] = c
		m.mu.Unlock()
	}
	c.Inc()
	if o, ok := m.durations[res]; ok {
		o.Observe(seconds)
	}
}
