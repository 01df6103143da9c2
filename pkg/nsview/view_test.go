package nsview

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	metadatafake "k8s.io/client-go/metadata/fake"

	"github.com/sidecar-injector/sidecar-injector/internal/poll"
	"github.com/sidecar-injector/sidecar-injector/pkg/inject"
)

func meta(kind, ns, name string, labels map[string]string) *metav1.PartialObjectMetadata {
	return &metav1.PartialObjectMetadata{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: kind},
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: labels},
	}
}

var ours = map[string]string{ManagedByLabel: ManagedByValue}

// TestView: the webhook's read-only view answers warnings and label values
// from its metadata informers, follows changes, and never writes.
func TestView(t *testing.T) {
	t.Parallel()
	scheme := metadatafake.NewTestScheme()
	if err := metav1.AddMetaToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	md := metadatafake.NewSimpleMetadataClient(scheme,
		meta("Namespace", "", "shop", map[string]string{inject.NamespaceLabel: "enabled"}),
		meta("Namespace", "", "strict", map[string]string{inject.NamespaceLabel: "enabled", PodSecurityEnforceLabel: "baseline"}),
		meta("Namespace", "", "typo", map[string]string{inject.NamespaceLabel: "yes"}),
		meta("Namespace", "", "theirs", map[string]string{inject.NamespaceLabel: "enabled"}),
		meta("ConfigMap", "strict", inject.ConfigMapName, ours),
		meta("ConfigMap", "theirs", inject.ConfigMapName, nil),
	)
	v, err := NewView(md, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	if v.Warnings("shop") != nil {
		t.Error("warnings before the caches synced")
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- v.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	eventually := func(what string, cond func() error) {
		t.Helper()
		poll.Until(t, 10*time.Second, what, cond)
	}
	eventually("synced", func() error {
		if !v.HasSynced() {
			return errors.New("not synced")
		}
		return nil
	})
	check := func(ns string, want ...string) func() error {
		return func() error {
			got := v.Warnings(ns)
			if len(got) != len(want) {
				return fmt.Errorf("%s: warnings %q, want %d containing %q", ns, got, len(want), want)
			}
			for i := range want {
				if !strings.Contains(got[i], want[i]) {
					return fmt.Errorf("%s: warning %q lacks %q", ns, got[i], want[i])
				}
			}
			return nil
		}
	}
	eventually("missing", check("shop", "ConfigMap missing in namespace shop"))
	eventually("Pod Security", check("strict", "enforces Pod Security baseline"))
	eventually("foreign", check("theirs", "ConfigMap in namespace theirs is not managed by sidecar-injector"))
	if got := v.Warnings("nowhere"); got != nil {
		t.Errorf("unknown namespace: %q", got)
	}
	if val, ok := v.NamespaceLabel("typo"); !ok || val != "yes" {
		t.Errorf("NamespaceLabel(typo) = %q, %v", val, ok)
	}
	if _, ok := v.NamespaceLabel("nowhere"); ok {
		t.Error("NamespaceLabel(nowhere) found")
	}

	if _, err := md.Resource(configMapsResource).Namespace("shop").(metadatafake.MetadataClient).CreateFake(
		meta("ConfigMap", "shop", inject.ConfigMapName, ours), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually("envoy-config appears", check("shop"))
	if err := md.Resource(namespacesResource).Delete(t.Context(), "typo", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually("namespace deleted", func() error {
		if _, ok := v.NamespaceLabel("typo"); ok {
			return errors.New("typo still known")
		}
		return nil
	})

	for _, a := range md.Actions() {
		switch verb := a.GetVerb(); {
		case verb == "list" || verb == "watch":
		case (verb == "create" || verb == "delete") && a.GetNamespace() != "strict":
			// the test's own writes above
		default:
			t.Errorf("the view made a %s %s call", verb, a.GetResource().Resource)
		}
	}
}

func TestStateOf(t *testing.T) {
	for _, tc := range []struct {
		exists bool
		labels map[string]string
		want   ConfigMapState
	}{
		{false, nil, ConfigMapMissing},
		{true, ours, ConfigMapOurs},
		{true, nil, ConfigMapForeign},
		{true, map[string]string{ManagedByLabel: "helm"}, ConfigMapForeign},
	} {
		if got := StateOf(tc.exists, tc.labels); got != tc.want {
			t.Errorf("StateOf(%v, %v) = %q, want %q", tc.exists, tc.labels, got, tc.want)
		}
	}
}
