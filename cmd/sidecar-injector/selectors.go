package main

import (
	"fmt"

	"github.com/sidecar-injector/sidecar-injector/pkg/inject"
)

// webhookCall is what the apiserver does with a pod before the webhook sees
// it: the chart's MutatingWebhookConfiguration has one entry per row group
// of "Who gets a sidecar", chosen by the namespace and object selectors.
// Offline tools apply the same selection, so that they never report what
// the webhook would say about a pod the apiserver never sends it.
type webhookCall struct {
	Called bool
	Entry  string // enabled, audit, opt-in, default
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
	case nsLabelled && nsValue != "enabled" && nsValue != "audit":
		return webhookCall{Reason: inject.ReasonNotOptedIn, Why: fmt.Sprintf("the namespace label %s=%q is not enabled, audit or disabled: no webhook entry selects the namespace, the webhook is not called, pods get no sidecar; fix the label", inject.NamespaceLabel, nsValue)}
	case podLabelled && podValue == "false":
		return optedOut
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
