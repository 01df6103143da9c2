package controller

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
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

// podEvent records a Warning Event on a pod (stored in its namespace),
// rate-limited per reason and namespace. It never blocks.
func (r *Recorder) podEvent(ns, pod, reason, action, note string) {
	if !r.limit.allow(reason + "/" + ns) {
		r.metrics.events.WithLabelValues(reason, EventThrottled).Inc()
		return
	}
	ref := &corev1.ObjectReference{Kind: "Pod", APIVersion: "v1", Namespace: ns, Name: pod}
	r.rec.Eventf(ref, nil, corev1.EventTypeWarning, reason, action, "%s", truncate(note, 1000))
	r.metrics.events.WithLabelValues(reason, EventRecorded).Inc()
}

// InvalidLabelNote is the Event on a namespace whose sidecar-injection
// label has an invalid value, saying how to fix it.
func InvalidLabelNote(ns, value string) string {
	return fmt.Sprintf("%s; pods created here get no sidecar. Fix it: kubectl label namespace %s %s=enabled --overwrite (or disabled, or audit)",
		inject.InvalidNamespaceLabel(value), ns, inject.NamespaceLabel)
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
