package controller

import (
	"context"
	"log/slog"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/events"

	"github.com/sidecar-injector/sidecar-injector/pkg/inject"
)

// ReportingController is the reportingController of our Events.
const ReportingController = "sidecar-injector"

// eventRecorder is the part of events.EventRecorder we use (tests record
// into a fake).
type eventRecorder interface {
	Eventf(regarding runtime.Object, related runtime.Object, eventtype, reason, action, note string, args ...any)
}

// Recorder records Kubernetes Events (events.k8s.io/v1), rate-limited per
// reason and namespace, so that a flood of pods or a resync loop never
// floods the apiserver.
type Recorder struct {
	broadcaster events.EventBroadcaster // nil with a fake recorder
	rec         eventRecorder
	limit       *limiter
	metrics     *Metrics
	log         *slog.Logger
}

// NewRecorder makes a Recorder writing through cs; Start begins sending.
// burst Events of one reason in one namespace go out at once, then one per
// every.
func NewRecorder(cs kubernetes.Interface, burst int, every time.Duration, m *Metrics, log *slog.Logger) *Recorder {
	b := events.NewBroadcaster(&events.EventSinkImpl{Interface: cs.EventsV1()})
	return &Recorder{
		broadcaster: b,
		rec:         b.NewRecorder(scheme.Scheme, ReportingController),
		limit:       newLimiter(burst, every, maxLimiterKeys, time.Now),
		metrics:     m,
		log:         log,
	}
}

// Start sends recorded Events to the apiserver until ctx is done.
func (r *Recorder) Start(ctx context.Context) error {
	if r.broadcaster == nil {
		return nil
	}
	if err := r.broadcaster.StartRecordingToSinkWithContext(ctx); err != nil {
		return err
	}
	context.AfterFunc(ctx, r.broadcaster.Shutdown)
	return nil
}

// Skip describes an injection skip, for SkipEvent.
type Skip struct {
	// Namespace is the pod's namespace (request.namespace).
	Namespace string
	// Pod is the pod's name, or its generateName when it has no name yet.
	Pod string
	// Owner is the pod's controller (metav1.GetControllerOf); nil for a bare pod.
	Owner *metav1.OwnerReference
	// Reason and Message are the engine's decision.
	Reason  inject.Reason
	Message string
	// DryRun requests have no side effects: no Event.
	DryRun bool
}

// EventWorthy says whether a skip reason surprises users enough to deserve
// an Event: not opting out, which they asked for, nor an already injected
// pod (a normal reinvocation).
func EventWorthy(r inject.Reason) bool {
	switch r {
	case inject.ReasonHostNetwork, inject.ReasonMirrorPod, inject.ReasonExcludedNamespace,
		inject.ReasonInjectorNamespace, inject.ReasonNotOptedIn, inject.ReasonNamespaceDisabled:
		return true
	}
	return false
}

// SkipEvent records a Warning Event on the pod's owner (the pod itself when
// it has none) saying why it got no sidecar. Reasons that are not
// EventWorthy and dry runs record nothing; Events beyond the rate limit of
// the reason in the namespace are dropped and counted. It never blocks: the
// admission hot path may call it.
func (r *Recorder) SkipEvent(s Skip) {
	if r == nil || !EventWorthy(s.Reason) || s.Namespace == "" {
		return
	}
	if s.DryRun {
		r.metrics.events.WithLabelValues(EventSidecarSkipped, EventDryRun).Inc()
		return
	}
	if !r.limit.allow(EventSidecarSkipped + "/" + string(s.Reason) + "/" + s.Namespace) {
		r.metrics.events.WithLabelValues(EventSidecarSkipped, EventThrottled).Inc()
		return
	}
	ref := &corev1.ObjectReference{Kind: "Pod", APIVersion: "v1", Namespace: s.Namespace, Name: s.Pod}
	if o := s.Owner; o != nil {
		ref = &corev1.ObjectReference{Kind: o.Kind, APIVersion: o.APIVersion, Namespace: s.Namespace, Name: o.Name, UID: o.UID}
	}
	if ref.Name == "" {
		return // nothing to attach it to
	}
	r.rec.Eventf(ref, nil, corev1.EventTypeWarning, EventSidecarSkipped, "Inject",
		"no sidecar for pod %s (%s): %s", s.Pod, s.Reason, truncate(s.Message, 512))
	r.metrics.events.WithLabelValues(EventSidecarSkipped, EventRecorded).Inc()
}

// namespaceEvent records a Warning Event on a namespace, stored in that
// namespace (so `kubectl get events -n NS` shows it), related to obj.
func (r *Recorder) namespaceEvent(ns string, related runtime.Object, reason, note string) {
	if !r.limit.allow(reason + "/" + ns) {
		r.metrics.events.WithLabelValues(reason, EventThrottled).Inc()
		return
	}
	ref := &corev1.ObjectReference{Kind: "Namespace", APIVersion: "v1", Name: ns, Namespace: ns}
	r.rec.Eventf(ref, related, corev1.EventTypeWarning, reason, "Reconcile", "%s", truncate(note, 1000))
	r.metrics.events.WithLabelValues(reason, EventRecorded).Inc()
	r.log.Warn("event", "namespace", ns, "reason", reason, "note", note)
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && s[n]&0xc0 == 0x80 { // not inside a UTF-8 sequence
		n--
	}
	return s[:n] + "..."
}

// maxLimiterKeys bounds the limiter's memory (reason x namespace pairs).
const maxLimiterKeys = 10000

// limiter is a token bucket per key: burst tokens, one more every period.
type limiter struct {
	mu      sync.Mutex
	burst   float64
	every   time.Duration
	max     int
	now     func() time.Time
	buckets map[string]*bucket
}

type bucket struct {
	tokens float64
	last   time.Time
}

func newLimiter(burst int, every time.Duration, max int, now func() time.Time) *limiter {
	return &limiter{burst: float64(burst), every: every, max: max, now: now, buckets: map[string]*bucket{}}
}

// allow takes a token of key if one is left.
func (l *limiter) allow(key string) bool {
	ok, _ := l.take(key)
	return ok
}

// take takes a token of key if one is left; otherwise it says how long
// until the next one.
func (l *limiter) take(key string) (bool, time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	b, ok := l.buckets[key]
	if !ok {
		if len(l.buckets) >= l.max {
			l.prune(now)
		}
		b = &bucket{tokens: l.burst, last: now}
		l.buckets[key] = b
	}
	b.tokens = min(l.burst, b.tokens+float64(now.Sub(b.last))/float64(l.every))
	b.last = now
	if b.tokens >= 1 {
		b.tokens--
		return true, 0
	}
	return false, time.Duration((1 - b.tokens) * float64(l.every))
}

// prune forgets the buckets that are full again (forgetting them changes
// nothing); if that is not enough, it forgets all: bounded memory wins
// over an exact limit.
func (l *limiter) prune(now time.Time) {
	for k, b := range l.buckets {
		if b.tokens+float64(now.Sub(b.last))/float64(l.every) >= l.burst {
			delete(l.buckets, k)
		}
	}
	if len(l.buckets) >= l.max {
		clear(l.buckets)
	}
}
