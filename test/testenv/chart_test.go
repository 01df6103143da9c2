package testenv

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	"sigs.k8s.io/yaml"
)

// TestWebhookFromManifests feeds the rendering of our own Go definition, with
// a Service client config as the chart has, back through the conversion: it
// must give the URL form back exactly.
func TestWebhookFromManifests(t *testing.T) {
	t.Parallel()
	ca := []byte("-----BEGIN CERTIFICATE-----\nlocal\n")
	inCluster := DefaultWebhookOptions()
	inCluster.Service = &admissionregistrationv1.ServiceReference{Namespace: "sidecar-injector", Name: "sidecar-injector-webhook", Port: ptr(int32(443))}
	inCluster.CABundle = []byte("-----BEGIN CERTIFICATE-----\nchart\n")
	chartMWC, err := MutatingWebhookConfiguration(inCluster)
	if err != nil {
		t.Fatal(err)
	}
	doc, err := yaml.Marshal(chartMWC)
	if err != nil {
		t.Fatal(err)
	}
	manifests := "---\n# Source: sidecar-injector/templates/sa.yaml\napiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: x\n---\n" + string(doc)

	local := DefaultWebhookOptions()
	local.URL = "https://127.0.0.1:9443"
	local.CABundle = ca
	want, err := MutatingWebhookConfiguration(local)
	if err != nil {
		t.Fatal(err)
	}
	got, err := WebhookFromManifests([]byte(manifests), "https://127.0.0.1:9443/", ca)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("converted configuration (-want +got):\n%s", diff)
	}
}

func TestWebhookFromManifestsErrors(t *testing.T) {
	t.Parallel()
	mwc := func(clientConfig string) string {
		return "apiVersion: admissionregistration.k8s.io/v1\nkind: MutatingWebhookConfiguration\nmetadata:\n  name: a\nwebhooks:\n- name: a.b.c\n  clientConfig:\n" + clientConfig + "\n"
	}
	svc := mwc("    service: {namespace: n, name: s, path: /mutate}")
	tests := []struct{ name, in, want string }{
		{"none", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n", "no MutatingWebhookConfiguration"},
		{"two", svc + "---\n" + svc, "more than one"},
		{"url", mwc("    url: https://x/mutate"), "already has a url"},
		{"no client", mwc("    caBundle: \"\""), "no clientConfig.service"},
		{"beta", strings.Replace(svc, "/v1", "/v1beta1", 1), `apiVersion "admissionregistration.k8s.io/v1beta1"`},
		{"unknown field", strings.Replace(svc, "clientConfig:", "clientConfg: {}\n  clientConfig:", 1), "clientConfg"},
	}
	for _, tt := range tests {
		_, err := WebhookFromManifests([]byte(tt.in), "https://127.0.0.1:1", []byte("ca"))
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: error %v, want one containing %q", tt.name, err, tt.want)
		}
	}
}
