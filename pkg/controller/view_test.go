package controller

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/sidecar-injector/sidecar-injector/pkg/inject"
)

// TestView: the webhook's read-only view answers warnings and label values
// from its informers, follows changes, and never writes.
func TestView(t *testing.T) {
	t.Parallel()
	cs := fake.NewClientset(
		namespace("shop", map[string]string{inject.NamespaceLabel: "enabled"}),
		namespace("strict", map[string]string{inject.NamespaceLabel: "enabled", PodSecurityEnforceLabel: "baseline"}),
		namespace("typo", map[string]string{inject.NamespaceLabel: "yes"}),
		&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: inject.ConfigMapName, Namespace: "strict", Labels: ourLabels()}},
	)
	v, err := NewView(cs, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
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
	eventually(t, "synced", func() error {
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
	eventually(t, "missing", check("shop", "ConfigMap missing in namespace shop"))
	eventually(t, "Pod Security", check("strict", "enforces Pod Security baseline"))
	if got := v.Warnings("nowhere"); got != nil {
		t.Errorf("unknown namespace: %q", got)
	}
	if val, ok := v.NamespaceLabel("typo"); !ok || val != "yes" {
		t.Errorf("NamespaceLabel(typo) = %q, %v", val, ok)
	}

	for _, a := range cs.Actions() {
		if v := a.GetVerb(); v != "list" && v != "watch" {
			t.Errorf("the view made a %s %s call", v, a.GetResource().Resource)
		}
	}
	if _, err := cs.CoreV1().ConfigMaps("shop").Create(t.Context(), &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: inject.ConfigMapName, Labels: ourLabels()},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "envoy-config appears", check("shop"))
}

// TestFileConfigSource: the controller's config file is read again when it
// changes; an invalid file keeps the config in use.
func TestFileConfigSource(t *testing.T) {
	t.Parallel()
	file := filepath.Join(t.TempDir(), "config.yaml")
	write := func(s string) {
		t.Helper()
		if err := os.WriteFile(file, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("apiVersion: sidecar.io/v1alpha1\nkind: InjectorConfig\n")
	src, err := NewFileConfigSource(file, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	first := src.Injector()
	if first == nil || first.Config().XDS.Port != 18000 {
		t.Fatalf("first config: %+v", first)
	}
	if src.Injector() != first {
		t.Error("an unchanged file gave a new injector")
	}
	write("apiVersion: sidecar.io/v1alpha1\nkind: InjectorConfig\nxds: {port: 18001}\n")
	second := src.Injector()
	if second == nil || second.Config().XDS.Port != 18001 {
		t.Fatalf("after the change: %+v", second.Config().XDS)
	}
	write("apiVersion: sidecar.io/v1alpha1\nkind: InjectorConfig\nxds: {port: 0}\nbogus: 1\n")
	if got := src.Injector(); got != second {
		t.Error("an invalid file replaced the config in use")
	}
	if _, err := NewFileConfigSource(filepath.Join(t.TempDir(), "none.yaml"), slog.New(slog.NewTextHandler(io.Discard, nil))); err == nil {
		t.Error("a missing file at start is no error")
	}
}
