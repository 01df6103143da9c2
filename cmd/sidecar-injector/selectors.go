package main

import (
	"fmt"

	"github.com/sidecar-injector/sidecar-injector/pkg/inject"
)

// entryInvalidLabel is the chart's entry for a sidecar-injection value
// outside enabled|disabled|audit: its path (/invalid-namespace-label)
// never runs the engine; it allows the pod unchanged with a warning.
const entryInvalidLabel = "invalid-label"

// webhookCall is what the apiserver does with a pod before the webhook sees
// it: the chart's MutatingWebhookConfiguration has one entry per row group
// of "Who gets a sidecar", chosen by the namespace and object selectors.
// Offline tools apply the same selection, so that they never report what
// the webhook would say about a pod the apiserver never sends it.
type webhookCall struct {
	Called bool
	Entry  string // enabled, audit, opt-in, default, invalid-label
	Reason inject.Reason
	Why    string // when not called
}

// selectEntry mirrors the chart's selectors: the namespace label
// sidecar-injection (In enabled / In audit / DoesNotExist) and the pod
// label sidecar.io/inject (NotIn false / In true / DoesNotExist). The
// annotation is not visible to selectors. defaultPolicy is
// injection.defaultPolicy of the injector config.
func selectEntry(nsLabels, podLabels map[string]string, defaultPolicy inject.Policy) webhookCall {
	nsValue, nsLabelled := nsLabels[inject.NamespaceLabel]
	podValue, podLabelled := podLabels[inject.InjectKey]
	optedOut := webhookCall{Reason: inject.ReasonOptedOut, Why: fmt.Sprintf("the pod has label %s=\"false\": no webhook entry selects it, the webhook is not called", inject.InjectKey)}
	switch {
	case nsLabelled && nsValue == "disabled":
		return webhookCall{Reason: inject.ReasonNamespaceDisabled, Why: fmt.Sprintf("the namespace has %s=disabled: no webhook entry selects it, the webhook is not called, pods get no sidecar", inject.NamespaceLabel)}
	case podLabelled && podValue == "false":
		return optedOut
	case nsLabelled && nsValue != "enabled" && nsValue != "audit":
		// The chart's catch-all entry: allowed, no patch, a warning.
		return webhookCall{Called: true, Entry: entryInvalidLabel}
	case nsLabelled:
		return webhookCall{Called: true, Entry: nsValue} // enabled or audit
	case podLabelled && podValue == "true":
		return webhookCall{Called: true, Entry: "opt-in"}
	case !podLabelled && defaultPolicy == inject.PolicyEnabled:
		return webhookCall{Called: true, Entry: "default"}
	case podLabelled:
		return webhookCall{Reason: inject.ReasonNotOptedIn, Why: fmt.Sprintf("the namespace is not labelled %s and the pod label %s=%q is not \"true\": no webhook entry selects the pod, the webhook is not called", inject.NamespaceLabel, inject.InjectKey, podValue)}
	}
	return webhookCall{Reason: inject.ReasonNotOptedIn, Why: fmt.Sprintf("the namespace is not labelled %s=enabled and the pod has no label %s=\"true\": the webhook is not called", inject.NamespaceLabel, inject.InjectKey)}
}
