package testenv

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	"sigs.k8s.io/yaml"
)

// RenderChart runs `helm template` on a chart directory and returns the
// manifests. kubeVersion (v1.37.2) sets .Capabilities.KubeVersion.
func RenderChart(ctx context.Context, helm, chartDir, release, namespace, kubeVersion string, extraArgs ...string) ([]byte, error) {
	args := append([]string{"template", release, chartDir, "--namespace", namespace, "--kube-version", kubeVersion}, extraArgs...)
	cmd := exec.CommandContext(ctx, helm, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("helm template %s: %w: %s", chartDir, err, strings.TrimSpace(stderr.String()))
	}
	return out, nil
}

// WebhookFromManifests finds the one MutatingWebhookConfiguration in
// rendered manifests and points it at a webhook outside the cluster: each
// entry's clientConfig.service becomes url baseURL + the service's path,
// and caBundle becomes caPEM. Everything else stays as the chart made it.
func WebhookFromManifests(manifests []byte, baseURL string, caPEM []byte) (*admissionregistrationv1.MutatingWebhookConfiguration, error) {
	objs, err := SplitManifests(manifests)
	if err != nil {
		return nil, err
	}
	var found *admissionregistrationv1.MutatingWebhookConfiguration
	for _, o := range objs {
		if o.Kind != "MutatingWebhookConfiguration" {
			continue
		}
		if o.APIVersion != "admissionregistration.k8s.io/v1" {
			return nil, fmt.Errorf("rendered manifests: MutatingWebhookConfiguration apiVersion %q: want admissionregistration.k8s.io/v1", o.APIVersion)
		}
		if found != nil {
			return nil, errors.New("rendered manifests: more than one MutatingWebhookConfiguration; want exactly one")
		}
		found = &admissionregistrationv1.MutatingWebhookConfiguration{}
		if err := yaml.UnmarshalStrict(o.Raw, found); err != nil {
			return nil, fmt.Errorf("rendered manifests: MutatingWebhookConfiguration: %w", err)
		}
	}
	if found == nil {
		return nil, errors.New("rendered manifests: no MutatingWebhookConfiguration")
	}
	base := strings.TrimSuffix(baseURL, "/")
	for i := range found.Webhooks {
		w := &found.Webhooks[i]
		path := ""
		switch {
		case w.ClientConfig.Service != nil:
			if w.ClientConfig.Service.Path != nil {
				path = *w.ClientConfig.Service.Path
			}
		case w.ClientConfig.URL != nil:
			return nil, fmt.Errorf("rendered manifests: webhook %s already has a url; the chart should use clientConfig.service", w.Name)
		default:
			return nil, fmt.Errorf("rendered manifests: webhook %s has no clientConfig.service", w.Name)
		}
		u := base + path
		w.ClientConfig = admissionregistrationv1.WebhookClientConfig{URL: &u, CABundle: append([]byte(nil), caPEM...)}
	}
	return found, nil
}
