//go:build e2e

package e2e

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sidecar-injector/sidecar-injector/pkg/inject"
	"github.com/sidecar-injector/sidecar-injector/test/testenv"
)

// TestAdmissionWarningsFromController: the shared webhook, from its
// read-only namespace view, tells through admission warnings kubectl prints, that a
// namespace's envoy-config is the user's own (left untouched) and that a
// namespace enforcing Pod Security baseline will reject injected pods; a
// namespace whose envoy-config the controller wrote gets neither.
func TestAdmissionWarningsFromController(t *testing.T) {
	t.Parallel()
	const scope = "warnings"
	register(t, injectorConfig(t, env.main, scope, nil))

	// A user's own envoy-config, present before injection is turned on.
	foreign := newNamespace(t, scope, nil)
	if _, err := env.cs.CoreV1().ConfigMaps(foreign).Create(t.Context(), &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: inject.ConfigMapName},
		Data:       map[string]string{inject.ConfigMapKey: "the user's own"},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	labelNamespace(t, foreign, map[string]string{testenv.NamespaceLabel: "enabled"})
	baseline := newNamespace(t, scope, map[string]string{
		testenv.NamespaceLabel: "enabled", "pod-security.kubernetes.io/enforce": "baseline",
	})
	ours := newNamespace(t, scope, map[string]string{testenv.NamespaceLabel: "enabled"})

	waitInjecting(t, ours, nil)
	for _, tc := range []struct {
		ns, want, notWant string
		rejected          bool // Pod Security admission refuses the injected pod after us
	}{
		{foreign, "is not managed by sidecar-injector; left untouched", "", false},
		{baseline, "enforces Pod Security baseline: iptables-init needs NET_ADMIN and NET_RAW", "", true},
		{ours, "", "ConfigMap", false},
	} {
		// The controller's caches follow the apiserver within moments:
		// poll with dry-run creates until the warning is there (or, for
		// our own namespace, until envoy-config exists and no warning is).
		var last []string
		err := testenv.WaitFor(t.Context(), nil, waitTimeout, func(ctx context.Context) error {
			cs, w := clientWithWarnings(t)
			p := simplePod("probe", nil, nil)
			_, err := cs.CoreV1().Pods(tc.ns).Create(ctx, p, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
			switch {
			case tc.rejected && (err == nil || !strings.Contains(err.Error(), "violates PodSecurity")):
				return fmt.Errorf("want the injected pod refused by Pod Security, got %v", err)
			case !tc.rejected && err != nil:
				return err
			}
			last = w.get()
			joined := strings.Join(last, "\n")
			if tc.want != "" && !strings.Contains(joined, tc.want) {
				return fmt.Errorf("warnings %q lack %q", last, tc.want)
			}
			if tc.notWant != "" {
				if _, err := env.cs.CoreV1().ConfigMaps(tc.ns).Get(ctx, inject.ConfigMapName, metav1.GetOptions{}); err != nil {
					return err
				}
				if strings.Contains(joined, tc.notWant) {
					return errors.New("a ConfigMap warning although ours exists")
				}
			}
			return nil
		})
		if err != nil {
			t.Errorf("namespace %s: %v", tc.ns, err)
		}
	}
}
