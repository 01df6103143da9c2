package chart

import (
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/yaml"
)

// rendered is what the NetworkPolicy test needs of a rendering.
type rendered struct {
	policies    []networkingv1.NetworkPolicy
	deployments map[string]appsv1.Deployment // by component label
}

func renderPolicies(t *testing.T, extra ...string) rendered {
	t.Helper()
	r := rendered{deployments: map[string]appsv1.Deployment{}}
	for _, o := range split(t, render(t, "", extra...)) {
		switch o.Kind {
		case "NetworkPolicy":
			var np networkingv1.NetworkPolicy
			if err := yaml.UnmarshalStrict(o.Raw, &np); err != nil {
				t.Fatal(err)
			}
			r.policies = append(r.policies, np)
		case "Deployment":
			var d appsv1.Deployment
			if err := yaml.Unmarshal(o.Raw, &d); err != nil {
				t.Fatal(err)
			}
			r.deployments[d.Spec.Template.Labels["app.kubernetes.io/component"]] = d
		}
	}
	return r
}

// allowed says whether a pod (podLabels, in a namespace with nsLabels)
// may reach port of the pods with podOf's labels, by the policies that
// select them (no policy selecting them: everything is allowed).
func (r rendered) allowed(t *testing.T, target map[string]string, port int32, nsLabels, podLabels map[string]string) bool {
	t.Helper()
	selected := false
	for _, np := range r.policies {
		sel, err := metav1.LabelSelectorAsSelector(&np.Spec.PodSelector)
		if err != nil {
			t.Fatal(err)
		}
		if !sel.Matches(labels.Set(target)) {
			continue
		}
		selected = true
		for _, rule := range np.Spec.Ingress {
			if len(rule.Ports) > 0 && !slices.ContainsFunc(rule.Ports, func(p networkingv1.NetworkPolicyPort) bool { return p.Port != nil && p.Port.IntVal == port }) {
				continue
			}
			if len(rule.From) == 0 {
				return true
			}
			for _, peer := range rule.From {
				if peerMatches(t, peer, nsLabels, podLabels) {
					return true
				}
			}
		}
	}
	return !selected
}

// peerMatches applies a peer to a pod of another namespace than the
// policy's (every source here is).
func peerMatches(t *testing.T, peer networkingv1.NetworkPolicyPeer, nsLabels, podLabels map[string]string) bool {
	t.Helper()
	if peer.NamespaceSelector == nil {
		return false // a podSelector alone means the policy's own namespace
	}
	ns, err := metav1.LabelSelectorAsSelector(peer.NamespaceSelector)
	if err != nil {
		t.Fatal(err)
	}
	if !ns.Matches(labels.Set(nsLabels)) {
		return false
	}
	if peer.PodSelector == nil {
		return true
	}
	pods, err := metav1.LabelSelectorAsSelector(peer.PodSelector)
	if err != nil {
		t.Fatal(err)
	}
	return pods.Matches(labels.Set(podLabels))
}

// The NetworkPolicies render and select what they should (RELIABILITY.md
// "Pod Security": the xDS port only from injected namespaces, health and
// metrics only from the monitoring selector, the webhook port open).
func TestNetworkPolicies(t *testing.T) {
	t.Parallel()
	r := renderPolicies(t)
	if len(r.policies) != 3 {
		t.Fatalf("%d NetworkPolicies rendered, want 3 (webhook, xds, controller)", len(r.policies))
	}
	webhook, xds, ctl := r.deployments["webhook"].Spec.Template.Labels, r.deployments["xds"].Spec.Template.Labels, r.deployments["controller"].Spec.Template.Labels
	if webhook == nil || xds == nil || ctl == nil {
		t.Fatal("no webhook, xds or controller Deployment")
	}
	ns := func(name string, kv ...string) map[string]string {
		m := map[string]string{"kubernetes.io/metadata.name": name}
		for i := 0; i+1 < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return m
	}
	app := map[string]string{"app": "web"}
	optedIn := map[string]string{"app": "web", "sidecar.io/inject": "true"}
	for _, tc := range []struct {
		what      string
		target    map[string]string
		port      int32
		ns, pod   map[string]string
		wantAllow bool
	}{
		{"apiserver (any source) to the webhook port", webhook, 9443, ns("anywhere"), app, true},
		{"a pod to the webhook's metrics", webhook, 8080, ns("shop"), app, false},
		{"monitoring to the webhook's metrics", webhook, 8080, ns("monitoring"), map[string]string{"app": "prometheus"}, true},
		{"an injected namespace to xDS", xds, 18000, ns("shop", "sidecar-injection", "enabled"), app, true},
		{"an audited namespace to xDS", xds, 18000, ns("shop", "sidecar-injection", "audit"), app, true},
		{"a disabled namespace to xDS", xds, 18000, ns("shop", "sidecar-injection", "disabled"), app, false},
		{"an unlabelled namespace to xDS", xds, 18000, ns("shop"), app, false},
		{"an opted-in pod of an unlabelled namespace to xDS", xds, 18000, ns("shop"), optedIn, true},
		{"an injected namespace to xDS metrics", xds, 8080, ns("shop", "sidecar-injection", "enabled"), app, false},
		{"monitoring to xDS metrics", xds, 8080, ns("monitoring"), map[string]string{"app": "prometheus"}, true},
		{"monitoring to the controller's metrics", ctl, 8080, ns("monitoring"), map[string]string{"app": "prometheus"}, true},
		{"a pod to the controller's metrics", ctl, 8080, ns("shop"), app, false},
		{"an injected namespace to the controller's metrics", ctl, 8080, ns("shop", "sidecar-injection", "enabled"), app, false},
		{"the monitoring namespace to another controller port", ctl, 9443, ns("monitoring"), map[string]string{"app": "prometheus"}, false},
	} {
		if got := r.allowed(t, tc.target, tc.port, tc.ns, tc.pod); got != tc.wantAllow {
			t.Errorf("%s: allowed=%v, want %v", tc.what, got, tc.wantAllow)
		}
	}

	t.Run("defaultPolicy enabled opens xDS to every namespace", func(t *testing.T) {
		r := renderPolicies(t, "--set", "injection.defaultPolicy=enabled")
		if !r.allowed(t, r.deployments["xds"].Spec.Template.Labels, 18000, ns("shop"), app) {
			t.Error("an unlabelled namespace cannot reach xDS under defaultPolicy enabled")
		}
	})
	t.Run("monitoring selector is configurable", func(t *testing.T) {
		r := renderPolicies(t, "--set-json", `networkPolicy.monitoring.namespaceSelector={"matchLabels":null,"matchExpressions":[{"key":"team","operator":"In","values":["obs"]}]}`)
		if !r.allowed(t, r.deployments["webhook"].Spec.Template.Labels, 8080, ns("o11y", "team", "obs"), app) {
			t.Error("the configured monitoring namespace cannot scrape")
		}
		if r.allowed(t, r.deployments["xds"].Spec.Template.Labels, 8080, ns("monitoring"), app) {
			t.Error("the default monitoring namespace can still scrape")
		}
	})
	t.Run("no controller, no controller policy", func(t *testing.T) {
		r := renderPolicies(t, "--set", "controller.enabled=false")
		if len(r.policies) != 2 {
			t.Errorf("%d NetworkPolicies with controller.enabled=false, want 2 (webhook, xds)", len(r.policies))
		}
	})
	t.Run("off", func(t *testing.T) {
		if r := renderPolicies(t, "--set", "networkPolicy.enabled=false"); len(r.policies) != 0 {
			t.Errorf("%d NetworkPolicies with networkPolicy.enabled=false", len(r.policies))
		}
	})
}

// No pod of the chart mounts the CA's private key: a Secret volume of the
// chart's serving Secret (which holds ca.key) lists only tls.crt and
// tls.key, and no pod mounts the cert-manager CA's Secret.
func TestNoPodMountsCAKey(t *testing.T) {
	t.Parallel()
	for _, set := range [][]string{nil, {"--set", "certificates.certManager.enabled=true"}} {
		objs := split(t, render(t, "", set...))
		keyHolders := map[string]bool{} // Secrets holding a CA key
		for _, o := range objs {
			if o.Kind == "Secret" {
				var s corev1.Secret
				if err := yaml.Unmarshal(o.Raw, &s); err != nil {
					t.Fatal(err)
				}
				if _, ok := s.Data["ca.key"]; ok {
					keyHolders[s.Name] = true
				}
			}
			if o.Kind == "Certificate" && strings.HasSuffix(o.Name, "-ca") {
				keyHolders[o.Name] = true // cert-manager's CA Secret is named like its Certificate here
			}
		}
		pods := 0
		for _, o := range objs {
			var spec *corev1.PodSpec
			switch o.Kind {
			case "Deployment":
				var d appsv1.Deployment
				if err := yaml.Unmarshal(o.Raw, &d); err != nil {
					t.Fatal(err)
				}
				spec = &d.Spec.Template.Spec
			case "Pod":
				var p corev1.Pod
				if err := yaml.Unmarshal(o.Raw, &p); err != nil {
					t.Fatal(err)
				}
				spec = &p.Spec
			default:
				continue
			}
			pods++
			for _, v := range spec.Volumes {
				sv := v.Secret
				if v.Projected != nil {
					for _, src := range v.Projected.Sources {
						if src.Secret != nil {
							sv = &corev1.SecretVolumeSource{SecretName: src.Secret.Name, Items: src.Secret.Items}
						}
					}
				}
				if sv == nil {
					continue
				}
				if keyHolders[sv.SecretName] && len(sv.Items) == 0 {
					t.Errorf("%v %s %s: volume %s mounts all of Secret %s, which holds a CA key", set, o.Kind, o.Name, v.Name, sv.SecretName)
				}
				for _, it := range sv.Items {
					if it.Key == "ca.key" {
						t.Errorf("%v %s %s: volume %s mounts ca.key", set, o.Kind, o.Name, v.Name)
					}
				}
			}
		}
		if pods == 0 {
			t.Fatal("no pod rendered")
		}
	}
}
