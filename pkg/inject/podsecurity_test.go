package inject

import (
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	psaapi "k8s.io/pod-security-admission/api"
	"k8s.io/pod-security-admission/policy"
)

// TestPodSecurity evaluates injected pods with the upstream Pod Security
// evaluator: envoy passes restricted on its own; the only baseline
// violation of an injected pod is iptables-init's capabilities, and the
// restricted violations are exactly those of iptables-init. The lists are a
// golden file: a change that adds a violation fails here.
func TestPodSecurity(t *testing.T) {
	eval, err := policy.NewEvaluator(policy.DefaultChecks(), nil)
	if err != nil {
		t.Fatal(err)
	}
	latest := func(l psaapi.Level) psaapi.LevelVersion {
		return psaapi.LevelVersion{Level: l, Version: psaapi.LatestVersion()}
	}
	violations := func(level psaapi.Level, pod *corev1.Pod) []string {
		var out []string
		for _, r := range eval.EvaluatePod(latest(level), &pod.ObjectMeta, &pod.Spec) {
			if !r.Allowed {
				out = append(out, fmt.Sprintf("%s: %s", r.ForbiddenReason, r.ForbiddenDetail))
			}
		}
		slices.Sort(out)
		return out
	}
	// A restricted-compliant app pod.
	app := testPod()
	app.Spec.SecurityContext = &corev1.PodSecurityContext{
		RunAsNonRoot:   ptr(true),
		SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
	}
	app.Spec.Containers[0].SecurityContext = &corev1.SecurityContext{
		AllowPrivilegeEscalation: ptr(false),
		Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
	}
	if v := violations(psaapi.LevelRestricted, app); len(v) != 0 {
		t.Fatalf("the app pod itself must pass restricted: %v", v)
	}

	var report strings.Builder
	for _, native := range []bool{true, false} {
		res, err := Inject(app, DefaultConfig(), Overrides{Namespace: "shop", NativeSidecarSupported: &native})
		if err != nil {
			t.Fatal(err)
		}
		pod := res.Pod
		// envoy alone, in a pod that sets nothing itself.
		var envoy corev1.Container
		for _, c := range append(slices.Clone(pod.Spec.InitContainers), pod.Spec.Containers...) {
			if c.Name == ProxyContainerName {
				envoy = c
			}
		}
		alone := &corev1.Pod{Spec: corev1.PodSpec{Containers: []corev1.Container{envoy}}}
		if v := violations(psaapi.LevelRestricted, alone); len(v) != 0 {
			t.Errorf("native=%v: envoy must pass restricted: %v", native, v)
		}
		fmt.Fprintf(&report, "native sidecar: %v\n", native)
		for _, level := range []psaapi.Level{psaapi.LevelBaseline, psaapi.LevelRestricted} {
			v := violations(level, pod)
			fmt.Fprintf(&report, "  %s:\n", level)
			for _, line := range v {
				fmt.Fprintf(&report, "    - %s\n", line)
				if !strings.Contains(line, InitContainerName) {
					t.Errorf("native=%v %s: a violation not caused by %s: %s", native, level, InitContainerName, line)
				}
			}
		}
		if v := violations(psaapi.LevelBaseline, pod); len(v) != 1 || !strings.HasPrefix(v[0], "non-default capabilities") {
			t.Errorf("native=%v: baseline violations %v, want only iptables-init's capabilities", native, v)
		}
	}
	const golden = "testdata/podsecurity.golden"
	if *update {
		if err := os.WriteFile(golden, []byte(report.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(string(want), report.String()); diff != "" {
		t.Errorf("Pod Security violations changed (-want +got); go test ./pkg/inject -update if intended:\n%s", diff)
	}
}
