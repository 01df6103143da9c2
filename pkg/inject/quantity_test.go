package inject

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	corev1 "k8s.io/api/core/v1"

	"github.com/sidecar-injector/sidecar-injector/envoy/nodemeta"
)

func TestCheckQuantity(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in string
		ok bool
	}{
		{"1", true}, {"100m", true}, {"0.5", true}, {".5", true}, {"1.", true}, {"+2", true}, {"-1", true},
		{"128Mi", true}, {"2Gi", true}, {"9223372036854775807Ei", true}, {"1e3", true}, {"5E-3", true},
		{"1e+30", true}, {"1e-30", true}, {"1n", true},
		{"", false}, {"m", false}, {".", false}, {"1x", false}, {"1Mb", false}, {"1e", false}, {"1e+", false},
		{"1e31", false}, {"1E-100000000", false}, {"1E+100000000", false}, {"1e0001", false},
		{strings.Repeat("9", 25), false}, {strings.Repeat("1", 1000), false}, {"1.2.3", false}, {" 1", false},
	} {
		if err := checkQuantity(tc.in); (err == nil) != tc.ok {
			t.Errorf("checkQuantity(%q) = %v, want ok=%v", tc.in, err, tc.ok)
		}
	}
}

// TestExpensiveQuantities is RELIABILITY.md row 32: quantities built to be
// expensive, in a setting or in the pod's own resources, are denied by the
// grammar (the allocation bound shows ParseQuantity never ran its slow
// path: 1E-100000000 took 257 MB there), and the admin maxima bound what a
// pod may ask for.
func TestExpensiveQuantities(t *testing.T) {
	in := mustInjector(t, nil)
	hostile := []string{"1E-100000000", "1E+100000000", "1E100000000", "1e-10000000", strings.Repeat("7", 1000), "0." + strings.Repeat("0", 998) + "1"}
	for _, setting := range []string{SettingProxyCPU, SettingProxyMemory} {
		key := SettingPrefix + setting
		for _, v := range hostile {
			pod := testPod()
			pod.Annotations = map[string]string{key: v}
			var err error
			alloc := allocated(func() { _, err = in.Inject(pod, Overrides{Namespace: "shop"}) })
			e, ok := AsError(err)
			if !ok || e.Reason != ReasonInvalidSetting || !strings.Contains(e.Error(), key) || !strings.Contains(e.Error(), truncate(v)) || !strings.Contains(e.Error(), "at most 32 characters") {
				t.Errorf("%s=%.20q: got %v, want invalid_setting naming the annotation, the value and the grammar's limits", key, v, err)
			}
			if alloc > 1<<20 {
				t.Errorf("%s=%.20q: %d bytes allocated, want under 1 MiB", key, v, alloc)
			}
		}
	}
	for _, tc := range []struct{ setting, value, limit string }{
		{SettingProxyCPU, "3", "proxy.maxCPU=2"},
		{SettingProxyCPU, "2001m", "proxy.maxCPU=2"},
		{SettingProxyMemory, "3Gi", "proxy.maxMemory=2Gi"},
		{SettingProxyMemory, "1e10", "proxy.maxMemory=2Gi"},
	} {
		pod := testPod()
		key := SettingPrefix + tc.setting
		pod.Annotations = map[string]string{key: tc.value}
		_, err := in.Inject(pod, Overrides{Namespace: "shop"})
		if e, ok := AsError(err); !ok || e.Reason != ReasonInvalidSetting || !strings.Contains(e.Error(), key) || !strings.Contains(e.Error(), tc.value) || !strings.Contains(e.Error(), tc.limit) {
			t.Errorf("%s=%q: got %v, want a deny naming the annotation, the value and %s", key, tc.value, err, tc.limit)
		}
	}
	for _, v := range []string{"2", "2Gi"} {
		pod := testPod()
		pod.Annotations = map[string]string{SettingPrefix + SettingProxyCPU: "2", SettingPrefix + SettingProxyMemory: "2Gi"}
		if _, err := in.Inject(pod, Overrides{Namespace: "shop"}); err != nil {
			t.Errorf("at the maximum (%s): %v", v, err)
		}
	}
	raised := mustInjector(t, func(c *Config) { c.Proxy.MaxCPU = c.Proxy.MaxMemory; c.Proxy.MaxMemory.Set(1 << 40) })
	pod := testPod()
	pod.Annotations = map[string]string{SettingPrefix + SettingProxyMemory: "3Gi"}
	if _, err := raised.Inject(pod, Overrides{Namespace: "shop"}); err != nil {
		t.Errorf("3Gi under a 1Ti maximum: %v", err)
	}
}

// TestPodQuantities: the pod's own quantities are checked before the pod
// is decoded (decoding a resource.Quantity parses it).
func TestPodQuantities(t *testing.T) {
	for _, tc := range []struct{ name, pod, field string }{
		{"limit", `{"metadata":{"name":"p"},"spec":{"containers":[{"name":"a","resources":{"limits":{"cpu":"1E-100000000"}}}]}}`, "spec.containers[0].resources.limits.cpu"},
		{"bare number", `{"metadata":{"name":"p"},"spec":{"containers":[{"name":"a","resources":{"requests":{"memory":1E+100000000}}}]}}`, "spec.containers[0].resources.requests.memory"},
		{"unicode space", `{"metadata":{"name":"p"},"spec":{"initContainers":[{"name":"a","resources":{"requests":{"cpu":"` + "\u00a0" + `1E-100000000"}}}],"containers":[{"name":"b"}]}}`, "spec.initContainers[0].resources.requests.cpu"},
		{"overhead", `{"metadata":{"name":"p"},"spec":{"overhead":{"cpu":"` + strings.Repeat("1", 1000) + `"},"containers":[{"name":"a"}]}}`, "spec.overhead.cpu"},
		{"emptyDir", `{"metadata":{"name":"p"},"spec":{"volumes":[{"name":"v","emptyDir":{"sizeLimit":"1e99999"}}],"containers":[{"name":"a"}]}}`, "spec.volumes[0].emptyDir.sizeLimit"},
		{"status", `{"metadata":{"name":"p"},"spec":{"containers":[{"name":"a"}]},"status":{"containerStatuses":[{"allocatedResources":{"cpu":"1E-100000000"}}]}}`, "status.containerStatuses[0].allocatedResources.cpu"},
		// A decoder reads every copy of a key given twice: each is checked.
		{"key given twice", `{"metadata":{"name":"p"},"spec":{"containers":[{"name":"a","resources":{"limits":{"cpu":"1E-100000000","cpu":"1"}}}]}}`, "spec.containers[0].resources.limits.cpu"},
		{"spec given twice", `{"spec":{"containers":[{"name":"a","resources":{"limits":{"memory":"1e-99999999"}}}]},"metadata":{"name":"p"},"spec":{"containers":[{"name":"a"}]}}`, "spec.containers[0].resources.limits.memory"},
		{"escaped key", `{"metadata":{"name":"p"},"sp\u0065c":{"containers":[{"name":"a","resources":{"limits":{"cpu":"1E-100000000"}}}]}}`, "spec.containers[0].resources.limits.cpu"},
		{"divisor", `{"metadata":{"name":"p"},"spec":{"containers":[{"name":"a","env":[{"name":"X","valueFrom":{"resourceFieldRef":{"resource":"limits.cpu","divisor":"1E-100000000"}}}]}]}}`, "spec.containers[0].env[0].valueFrom.resourceFieldRef.divisor"},
		{"ephemeral volume", `{"metadata":{"name":"p"},"spec":{"volumes":[{"name":"v"},{"name":"w","ephemeral":{"volumeClaimTemplate":{"spec":{"resources":{"requests":{"storage":"1e+100000"}}}}}}]}}`, "spec.volumes[1].ephemeral.volumeClaimTemplate.spec.resources.requests.storage"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var err error
			alloc := allocated(func() { _, err = DecodePod([]byte(tc.pod)) })
			e, ok := AsError(err)
			if !ok || e.Reason != ReasonInvalidPod || e.Field != tc.field {
				t.Fatalf("got %v, want invalid_pod naming %s", err, tc.field)
			}
			if alloc > 1<<20 {
				t.Errorf("%d bytes allocated, want under 1 MiB", alloc)
			}
		})
	}
	// Ordinary quantities, and an exponent outside any quantity, decode.
	ok := `{"metadata":{"name":"p","labels":{"v":"1e99999"}},"spec":{"containers":[{"name":"a","env":[{"name":"X","value":"1E-100000000"}],"resources":{"limits":{"cpu":"1e3","memory":"1Gi"}}}]}}`
	if _, err := DecodePod([]byte(ok)); err != nil {
		t.Fatalf("ordinary pod: %v", err)
	}
}

// TestQuantityPlaces: the places found in corev1.Pod's type include the
// ones CheckQuantities once listed by hand, and the ones that list missed.
func TestQuantityPlaces(t *testing.T) {
	var listed []string
	for _, p := range quantityPlaces() {
		listed = append(listed, strings.Join(p, "/"))
	}
	for _, want := range []string{
		"spec/containers/#/resources/limits/*",
		"spec/initContainers/#/resources/requests/*",
		"spec/ephemeralContainers/#/resources/limits/*",
		"spec/overhead/*",
		"spec/resources/requests/*",
		"spec/volumes/#/emptyDir/sizeLimit",
		"spec/volumes/#/ephemeral/volumeClaimTemplate/spec/resources/requests/*",
		"status/containerStatuses/#/allocatedResources/*",
		"status/initContainerStatuses/#/resources/limits/*",
		// Missed by the hand-written list:
		"spec/containers/#/env/#/valueFrom/resourceFieldRef/divisor",
		"spec/volumes/#/projected/sources/#/downwardAPI/items/#/resourceFieldRef/divisor",
		"status/allocatedResources/*",
	} {
		if !slices.Contains(listed, want) {
			t.Errorf("%s is not among the quantity places:\n%s", want, strings.Join(listed, "\n"))
		}
	}
}

// allocated returns the bytes fn allocated (the whole process's; callers
// do not run in parallel).
func allocated(fn func()) uint64 {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	fn()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// FuzzSettingValue feeds any value to the quantity settings (and the
// others): whatever it is, parsing it allocates a bounded amount, so no
// value can be made expensive (1E-100000000 once took 257 MB).
func FuzzSettingValue(f *testing.F) {
	for _, s := range []string{"100m", "1", "128Mi", "1E-100000000", "1e+30", "0.0001", "9223372036854775807Ei", strings.Repeat("9", 40), "1e-10000000"} {
		f.Add(s)
	}
	proxy := DefaultConfig().Proxy
	f.Fuzz(func(t *testing.T, v string) {
		for _, name := range []string{SettingProxyCPU, SettingProxyMemory, SettingIncludeInboundPorts, SettingExcludeOutboundIPRanges} {
			var s settings
			alloc := allocated(func() { _ = s.set(name, v, proxy) })
			if limit := uint64(1<<20 + 64*len(v)); alloc > limit {
				t.Fatalf("%s=%.40q: %d bytes allocated, want at most %d", name, v, alloc, limit)
			}
		}
	})
}

// countdownCtx is done after its Err has been asked n times.
type countdownCtx struct {
	context.Context
	n atomic.Int32
}

func (c *countdownCtx) Err() error {
	if c.n.Add(-1) < 0 {
		return context.Canceled
	}
	return nil
}

// Row 33: explain work stops when the request's context is done (the
// client left), and at the pod cap.
func TestExplainLimitedStops(t *testing.T) {
	in := mustInjector(t, nil)
	var stream strings.Builder
	for i := range 50 {
		fmt.Fprintf(&stream, `{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p%d"},"spec":{"containers":[{"name":"a","image":"a"}]}}`+"\n", i)
	}
	ctx := &countdownCtx{Context: context.Background()}
	ctx.n.Store(10)
	out, err := in.ExplainLimited(ctx, []byte(stream.String()), Overrides{}, 1000)
	if !errors.Is(err, context.Canceled) || out != nil {
		t.Fatalf("cancelled: got %d explanations, %v; want context.Canceled", len(out), err)
	}
	if _, err := in.ExplainLimited(context.Background(), []byte(stream.String()), Overrides{}, 20); !errors.Is(err, ErrTooManyPods) {
		t.Fatalf("over the cap: %v, want ErrTooManyPods", err)
	}
	if out, err := in.ExplainLimited(context.Background(), []byte(stream.String()), Overrides{}, 50); err != nil || len(out) != 50 {
		t.Fatalf("at the cap: %d, %v", len(out), err)
	}
}

// Row X1, the webhook's side: a pod with more app ports than the xDS
// server reads is refused naming the limit (the server would serve its
// proxy the default snapshot).
func TestAppPortCap(t *testing.T) {
	in := mustInjector(t, nil)
	pod := testPod()
	pod.Spec.Containers[0].Ports = nil
	for i := range nodemeta.MaxAppPorts + 1 {
		pod.Spec.Containers[0].Ports = append(pod.Spec.Containers[0].Ports, corev1.ContainerPort{ContainerPort: int32(20000 + i)})
	}
	_, err := in.Inject(pod, Overrides{Namespace: "shop"})
	if e, ok := AsError(err); !ok || e.Reason != ReasonInvalidPod || !strings.Contains(e.Error(), fmt.Sprint(nodemeta.MaxAppPorts)) {
		t.Fatalf("got %v, want invalid_pod naming the cap %d", err, nodemeta.MaxAppPorts)
	}
	pod.Spec.Containers[0].Ports = pod.Spec.Containers[0].Ports[:nodemeta.MaxAppPorts]
	if _, err := in.Inject(pod, Overrides{Namespace: "shop"}); err != nil {
		t.Fatalf("at the cap: %v", err)
	}
}

// Most reviews carry UIDs, digests and versions that start with a digit
// and hold an "e": none of them is worth a second decode, while every
// shape of an expensive quantity is.
func TestQuantityCandidates(t *testing.T) {
	for _, tok := range []string{
		"5e3a1b2c-6d7f-4a8b-9c0d-1e2f3a4b5c6d",                             // a UUID
		"0e7c9f3b2a1d4e5f6a7b8c9d0e1f2a3b4c5d6e7f8a9b0c1d2e3f4a5b6c7d8e9f", // a digest
		"12e", "3eb", "1e5x", "100Mi", "250m", "1.5", "2", "v1.2e3", "", "-", ".", "e10",
		"1234567890123456789012345678901234567890x", // long, but a suffix ParseQuantity refuses at once
	} {
		if quantityCandidate([]byte(tok)) {
			t.Errorf("%q taken as a quantity candidate", tok)
		}
	}
	for _, tok := range []string{
		"1E-100000000", "1e+100000000", "1e5", "-2.5E3", " 1e9 ", "1e9\u00a0",
		strings.Repeat("9", 1000), strings.Repeat("9", 40) + "Mi", "+" + strings.Repeat("1", 40) + "k",
		`1\u0065-100000000`, // an escape may decode to an exponent
	} {
		if !quantityCandidate([]byte(tok)) {
			t.Errorf("%q not taken as a quantity candidate", tok)
		}
	}
	review := []byte(`{"request":{"uid":"5e3a1b2c-6d7f-4a8b-9c0d-1e2f3a4b5c6d","object":{"metadata":{"uid":"0e1f2a3b-4c5d-6e7f-8a9b-0c1d2e3f4a5b","resourceVersion":"12e"},"spec":{"containers":[{"image":"app@sha256:0e7c9f3b2a1d4e5f6a7b8c9d0e1f2a3b4c5d6e7f8a9b0c1d2e3f4a5b6c7d8e9f","resources":{"limits":{"cpu":"500m","memory":"128Mi"}}}]}}}}`)
	if hasQuantityCandidate(review) {
		t.Error("an ordinary review is scanned as holding an expensive quantity")
	}
}

func BenchmarkQuantityScan(b *testing.B) {
	raw, err := os.ReadFile("testdata/bench/pod-3-containers.json")
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(raw)))
	for b.Loop() {
		if CheckQuantities(raw) != nil {
			b.Fatal("the bench pod has an expensive quantity")
		}
	}
}
