package inject

import (
	"encoding/json"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

// forgedPod is a pod as another webhook and its user left it: a security
// agent sidecar, a volume of its own, and a sidecar.io/status the user
// wrote, listing them.
func forgedPod(t *testing.T, hash string) *corev1.Pod {
	t.Helper()
	pod := testPod()
	pod.Spec.InitContainers = []corev1.Container{{Name: "agent-init", Image: "example/agent-init"}}
	pod.Spec.Containers = append(pod.Spec.Containers, corev1.Container{Name: "security-agent", Image: "example/agent"})
	pod.Spec.Volumes = []corev1.Volume{{Name: "agent-data"}}
	pod.Annotations = map[string]string{"agent.example.com/on": "true"}
	st := Status{ConfigHash: hash, InitContainers: []string{"agent-init"}, Containers: []string{"security-agent", "web"},
		Volumes: []string{"agent-data"}, Annotations: []string{"agent.example.com/on"}}
	b, _ := json.Marshal(st)
	pod.Annotations[StatusAnnotation] = string(b)
	return pod
}

// TestForgedStatus is RELIABILITY.md row 36: a status written by the user
// never makes the injector remove what it did not add, and a status
// claiming the current hash on a pod without our containers does not skip
// injection.
func TestForgedStatus(t *testing.T) {
	in := mustInjector(t, nil)
	noRemoval := func(t *testing.T, p Patch) {
		t.Helper()
		for _, op := range p {
			if op.Op == "remove" {
				t.Errorf("patch removes %s; a forged status must remove nothing", op.Path)
			}
		}
	}
	for _, hash := range []string{"0123456789abcdef", in.Hash()} {
		t.Run("mutate/hash-"+hash, func(t *testing.T) {
			pod := forgedPod(t, hash)
			res, err := in.Inject(pod, Overrides{Namespace: "shop"})
			if err != nil || res.Decision != DecisionInject {
				t.Fatalf("got %s %v, want the pod injected", res.Decision, err)
			}
			noRemoval(t, res.Patch)
			if len(res.Warnings) == 0 || !strings.Contains(res.Warnings[0], "ignored "+StatusAnnotation) {
				t.Errorf("warnings %q, want one saying the status was ignored", res.Warnings)
			}
			for _, name := range []string{"web", "security-agent", ProxyContainerName} {
				if !hasContainer(res.Pod.Spec.Containers, name) && !hasContainer(res.Pod.Spec.InitContainers, name) {
					t.Errorf("container %s missing after injection", name)
				}
			}
			if res.Pod.Annotations["agent.example.com/on"] != "true" {
				t.Error("the agent's annotation was removed")
			}
		})
	}
	t.Run("mutate/current-hash-no-containers", func(t *testing.T) {
		pod := testPod()
		pod.Annotations = map[string]string{StatusAnnotation: `{"configHash":"` + in.Hash() + `","initContainers":["iptables-init","envoy"],"volumes":["envoy-config"]}`}
		res, err := in.Inject(pod, Overrides{Namespace: "shop"})
		if err != nil || res.Decision != DecisionInject || !hasContainer(res.Pod.Spec.InitContainers, ProxyContainerName) {
			t.Fatalf("got %s %v, want the pod injected", res.Decision, err)
		}
		noRemoval(t, res.Patch)
	})
	t.Run("mutate/current-hash-own-envoy", func(t *testing.T) {
		// The name checks apply: the user's own "envoy" with a status
		// claiming it is not ours unless it is where the status says.
		pod := testPod()
		pod.Spec.Containers = append(pod.Spec.Containers, corev1.Container{Name: ProxyContainerName, Image: "mine"})
		pod.Annotations = map[string]string{StatusAnnotation: `{"configHash":"` + in.Hash() + `","initContainers":["iptables-init","envoy"],"volumes":["envoy-config"]}`}
		_, err := in.Inject(pod, Overrides{Namespace: "shop"})
		if e, ok := AsError(err); !ok || e.Reason != ReasonNameConflict {
			t.Fatalf("got %v, want name_conflict", err)
		}
	})
	for _, hash := range []string{"0123456789abcdef", in.Hash()} {
		t.Run("uninject/hash-"+hash, func(t *testing.T) {
			res, err := Uninject(forgedPod(t, hash))
			if err != nil {
				t.Fatal(err)
			}
			if len(res.Patch) != 0 {
				t.Errorf("patch %v, want none", res.Patch)
			}
			if len(res.Warnings) == 0 {
				t.Error("no warning")
			}
		})
	}
	t.Run("a real status is still trusted", func(t *testing.T) {
		res, err := in.Inject(testPod(), Overrides{Namespace: "shop"})
		if err != nil {
			t.Fatal(err)
		}
		again, err := in.Inject(res.Pod, Overrides{Namespace: "shop"})
		if err != nil || again.Reason != ReasonAlreadyInjected || len(again.Warnings) != 0 {
			t.Fatalf("re-injection: %s %v %q", again.Reason, err, again.Warnings)
		}
		un, err := Uninject(res.Pod)
		if err != nil || un.Decision != DecisionInject || len(un.Patch) == 0 {
			t.Fatalf("uninject: %s %v", un.Decision, err)
		}
	})
}

func hasContainer(cs []corev1.Container, name string) bool {
	for _, c := range cs {
		if c.Name == name {
			return true
		}
	}
	return false
}

// TestStatusEncoding: encode writes what encoding/json writes.
func TestStatusEncoding(t *testing.T) {
	t.Parallel()
	for _, s := range []Status{
		{},
		{Version: "v1", ConfigHash: "abc", Native: true, Ports: Ports{10001, 10002, 10090, 9901}, InitContainers: []string{InitContainerName, ProxyContainerName}, Volumes: []string{ConfigVolumeName}},
		{Version: "<&>\u2028é\x01\"\\", ConfigHash: "h", InitContainers: []string{}, Containers: []string{ProxyContainerName}, Volumes: nil, Annotations: []string{promScrape, promPort}},
		{ConfigHash: "h", Empty: map[string]string{"/spec/volumes": "[]", "/metadata/annotations": "{}"}},
	} {
		want, err := json.Marshal(&s)
		if err != nil {
			t.Fatal(err)
		}
		if got := s.encode(); got != string(want) {
			t.Errorf("encode:\n%s\nencoding/json:\n%s", got, want)
		}
	}
}

// FuzzStatusEncoding: encode is encoding/json's, byte for byte.
func FuzzStatusEncoding(f *testing.F) {
	f.Add("v0.1.0", "0123456789abcdef", true, uint16(10001), "envoy", "<&>", 2)
	f.Fuzz(func(t *testing.T, version, hash string, native bool, port uint16, name, annotation string, n int) {
		s := Status{Version: version, ConfigHash: hash, Native: native, Ports: Ports{port, port + 1, port / 2, 9901}}
		for i := range n % 4 {
			s.InitContainers = append(s.InitContainers, name)
			if i%2 == 1 {
				s.Containers = append(s.Containers, name)
				s.Annotations = append(s.Annotations, annotation)
			}
			s.Volumes = append(s.Volumes, annotation)
		}
		want, err := json.Marshal(&s)
		if err != nil {
			t.Fatal(err)
		}
		if got := s.encode(); got != string(want) {
			t.Fatalf("encode:\n%s\nencoding/json:\n%s", got, want)
		}
	})
}
