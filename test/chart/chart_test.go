// Package chart tests the Helm chart with the real helm binary: lint, the
// rendered objects of several value sets (golden files, each object decoded
// strictly into its k8s.io/api type), the values schema, labels and the
// injector's own Pod Security level.
package chart

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/client-go/kubernetes/scheme"
	psaapi "k8s.io/pod-security-admission/api"
	"k8s.io/pod-security-admission/policy"
	"sigs.k8s.io/yaml"

	"github.com/sidecar-injector/sidecar-injector/internal/golden"
	"github.com/sidecar-injector/sidecar-injector/pkg/inject"
	"github.com/sidecar-injector/sidecar-injector/pkg/xds"
	"github.com/sidecar-injector/sidecar-injector/test/testenv"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

const (
	chartDir    = "../../charts/sidecar-injector"
	release     = "mesh"
	namespace   = "sidecar-injector"
	kubeVersion = "v1.37.2"
)

var helmPath = sync.OnceValues(func() (string, error) {
	bins, err := testenv.Build(context.Background(), testenv.DefaultBuildConfig(), slog.New(slog.NewTextHandler(os.Stderr, nil)))
	return bins.Helm, err
})

func helm(t *testing.T, args ...string) ([]byte, error) {
	t.Helper()
	path, err := helmPath()
	if err != nil {
		t.Fatalf("build helm: %v", err)
	}
	cmd := exec.CommandContext(t.Context(), path, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return out, fmt.Errorf("helm %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return out, nil
}

func render(t *testing.T, valuesFile string, extra ...string) []byte {
	t.Helper()
	args := []string{"template", release, chartDir, "--namespace", namespace, "--kube-version", kubeVersion}
	if valuesFile != "" {
		args = append(args, "-f", valuesFile)
	}
	out, err := helm(t, append(args, extra...)...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestLint(t *testing.T) {
	out, err := helm(t, "lint", "--strict", chartDir)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
}

// object is one rendered object.
type object = testenv.Manifest

func split(t *testing.T, manifests []byte) []object {
	t.Helper()
	objs, err := testenv.SplitManifests(manifests)
	if err != nil {
		t.Fatal(err)
	}
	return objs
}

// crdKinds are rendered objects of CRDs: no k8s.io/api type to check them with.
var crdKinds = []string{"Issuer", "Certificate", "ServiceMonitor"}

// Random material in the rendered certificates, replaced in golden files.
var randomData = []*regexp.Regexp{
	regexp.MustCompile(`(caBundle|ca\.crt|ca\.key|tls\.crt|tls\.key): \S+`),
	regexp.MustCompile(`(checksum/tls|sidecar\.io/not-after): \S+`),
	// The xDS CA in the injector config (xds.caCert).
	regexp.MustCompile(`(?s)(-----BEGIN CERTIFICATE-----).*?-----END CERTIFICATE-----`),
}

func TestRender(t *testing.T) {
	strict := serializer.NewCodecFactory(scheme.Scheme, serializer.EnableStrict).UniversalDeserializer()
	sets, err := filepath.Glob("testdata/values/*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(sets) < 5 {
		t.Fatalf("found %d value sets, want the default and at least 4 more", len(sets))
	}
	var outputs []string
	for _, file := range sets {
		outputs = append(outputs, filepath.Join("testdata", "golden", filepath.Base(file)))
	}
	golden.Orphans(t, *update, filepath.Join("testdata", "golden", "*"), outputs)
	for _, file := range sets {
		name := strings.TrimSuffix(filepath.Base(file), ".yaml")
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			out := render(t, file)
			for _, o := range split(t, out) {
				labels := checkObject(t, strict, o)
				for _, l := range []string{"app.kubernetes.io/name", "app.kubernetes.io/instance", "app.kubernetes.io/version", "app.kubernetes.io/managed-by", "helm.sh/chart"} {
					if _, ok := labels[l]; !ok {
						t.Errorf("%s %s: no label %s", o.Kind, o.Name, l)
					}
				}
			}
			got := string(out)
			for _, re := range randomData {
				got = re.ReplaceAllString(got, "${1}: <random>")
			}
			golden := filepath.Join("testdata", "golden", name+".yaml")
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (go test ./test/chart -update)", err)
			}
			if diff := cmp.Diff(string(want), got); diff != "" {
				t.Errorf("rendered chart changed (-want +got); go test ./test/chart -update if intended:\n%s", diff)
			}
		})
	}
}

// checkObject decodes o strictly into its k8s.io/api type (an unknown field
// fails) and checks what the chart promises about it; it returns the labels.
func checkObject(t *testing.T, strict runtime.Decoder, o object) map[string]string {
	t.Helper()
	if slices.Contains(crdKinds, o.Kind) {
		var u struct {
			Metadata struct{ Labels map[string]string }
		}
		if err := yaml.Unmarshal(o.Raw, &u); err != nil {
			t.Fatalf("%s %s: %v", o.Kind, o.Name, err)
		}
		return u.Metadata.Labels
	}
	js, err := yaml.YAMLToJSON(o.Raw)
	if err != nil {
		t.Fatal(err)
	}
	obj, _, err := strict.Decode(js, nil, nil)
	if err != nil {
		t.Fatalf("%s %s does not decode strictly into its k8s.io/api type: %v", o.Kind, o.Name, err)
	}
	acc, ok := obj.(interface{ GetLabels() map[string]string })
	if !ok {
		t.Fatalf("%s %s: no metadata", o.Kind, o.Name)
	}
	if cm, ok := obj.(*corev1.ConfigMap); ok {
		checkConfigMap(t, cm)
	}
	return acc.GetLabels()
}

// checkConfigMap loads the rendered injector and mesh configs with the
// loaders the binaries use, so the chart can never render a config the
// webhook or the xDS server refuses.
func checkConfigMap(t *testing.T, cm *corev1.ConfigMap) {
	t.Helper()
	if c, ok := cm.Data["config.yaml"]; ok {
		if _, err := inject.LoadConfig([]byte(c)); err != nil {
			t.Errorf("ConfigMap %s: the webhook refuses the rendered config: %v", cm.Name, err)
		}
	}
	if m, ok := cm.Data["mesh.yaml"]; ok {
		if _, err := xds.LoadMeshSettings([]byte(m)); err != nil {
			t.Errorf("ConfigMap %s: the xDS server refuses the rendered mesh config: %v", cm.Name, err)
		}
	}
}

// TestSchema: wrong types and unknown keys are refused by helm itself, with
// the schema's message.
func TestSchema(t *testing.T) {
	for _, tc := range []struct{ name, values, want string }{
		{"unknown top-level key", "replicas: 3\n", "replicas"},
		{"unknown nested key", "webhook:\n  replica: 3\n", "replica"},
		{"replicas as string", "webhook:\n  replicas: \"two\"\n", "replicas"},
		{"zero replicas", "xds:\n  replicas: 0\n", "replicas"},
		{"bad failure policy", "webhook:\n  failurePolicy: Maybe\n", "failurePolicy"},
		{"timeout above 30", "webhook:\n  timeoutSeconds: 31\n", "timeoutSeconds"},
		{"port out of range", "ports:\n  inbound: 70000\n", "inbound"},
		{"bad default policy", "injection:\n  defaultPolicy: sometimes\n", "defaultPolicy"},
		{"unknown setting", "injection:\n  allowedSettings: [proxy-imagez]\n", "allowedSettings"},
		{"bad namespace name", "injection:\n  excludedNamespaces: [Bad_Name]\n", "excludedNamespaces"},
		{"bad duration", "xds:\n  mesh:\n    connectTimeout: soon\n", "connectTimeout"},
		{"bad upstream", "xds:\n  mesh:\n    inboundUpstream: anywhere\n", "inboundUpstream"},
		{"http url", "webhook:\n  url: http://127.0.0.1:9443\n", "url"},
		{"bad tls version", "webhook:\n  tlsMinVersion: \"1.0\"\n", "tlsMinVersion"},
		{"uid as string", "proxy:\n  uid: \"1337\"\n", "uid"},
		{"bad resources", "proxy:\n  resources:\n    requests:\n      cpu: lots\n", "cpu"},
		{"digest not sha256", "image:\n  digest: latest\n", "digest"},
		{"init image as one string", "proxy:\n  initImage: example/iptables-init:v1\n", "initImage"},
		{"registry with a scheme", "image:\n  registry: https://ghcr.io\n", "registry"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := filepath.Join(t.TempDir(), "values.yaml")
			if err := os.WriteFile(f, []byte(tc.values), 0o644); err != nil {
				t.Fatal(err)
			}
			_, err := helm(t, "template", release, chartDir, "--namespace", namespace, "-f", f)
			if err == nil {
				t.Fatalf("helm template accepted %q", tc.values)
			}
			if !strings.Contains(err.Error(), "schema") || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v: want the schema's message naming %q", err, tc.want)
			}
		})
	}
}

// TestInjectorPodsRestricted: the injector's own pod templates pass the
// restricted Pod Security level.
func TestInjectorPodsRestricted(t *testing.T) {
	eval, err := policy.NewEvaluator(policy.DefaultChecks(), nil)
	if err != nil {
		t.Fatal(err)
	}
	var deployments int
	for _, o := range split(t, render(t, "")) {
		if o.Kind != "Deployment" {
			continue
		}
		deployments++
		var d struct {
			Spec struct{ Template corev1.PodTemplateSpec }
		}
		if err := yaml.Unmarshal(o.Raw, &d); err != nil {
			t.Fatal(err)
		}
		lv := psaapi.LevelVersion{Level: psaapi.LevelRestricted, Version: psaapi.LatestVersion()}
		for _, r := range eval.EvaluatePod(lv, &d.Spec.Template.ObjectMeta, &d.Spec.Template.Spec) {
			if !r.Allowed {
				t.Errorf("Deployment %s violates restricted: %s: %s", o.Name, r.ForbiddenReason, r.ForbiddenDetail)
			}
		}
	}
	if deployments != 3 {
		t.Fatalf("found %d Deployments, want webhook, controller and xds", deployments)
	}
}

// TestCertificates: the caBundle is the Secret's CA, and the serving
// certificate is signed by it for the Service's DNS names.
func TestCertificates(t *testing.T) {
	var secret corev1.Secret
	var bundles [][]byte
	for _, o := range split(t, render(t, "")) {
		switch o.Kind {
		case "Secret":
			if err := yaml.Unmarshal(o.Raw, &secret); err != nil {
				t.Fatal(err)
			}
		case "MutatingWebhookConfiguration":
			var mwc admissionregistrationv1.MutatingWebhookConfiguration
			if err := yaml.Unmarshal(o.Raw, &mwc); err != nil {
				t.Fatal(err)
			}
			for _, w := range mwc.Webhooks {
				bundles = append(bundles, w.ClientConfig.CABundle)
			}
		}
	}
	if len(bundles) < 3 {
		t.Fatalf("%d webhook entries, want at least 3", len(bundles))
	}
	for _, b := range bundles {
		if !bytes.Equal(b, secret.Data["ca.crt"]) {
			t.Fatal("a webhook entry's caBundle is not the Secret's CA")
		}
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(secret.Data["ca.crt"]) {
		t.Fatal("ca.crt is not a PEM certificate")
	}
	block, _ := pem.Decode(secret.Data["tls.crt"])
	if block == nil {
		t.Fatal("tls.crt is not PEM")
	}
	leaf, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tls.X509KeyPair(secret.Data["tls.crt"], secret.Data["tls.key"]); err != nil {
		t.Fatalf("tls.crt and tls.key do not match: %v", err)
	}
	svc := release + "-sidecar-injector-webhook"
	for _, name := range []string{svc + "." + namespace + ".svc", svc + "." + namespace + ".svc.cluster.local"} {
		if _, err := leaf.Verify(x509.VerifyOptions{DNSName: name, Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
			t.Errorf("serving certificate for %s: %v", name, err)
		}
	}
}
