package controller

import (
	"fmt"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

func TestLimiter(t *testing.T) {
	t.Parallel()
	now := time.Unix(1000, 0)
	l := newLimiter(2, time.Minute, 100, func() time.Time { return now })
	var got []bool
	for range 3 {
		got = append(got, l.allow("a"))
	}
	if diff := cmp.Diff([]bool{true, true, false}, got); diff != "" {
		t.Fatalf("burst of 2 (-want +got):\n%s", diff)
	}
	if !l.allow("b") {
		t.Fatal("another key has its own bucket")
	}
	ok, wait := l.take("a")
	if ok || wait != time.Minute {
		t.Fatalf("take = %v, %v: want false and a minute to the next token", ok, wait)
	}
	now = now.Add(30 * time.Second)
	if _, wait := l.take("a"); wait != 30*time.Second {
		t.Fatalf("after 30s the next token is %v away, want 30s", wait)
	}
	now = now.Add(30 * time.Second)
	if !l.allow("a") || l.allow("a") {
		t.Fatal("one token per minute")
	}
	now = now.Add(time.Hour)
	// Each allow takes a token: three calls in a row.
	first, second, third := l.allow("a"), l.allow("a"), l.allow("a")
	if !first || !second || third {
		t.Fatal("tokens refill up to the burst, not beyond")
	}
}

func TestLimiterBoundedMemory(t *testing.T) {
	t.Parallel()
	now := time.Unix(1000, 0)
	l := newLimiter(1, time.Minute, 50, func() time.Time { return now })
	for i := range 10000 {
		l.allow(fmt.Sprint("key-", i))
		if len(l.buckets) > 50 {
			t.Fatalf("%d buckets after %d keys: want at most 50", len(l.buckets), i+1)
		}
	}
}

// fakeEvents records Eventf calls.
type fakeEvents struct {
	mu     sync.Mutex
	events []string
}

func (f *fakeEvents) Eventf(regarding runtime.Object, _ runtime.Object, eventtype, reason, action, note string, args ...any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	ref := regarding.(*corev1.ObjectReference)
	f.events = append(f.events, fmt.Sprintf("%s %s/%s %s/%s %s: %s", eventtype, ref.Kind, ref.Name, ref.Namespace, reason, action, fmt.Sprintf(note, args...)))
}

func TestRecorderEvents(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg)
	fe := &fakeEvents{}
	r := &Recorder{rec: fe, limit: newLimiter(2, time.Hour, 100, time.Now), metrics: m, log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	for i := range 5 { // a Deployment's worth of missing pods: 2 Events, 3 throttled
		r.podEvent("shop", fmt.Sprint("web-", i), EventSidecarMissing, "Inject", "no sidecar")
	}
	r.namespaceEvent("typo", nil, EventNamespaceLabelInvalid, InvalidLabelNote("typo", "true"))

	want := []string{
		"Warning Pod/web-0 shop/SidecarMissing Inject: no sidecar",
		"Warning Pod/web-1 shop/SidecarMissing Inject: no sidecar",
		`Warning Namespace/typo typo/NamespaceLabelInvalid Reconcile: namespace label sidecar-injection="true" is invalid (valid: enabled, disabled, audit); ` +
			"pods created here get no sidecar. Fix it: kubectl label namespace typo sidecar-injection=enabled --overwrite (or disabled, or audit)",
	}
	if diff := cmp.Diff(want, fe.events); diff != "" {
		t.Errorf("events (-want +got):\n%s", diff)
	}
	for _, c := range []struct {
		result string
		want   float64
	}{{EventRecorded, 2}, {EventThrottled, 3}} {
		if got := metricValue(m.events.WithLabelValues(EventSidecarMissing, c.result)); got != c.want {
			t.Errorf("events_total{reason=SidecarMissing,result=%s} = %v, want %v", c.result, got, c.want)
		}
	}
}

// metricValue reads a counter or gauge.
func metricValue(m prometheus.Metric) float64 {
	var pb dto.Metric
	if err := m.Write(&pb); err != nil {
		panic(err)
	}
	if c := pb.GetCounter(); c != nil {
		return c.GetValue()
	}
	return pb.GetGauge().GetValue()
}
