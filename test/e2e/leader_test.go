//go:build e2e

package e2e

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/watch"
	"sigs.k8s.io/yaml"

	"github.com/sidecar-injector/sidecar-injector/pkg/inject"
)

// Short Lease timings so that a takeover fits a test; the bound checked is
// the issue's: the lease duration plus 5 s.
const leaseDuration = 6 * time.Second

func leaderArgs(selector, leaseNS string) []string {
	return []string{"--namespace-selector", controllerLabel + "=" + selector,
		"--leader-election-namespace", leaseNS, "--leader-election-name", "e2e-" + selector,
		"--leader-election-lease-duration", leaseDuration.String(), "--leader-election-renew-deadline", "4s",
		"--leader-election-retry-period", "1s"}
}

// waitLeader waits until exactly one of cs says it leads and the others
// say they stand by; it returns the leader and the others.
func waitLeader(t *testing.T, within time.Duration, cs ...*ctlProc) (*ctlProc, []*ctlProc) {
	t.Helper()
	var leader *ctlProc
	var standbys []*ctlProc
	poll(t, within, "one leader", func(ctx context.Context) error {
		leader, standbys = nil, nil
		var got []float64
		for _, c := range cs {
			v := c.metric(ctx, "sidecar_injector_controller_leader", "")
			got = append(got, v)
			switch v {
			case 1:
				if leader != nil {
					return fmt.Errorf("two leaders: %v", got)
				}
				leader = c
			case 0:
				standbys = append(standbys, c)
			}
		}
		if leader == nil || len(standbys) != len(cs)-1 {
			return fmt.Errorf("sidecar_injector_controller_leader of the replicas: %v; want one 1, the rest 0", got)
		}
		return nil
	})
	return leader, standbys
}

// writeCounter counts, on a watch, the apiserver's ADDED and MODIFIED
// events of envoy-config ConfigMaps, per namespace.
type writeCounter struct {
	mu     sync.Mutex
	counts map[string]map[watch.EventType]int
}

func watchEnvoyConfigs(t *testing.T) *writeCounter {
	t.Helper()
	w, err := env.cs.CoreV1().ConfigMaps(metav1.NamespaceAll).Watch(t.Context(), metav1.ListOptions{
		FieldSelector: fields.OneTermEqualSelector("metadata.name", inject.ConfigMapName).String(),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.Stop)
	c := &writeCounter{counts: map[string]map[watch.EventType]int{}}
	go func() {
		for e := range w.ResultChan() {
			cm, ok := e.Object.(*corev1.ConfigMap)
			if !ok {
				continue
			}
			c.mu.Lock()
			if c.counts[cm.Namespace] == nil {
				c.counts[cm.Namespace] = map[watch.EventType]int{}
			}
			c.counts[cm.Namespace][e.Type]++
			c.mu.Unlock()
		}
	}()
	return c
}

// check wants exactly added ADDED and modified MODIFIED events in ns.
func (c *writeCounter) check(ns string, added, modified int) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if a, m := c.counts[ns][watch.Added], c.counts[ns][watch.Modified]; a != added || m != modified {
		return fmt.Errorf("namespace %s: %d ADDED, %d MODIFIED on the watch; want %d and %d", ns, a, m, added, modified)
	}
	return nil
}

// TestControllerLeaderElection: two controller processes, one Lease. One
// leads, the other stands by; envoy-config follows a namespace label within
// 5 s; SIGKILL of the leader hands the Lease to the standby within the
// lease duration plus 5 s, and the next label change is served by it; on a
// watch, every ConfigMap is written once per change.
func TestControllerLeaderElection(t *testing.T) {
	t.Parallel()
	const name = "leader"
	leaseNS := newNamespace(t, "controller", nil)
	a := startControllerProc(t, "leader-a", leaderArgs(name, leaseNS)...)
	b := startControllerProc(t, "leader-b", leaderArgs(name, leaseNS)...)
	leader, standbys := waitLeader(t, waitTimeout, a, b)
	standby := standbys[0]
	writes := watchEnvoyConfigs(t)
	bootstrap := wantBootstrap(t, inject.DefaultConfig())

	ns1 := newNamespace(t, "controller", map[string]string{controllerLabel: name})
	setNamespaceLabel(t, ns1, inject.NamespaceLabel, &enabled)
	took := poll(t, appearWithin, "envoy-config from the leader", hasContent(ns1, bootstrap))
	t.Logf("leader %s wrote envoy-config %s after the label", leader.name, took.Round(time.Millisecond))
	if v := standby.metric(t.Context(), "sidecar_injector_envoy_config_writes_total", `result="applied"`); v != 0 {
		t.Errorf("the standby applied %v writes", v)
	}

	leader.kill(t)
	killed := time.Now()
	poll(t, leaseDuration+5*time.Second, "the standby takes over", func(ctx context.Context) error {
		if v := standby.metric(ctx, "sidecar_injector_controller_leader", ""); v != 1 {
			return fmt.Errorf("standby %s: leader %v", standby.name, v)
		}
		return nil
	})
	t.Logf("standby %s leads %s after SIGKILL of %s (lease duration %s)", standby.name, time.Since(killed).Round(time.Millisecond), leader.name, leaseDuration)

	ns2 := newNamespace(t, "controller", map[string]string{controllerLabel: name})
	setNamespaceLabel(t, ns2, inject.NamespaceLabel, &enabled)
	took = poll(t, appearWithin, "envoy-config from the new leader", hasContent(ns2, bootstrap))
	t.Logf("new leader %s wrote envoy-config %s after the label", standby.name, took.Round(time.Millisecond))

	poll(t, 5*time.Second, "one write per change", func(context.Context) error {
		return errors.Join(writes.check(ns1, 1, 0), writes.check(ns2, 1, 0))
	})
	time.Sleep(2 * time.Second) // nothing more comes: the new leader leaves ns1's envoy-config alone
	if err := errors.Join(writes.check(ns1, 1, 0), writes.check(ns2, 1, 0)); err != nil {
		t.Error(err)
	}
	if v := standby.metric(t.Context(), "sidecar_injector_envoy_config_writes_total", `result="applied"`); v != 1 {
		t.Errorf("the new leader applied %v writes, want 1 (ns2 only)", v)
	}
}

// TestControllerRollout: two controllers with different injector configs
// (a rollout between two versions): the envoy-config settles on the
// leader's content and stays there, with no write for 10 s.
func TestControllerRollout(t *testing.T) {
	t.Parallel()
	const name = "rollout"
	leaseNS := newNamespace(t, "controller", nil)
	dir := t.TempDir()
	cfgs := map[string]inject.Config{"rollout-old": inject.DefaultConfig(), "rollout-new": inject.DefaultConfig()}
	newer := cfgs["rollout-new"]
	newer.XDS.Port = 18001 // another bootstrap
	cfgs["rollout-new"] = newer
	var procs []*ctlProc
	for _, n := range []string{"rollout-old", "rollout-new"} {
		b, err := yaml.Marshal(cfgs[n])
		if err != nil {
			t.Fatal(err)
		}
		file := filepath.Join(dir, n+".yaml")
		if err := os.WriteFile(file, b, 0o644); err != nil {
			t.Fatal(err)
		}
		procs = append(procs, startControllerProc(t, n, append(leaderArgs(name, leaseNS), "--config", file)...))
	}
	leader, _ := waitLeader(t, waitTimeout, procs...)
	writes := watchEnvoyConfigs(t)

	ns := newNamespace(t, "controller", map[string]string{controllerLabel: name})
	setNamespaceLabel(t, ns, inject.NamespaceLabel, &enabled)
	poll(t, appearWithin, "envoy-config with the leader's content", hasContent(ns, wantBootstrap(t, cfgs[leader.name])))
	time.Sleep(10 * time.Second) // the quiet period of the issue: no ping-pong
	if err := writes.check(ns, 1, 0); err != nil {
		t.Errorf("over 10 s with two configs: %v", err)
	}
	if err := hasContent(ns, wantBootstrap(t, cfgs[leader.name]))(t.Context()); err != nil {
		t.Errorf("after 10 s: %v", err)
	}
	for _, c := range procs {
		if v := c.metric(t.Context(), "sidecar_injector_envoy_config_writes_total", `result="error"`); v != 0 {
			t.Errorf("%s: %v write errors", c.name, v)
		}
	}
}
