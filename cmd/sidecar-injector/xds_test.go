package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sidecar-injector/sidecar-injector/internal/poll"
	"github.com/sidecar-injector/sidecar-injector/internal/syncbuf"
	"github.com/sidecar-injector/sidecar-injector/pkg/inject"
	"github.com/sidecar-injector/sidecar-injector/test/adsclient"
)

func TestRunXDSFlags(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	badMesh := filepath.Join(dir, "mesh.yaml")
	if err := os.WriteFile(badMesh, []byte("connectTimeout: forever\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	local := []string{"--listen-address", "127.0.0.1:0", "--health-address", "127.0.0.1:0"}
	for name, tc := range map[string]struct {
		args  []string
		usage bool
		want  string
	}{
		"unknown flag":      {[]string{"--nope"}, true, "flag provided but not defined"},
		"extra argument":    {[]string{"serve"}, true, "unexpected arguments"},
		"bad log format":    {append(local, "--log-format", "xml"), false, `--log-format="xml": want json or text`},
		"bad log level":     {append(local, "--log-level", "loud"), false, `--log-level="loud"`},
		"bad address":       {[]string{"--listen-address", "18000", "--health-address", "127.0.0.1:0"}, false, `--listen-address "18000": want host:port`},
		"cert without key":  {append(local, "--tls-cert-file", "x.crt"), false, "--tls-cert-file and --tls-key-file go together"},
		"missing mesh file": {append(local, "--mesh-config", filepath.Join(dir, "none.yaml")), false, "none.yaml"},
		"invalid mesh file": {append(local, "--mesh-config", badMesh), false, `connectTimeout`},
		"bad stream limit":  {append(local, "--max-concurrent-streams", "-1"), true, "want a number"},
	} {
		var stderr bytes.Buffer
		err := runXDS(context.Background(), tc.args, stdio{in: strings.NewReader(""), out: &bytes.Buffer{}, err: &stderr})
		if err == nil {
			t.Errorf("%s: no error", name)
			continue
		}
		if tc.usage != errors.Is(err, errUsage) {
			t.Errorf("%s: error %v, usage error %v", name, err, tc.usage)
		}
		if msg := err.Error() + stderr.String(); !strings.Contains(msg, tc.want) {
			t.Errorf("%s: %q does not contain %q", name, msg, tc.want)
		}
	}
}

var grpcAddr = regexp.MustCompile(`msg="xds server listening".* grpc=(\S+)`)

// The command serves ADS: an injected pod's proxy asks for its clusters and
// listeners and gets them (with ADS not registered, the fetch fails); then
// the command shuts down cleanly when its context ends.
func TestRunXDSServesAndStops(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var stderr syncbuf.Buffer
	done := make(chan error, 1)
	go func() {
		done <- runXDS(ctx, []string{"--listen-address", "127.0.0.1:0", "--health-address", "127.0.0.1:0",
			"--shutdown-delay", "0s", "--log-format", "text"}, stdio{in: strings.NewReader(""), out: &bytes.Buffer{}, err: &stderr})
	}()
	var addr string
	poll.Until(t, 10*time.Second, "the xds server listening line", func() error {
		select {
		case err := <-done:
			t.Fatalf("runXDS returned before serving: %v\n%s", err, stderr.String())
		default:
		}
		m := grpcAddr.FindStringSubmatch(stderr.String())
		if m == nil {
			return fmt.Errorf("no listening line yet:\n%s", stderr.String())
		}
		addr = m[1]
		return nil
	})

	res, err := inject.Inject(&corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "shop"},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "app", Ports: []corev1.ContainerPort{{ContainerPort: 8080}}}}},
	}, inject.DefaultConfig(), inject.Overrides{Namespace: "shop"})
	if err != nil || res.Decision != inject.DecisionInject {
		t.Fatalf("inject: %v, decision %q (%s)", err, res.Decision, res.Message)
	}
	node, err := adsclient.NodeFromPod(res.Pod)
	if err != nil {
		t.Fatal(err)
	}
	got, err := adsclient.Fetch(ctx, addr, node, 10*time.Second)
	if err != nil {
		t.Fatalf("ADS fetch from %s: %v\n%s", addr, err, stderr.String())
	}
	var names []string
	for _, l := range got.Listeners {
		names = append(names, l.GetName())
	}
	var clusters []string
	for _, c := range got.Clusters {
		clusters = append(clusters, c.GetName())
	}
	// The pod's app port has its own inbound cluster: the config was built
	// from this proxy's metadata, not a default.
	if !slices.Contains(names, "inbound") || !slices.Contains(names, "outbound") ||
		!slices.ContainsFunc(clusters, func(c string) bool { return strings.Contains(c, "8080") }) ||
		got.ClusterVersion == "" || got.ListenerVersion == "" {
		t.Errorf("ADS served listeners %q, clusters %q, versions %q/%q; want inbound, outbound, a cluster for port 8080, versions",
			names, clusters, got.ClusterVersion, got.ListenerVersion)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("runXDS: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("runXDS did not return after cancel")
	}
}
