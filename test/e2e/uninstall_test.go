//go:build e2e

package e2e

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/sidecar-injector/sidecar-injector/pkg/controller"
	"github.com/sidecar-injector/sidecar-injector/pkg/inject"
	"github.com/sidecar-injector/sidecar-injector/pkg/nsview"
	"github.com/sidecar-injector/sidecar-injector/test/testenv"
)

// TestHelmControllerRBACAndUninstall installs the chart, checks what its
// two ServiceAccounts may do (the webhook's reads only; the controller's
// only what it needs), runs the controller as the chart's controller
// ServiceAccount (Lease, envoy-config owned by the release's ClusterRole,
// Events), then uninstalls: the real kube-controller-manager's garbage
// collector removes our envoy-configs within 60 s and leaves a user's own.
func TestHelmControllerRBACAndUninstall(t *testing.T) {
	t.Parallel()
	const (
		scope     = "gc"
		release   = "gc"
		namespace = "e2e-gc-release"
		name      = "gc"
	)
	ctx := t.Context()
	chart := filepath.Join(env.root, "charts", "sidecar-injector")
	ports, err := testenv.FreePorts(1)
	if err != nil {
		t.Fatal(err)
	}
	helm := func(args ...string) { t.Helper(); runHelm(t, ctx, args...) }
	// The release's webhook entries are confined to this test's (pod-less) namespaces.
	helm("install", release, chart, "-n", namespace, "--create-namespace",
		"--set", "webhook.url=https://127.0.0.1:"+strconv.Itoa(ports[0]),
		"--set-json", scopeSelectorValue(scope))
	installed := true
	t.Cleanup(func() {
		c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if installed {
			_ = exec.CommandContext(c, env.cp.Binaries.Helm, "uninstall", release, "-n", namespace, "--kubeconfig", env.cp.Kubeconfig).Run()
		}
		_ = env.cs.CoreV1().Namespaces().Delete(c, namespace, metav1.DeleteOptions{})
	})
	full := release + "-sidecar-injector"
	webhookSA := "system:serviceaccount:" + namespace + ":" + full + "-webhook"
	controllerSA := "system:serviceaccount:" + namespace + ":" + full + "-controller"
	owner, err := env.cs.RbacV1().ClusterRoles().Get(ctx, full+"-controller", metav1.GetOptions{})
	if err != nil {
		t.Fatalf("the release's controller ClusterRole: %v", err)
	}

	// What each ServiceAccount may do, asked of the apiserver's authorizer.
	other := newNamespace(t, scope, nil)
	type access struct {
		group, resource, name, ns, verb string
		allowed                         bool
	}
	var checks []access
	for _, r := range []struct{ group, resource, name string }{
		{"", "configmaps", "envoy-config"}, {"", "configmaps", ""}, {"", "pods", ""}, {"", "namespaces", ""},
		{"", "secrets", ""}, {"events.k8s.io", "events", ""}, {"coordination.k8s.io", "leases", full + "-controller"},
		{"rbac.authorization.k8s.io", "clusterroles", full + "-controller"},
	} {
		for _, verb := range []string{"create", "update", "patch", "delete"} {
			checks = append(checks, access{r.group, r.resource, r.name, other, verb, false})
		}
	}
	webhookChecks := append(checks,
		access{"", "namespaces", "", "", "list", true}, access{"", "namespaces", "", "", "watch", true},
		access{"", "configmaps", "envoy-config", other, "list", true}, access{"", "configmaps", "envoy-config", other, "watch", true},
		access{"", "configmaps", "mine", other, "get", false}, access{"", "secrets", "", other, "get", false},
		access{"", "pods", "", other, "list", false})
	controllerChecks := []access{
		{"", "configmaps", "", other, "create", true}, {"", "configmaps", "envoy-config", other, "update", true},
		{"", "configmaps", "envoy-config", other, "patch", true}, {"", "configmaps", "envoy-config", other, "delete", true},
		{"", "configmaps", "mine", other, "update", false}, {"", "configmaps", "mine", other, "delete", false},
		{"", "configmaps", "mine", other, "get", false},
		{"", "pods", "", other, "list", true}, {"", "pods", "", other, "watch", true},
		{"", "pods", "", other, "create", false}, {"", "pods", "", other, "delete", false}, {"", "pods", "web", other, "get", false},
		{"", "secrets", "", other, "get", false}, {"", "secrets", "", other, "list", false},
		{"", "namespaces", "", "", "watch", true}, {"", "namespaces", other, "", "update", false},
		{"events.k8s.io", "events", "", other, "create", true}, {"events.k8s.io", "events", "", other, "delete", false},
		{"coordination.k8s.io", "leases", full + "-controller", namespace, "update", true},
		{"coordination.k8s.io", "leases", "", namespace, "create", true},
		{"coordination.k8s.io", "leases", full + "-controller", other, "update", false},
		{"coordination.k8s.io", "leases", "other", namespace, "update", false},
		{"rbac.authorization.k8s.io", "clusterroles", full + "-controller", "", "get", true},
		{"rbac.authorization.k8s.io", "clusterroles", full + "-webhook", "", "get", false},
		{"rbac.authorization.k8s.io", "clusterroles", full + "-controller", "", "update", false},
	}
	for user, list := range map[string][]access{webhookSA: webhookChecks, controllerSA: controllerChecks} {
		for _, a := range list {
			sar, err := env.cs.AuthorizationV1().SubjectAccessReviews().Create(ctx, &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
				User:   user,
				Groups: []string{"system:serviceaccounts", "system:serviceaccounts:" + namespace, "system:authenticated"},
				ResourceAttributes: &authorizationv1.ResourceAttributes{
					Namespace: a.ns, Verb: a.verb, Group: a.group, Resource: a.resource, Name: a.name,
				},
			}}, metav1.CreateOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if sar.Status.Allowed != a.allowed {
				t.Errorf("%s %s %s/%s %q in %q: allowed %v, want %v", user, a.verb, a.group, a.resource, a.name, a.ns, sar.Status.Allowed, a.allowed)
			}
		}
	}

	// The webhook's read-only view, as the chart's webhook ServiceAccount:
	// its list and watch are enough to sync.
	wtok, err := env.cs.CoreV1().ServiceAccounts(namespace).CreateToken(ctx, full+"-webhook", &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: new(int64(3600))},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	asWebhook := rest.AnonymousClientConfig(env.restCfg)
	asWebhook.BearerToken = wtok.Status.Token
	wcs, err := kubernetes.NewForConfig(asWebhook)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := wcs.CoreV1().ConfigMaps(other).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: inject.ConfigMapName}}, metav1.CreateOptions{}); !apierrors.IsForbidden(err) {
		t.Errorf("the webhook's ServiceAccount creating envoy-config: %v, want forbidden", err)
	}
	wmd, err := metadata.NewForConfig(asWebhook)
	if err != nil {
		t.Fatal(err)
	}
	view, err := nsview.NewView(wmd, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	viewCtx, stopView := context.WithCancel(ctx)
	defer stopView()
	go func() { _ = view.Run(viewCtx) }()
	poll(t, waitTimeout, "the webhook's view syncs as the webhook's ServiceAccount", func(context.Context) error {
		if !view.HasSynced() {
			return errors.New("not synced (RBAC?)")
		}
		return nil
	})

	// The controller, as the chart's controller ServiceAccount.
	tok, err := env.cs.CoreV1().ServiceAccounts(namespace).CreateToken(ctx, full+"-controller", &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: new(int64(3600))},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	kc, err := clientcmd.LoadFromFile(env.cp.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	for _, ai := range kc.AuthInfos {
		ai.ClientCertificateData, ai.ClientKeyData, ai.ClientCertificate, ai.ClientKey = nil, nil, "", ""
		ai.Token = tok.Status.Token
	}
	saKubeconfig := filepath.Join(t.TempDir(), "controller.kubeconfig")
	if err := clientcmd.WriteToFile(*kc, saKubeconfig); err != nil {
		t.Fatal(err)
	}
	ctl := startControllerProc(t, "gc", "--kubeconfig", saKubeconfig,
		"--namespace-selector", controllerLabel+"="+name,
		"--leader-election-namespace", namespace, "--leader-election-name", full+"-controller",
		"--owner-cluster-role", full+"-controller")
	waitLeader(t, waitTimeout, ctl)

	var ours []string
	for range 2 {
		ns := newNamespace(t, scope, map[string]string{controllerLabel: name, testenv.NamespaceLabel: "enabled"})
		ours = append(ours, ns)
	}
	for _, ns := range ours {
		poll(t, waitTimeout, "envoy-config owned by the release in "+ns, func(ctx context.Context) error {
			cm, err := envoyConfig(ctx, ns)
			if err != nil {
				return err
			}
			if r := cm.OwnerReferences; len(r) != 1 || r[0].UID != owner.UID || r[0].Kind != "ClusterRole" {
				return fmt.Errorf("ownerReferences %+v: want ClusterRole %s (uid %s)", r, owner.Name, owner.UID)
			}
			return nil
		})
	}
	users := newNamespace(t, scope, map[string]string{controllerLabel: name})
	mine, err := env.cs.CoreV1().ConfigMaps(users).Create(ctx, &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: inject.ConfigMapName}, Data: map[string]string{inject.ConfigMapKey: "mine"},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	setNamespaceLabel(t, users, inject.NamespaceLabel, &enabled)
	waitEvent(t, users, controller.EventEnvoyConfigNotManaged)
	if v := ctl.metric(ctx, "sidecar_injector_envoy_config_writes_total", `result="error"`); v != 0 {
		t.Errorf("%v write errors as the chart's controller ServiceAccount", v)
	}

	// helm uninstall deletes the controller Deployment (here: stop the
	// process) and the ClusterRole; the garbage collector does the rest.
	if err := ctl.proc.Stop(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	helm("uninstall", release, "-n", namespace)
	installed = false
	uninstalled := time.Now()
	poll(t, 60*time.Second, "the garbage collector removes our envoy-configs", func(ctx context.Context) error {
		var errs []error
		for _, ns := range ours {
			if _, err := envoyConfig(ctx, ns); !apierrors.IsNotFound(err) {
				errs = append(errs, fmt.Errorf("%s: still there (%v)", ns, err))
			}
		}
		return errors.Join(errs...)
	})
	t.Logf("our envoy-configs gone %s after helm uninstall", time.Since(uninstalled).Round(time.Second))
	got, err := envoyConfig(ctx, users)
	if err != nil || got.ResourceVersion != mine.ResourceVersion || got.Data[inject.ConfigMapKey] != "mine" {
		t.Errorf("the user's envoy-config after uninstall: %v, %+v", err, got)
	}
}
