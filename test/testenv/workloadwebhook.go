package testenv

import (
	"errors"
	"fmt"
	"strings"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	"sigs.k8s.io/yaml"
)

// WorkloadWebhookFromManifests extracts the chart's ValidatingWebhookConfiguration
// (the workload warnings entries) from rendered manifests and points every
// entry at baseURL+path with caPEM, as WebhookFromManifests does for the
// mutating one.
func WorkloadWebhookFromManifests(manifests []byte, baseURL string, caPEM []byte) (*admissionregistrationv1.ValidatingWebhookConfiguration, error) {
	objs, err := SplitManifests(manifests)
	if err != nil {
		return nil, err
	}
	var found *admissionregistrationv1.ValidatingWebhookConfiguration
	for _, o := range objs {
		if o.Kind != "ValidatingWebhookConfiguration" {
			continue
		}
		if found != nil {
			return nil, errors.New("rendered manifests: more than one ValidatingWebhookConfiguration; want exactly one")
		}
		found = &admissionregistrationv1.ValidatingWebhookConfiguration{}
		if err := yaml.UnmarshalStrict(o.Raw, found); err != nil {
			return nil, fmt.Errorf("rendered manifests: ValidatingWebhookConfiguration: %w", err)
		}
	}
	if found == nil {
		return nil, errors.New("rendered manifests: no ValidatingWebhookConfiguration")
	}
	base := strings.TrimSuffix(baseURL, "/")
	for i := range found.Webhooks {
		w := &found.Webhooks[i]
		if w.ClientConfig.Service == nil || w.ClientConfig.Service.Path == nil {
			return nil, fmt.Errorf("rendered manifests: webhook %s has no clientConfig.service with a path", w.Name)
		}
		u := base + *w.ClientConfig.Service.Path
		w.ClientConfig = admissionregistrationv1.WebhookClientConfig{URL: &u, CABundle: append([]byte(nil), caPEM...)}
	}
	return found, nil
}
