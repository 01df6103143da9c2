package inject

import (
	"encoding/json"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sidecar-injector/sidecar-injector/pkg/redirect"
)

// wantEncodingJSON checks that the patch's JSON is exactly what
// encoding/json writes for it: the parts marshalled once per config and
// spliced in change nothing.
func wantEncodingJSON(t testing.TB, p Patch) {
	t.Helper()
	got, err := p.JSON()
	if err != nil {
		t.Fatalf("patch JSON: %v", err)
	}
	if p == nil {
		p = Patch{}
	}
	want, err := json.Marshal([]PatchOp(p))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(string(want), string(got)); diff != "" {
		t.Fatalf("Patch.JSON differs from encoding/json (-encoding/json +JSON):\n%s", diff)
	}
}

// TestPatchJSONIsEncodingJSON writes patches through every writer (native
// and classic proxies, with and without resource settings, the first or a
// further init container and volume) and through the fallbacks.
func TestPatchJSONIsEncodingJSON(t *testing.T) {
	t.Parallel()
	in := mustInjector(t, func(c *Config) { c.Injection.AllowedSettings = SettingNames() })
	for n := range in.enc.proxy {
		for r := range in.enc.proxy[n] {
			for p := range in.enc.proxy[n][r] {
				if in.enc.proxy[n][r][p] == nil {
					t.Fatalf("no proxy writer [%d][%d][%d] for the default config: every patch would take encoding/json", n, r, p)
				}
			}
		}
	}
	if in.enc.init == nil || in.enc.volume == nil || in.enc.volumeList == nil {
		t.Fatal("no init container or volume writer for the default config")
	}
	no := false
	pods := map[string]*corev1.Pod{
		"bare": {Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "app"}}}},
		"lists and settings": {
			ObjectMeta: metav1.ObjectMeta{Name: "pod", Annotations: map[string]string{
				SettingPrefix + SettingProxyCPU:    "250m",
				SettingPrefix + SettingProxyMemory: "300Mi",
				SettingPrefix + SettingProxyImage:  "example.com/envoy<&>:v1",
				SettingPrefix + SettingLogLevel:    "debug",
				"other/ünïcode":                    "<a & b>\u2028",
			}},
			Spec: corev1.PodSpec{
				InitContainers: []corev1.Container{{Name: "setup", Image: "setup"}},
				Containers: []corev1.Container{{Name: "app", Image: "app", Ports: []corev1.ContainerPort{
					{ContainerPort: 10001}, {ContainerPort: 9901}, {ContainerPort: 8080, Name: "http"},
				}}},
				Volumes: []corev1.Volume{{Name: "data", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}},
			},
		},
	}
	for name, pod := range pods {
		for _, native := range []*bool{nil, &no} {
			res, err := in.Inject(pod, Overrides{Namespace: "ns", NativeSidecarSupported: native, InjectorVersion: "test"})
			if err != nil || res.Decision != DecisionInject {
				t.Fatalf("%s: %s %s %v", name, res.Decision, res.Reason, err)
			}
			wantEncodingJSON(t, res.Patch)
		}
	}

	// A value the writers were not built for, and an open member left
	// empty, fall back to encoding/json.
	c := in.initContainer(redirectSpecFor(t, in))
	c.Args = nil
	wantEncodingJSON(t, Patch{
		{Op: "add", Path: "/spec/initContainers/0", Value: c, enc: in.enc.init},
		{Op: "add", Path: "/spec/initContainers", Value: []corev1.Container{c}, enc: containersJSON{in.enc.init, in.enc.init}},
		{Op: "add", Path: "/spec/volumes/-", Value: 42, enc: in.enc.init},
		{Op: "remove", Path: "/metadata/annotations/a~1b"},
		{Op: "replace", Path: "/metadata/annotations/x", Value: "\"quoted\" \\ <html> \x01 \xff"},
	})
	wantEncodingJSON(t, nil)
}

func redirectSpecFor(t *testing.T, in *Injector) redirect.Spec {
	t.Helper()
	spec, _, err := in.redirectSpec(settings{}, Ports{Inbound: 1, Outbound: 2, Stats: 3, Admin: 4}, podPorts{})
	if err != nil {
		t.Fatal(err)
	}
	return spec
}
