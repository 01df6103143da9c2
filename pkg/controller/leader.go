package controller

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"
	"sync/atomic"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/uuid"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
)

// serviceAccountNamespace is where a pod finds its own namespace.
const serviceAccountNamespace = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"

// LeaderConfig is the leader election of the controller replicas: one
// coordination.k8s.io Lease; only its holder writes and records Events.
type LeaderConfig struct {
	// Enabled: false runs the reconciler at once (a single replica only:
	// two unelected controllers with different configs overwrite each other).
	Enabled bool
	// Namespace and Name of the Lease. An empty namespace is the pod's own
	// (the release namespace in the chart).
	Namespace string
	Name      string
	// Identity of this replica in the Lease; empty: hostname_random.
	Identity string
	// LeaseDuration is how long a standby waits after the last renewal
	// before it takes over; RenewDeadline how long the leader keeps trying
	// to renew before it gives up (and exits); RetryPeriod the pace of both.
	LeaseDuration time.Duration
	RenewDeadline time.Duration
	RetryPeriod   time.Duration
}

// DefaultLeaderConfig returns client-go's usual timings.
func DefaultLeaderConfig() LeaderConfig {
	return LeaderConfig{
		Enabled:       true,
		Name:          "sidecar-injector-controller",
		LeaseDuration: 15 * time.Second,
		RenewDeadline: 10 * time.Second,
		RetryPeriod:   2 * time.Second,
	}
}

// AddFlags registers the leader election flags.
func (c *LeaderConfig) AddFlags(fs *flag.FlagSet) {
	fs.BoolVar(&c.Enabled, "leader-elect", c.Enabled, "elect a leader among the replicas with a Lease; only the leader writes (false: one replica only)")
	fs.StringVar(&c.Namespace, "leader-election-namespace", c.Namespace, "`namespace` of the Lease (default: the pod's own)")
	fs.StringVar(&c.Name, "leader-election-name", c.Name, "`name` of the Lease")
	fs.StringVar(&c.Identity, "leader-election-identity", c.Identity, "this replica's `identity` in the Lease (default: hostname_random)")
	fs.DurationVar(&c.LeaseDuration, "leader-election-lease-duration", c.LeaseDuration, "how long standbys wait after the leader's last renewal before taking over")
	fs.DurationVar(&c.RenewDeadline, "leader-election-renew-deadline", c.RenewDeadline, "how long the leader retries renewing before it steps down (and exits)")
	fs.DurationVar(&c.RetryPeriod, "leader-election-retry-period", c.RetryPeriod, "how often candidates try to acquire or renew the Lease")
}

// Validate checks the timings the way client-go will, naming the flags.
func (c LeaderConfig) Validate() error {
	if !c.Enabled {
		return nil
	}
	var errs []error
	if c.Name == "" || strings.Contains(c.Name, "/") {
		errs = append(errs, fmt.Errorf("--leader-election-name=%q: want a Lease name", c.Name))
	}
	if c.RetryPeriod <= 0 || c.RenewDeadline <= time.Duration(leaderelection.JitterFactor*float64(c.RetryPeriod)) || c.LeaseDuration <= c.RenewDeadline {
		errs = append(errs, fmt.Errorf("--leader-election-lease-duration=%s, --leader-election-renew-deadline=%s, --leader-election-retry-period=%s: "+
			"want lease duration > renew deadline > 1.2 x retry period > 0, such as the defaults 15s, 10s, 2s",
			c.LeaseDuration, c.RenewDeadline, c.RetryPeriod))
	}
	return errors.Join(errs...)
}

// resolve fills in the namespace and the identity.
func (c LeaderConfig) resolve() (LeaderConfig, error) {
	if c.Namespace == "" {
		b, err := os.ReadFile(serviceAccountNamespace)
		if err != nil {
			return c, fmt.Errorf("--leader-election-namespace is empty and the pod's namespace is unknown (%w): pass the namespace of the Lease", err)
		}
		c.Namespace = strings.TrimSpace(string(b))
	}
	if c.Identity == "" {
		host, err := os.Hostname()
		if err != nil {
			host = "controller"
		}
		c.Identity = host + "_" + string(uuid.NewUUID())
	}
	return c, nil
}

// ErrLostLease is returned by RunElected when this replica stopped being
// the leader while its context was still live: the process should exit,
// and a fresh one campaigns again (client-go's elector runs once).
var ErrLostLease = errors.New("lost the leader Lease")

// RunElected campaigns for the Lease and runs the reconciler (Run) while
// it leads; sidecar_injector_controller_leader says which replica does.
// It returns nil when ctx is done (the Lease is released for a fast
// handover), ErrLostLease when leadership is lost, or Run's error.
// watchdog, when not nil, fails /healthz of a leader that stopped renewing.
func (c *Controller) RunElected(ctx context.Context, lc LeaderConfig, cs kubernetes.Interface, watchdog *leaderelection.HealthzAdaptor) error {
	if !lc.Enabled {
		c.setLeading(true)
		defer c.setLeading(false)
		return c.Run(ctx)
	}
	lc, err := lc.resolve()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var runErr error
	var started atomic.Bool
	ran := make(chan struct{})
	le, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
		Lock: &resourcelock.LeaseLock{
			LeaseMeta:  metav1.ObjectMeta{Namespace: lc.Namespace, Name: lc.Name},
			Client:     cs.CoordinationV1(),
			LockConfig: resourcelock.ResourceLockConfig{Identity: lc.Identity},
		},
		LeaseDuration:   lc.LeaseDuration,
		RenewDeadline:   lc.RenewDeadline,
		RetryPeriod:     lc.RetryPeriod,
		ReleaseOnCancel: true,
		Name:            lc.Name,
		WatchDog:        watchdog,
		Callbacks: leaderelection.LeaderCallbacks{
			OnStartedLeading: func(ctx context.Context) {
				started.Store(true)
				defer close(ran)
				c.setLeading(true)
				c.log.Info("controller: leading; reconciling", "lease", lc.Namespace+"/"+lc.Name, "identity", lc.Identity)
				if err := c.Run(ctx); err != nil {
					runErr = err
					cancel() // step down: release the Lease for a standby
				}
			},
			OnStoppedLeading: func() {
				c.setLeading(false)
			},
			OnNewLeader: func(id string) {
				if id != lc.Identity {
					c.log.Info("controller: standing by", "leader", id, "lease", lc.Namespace+"/"+lc.Name)
				}
			},
		},
	})
	if err != nil {
		return fmt.Errorf("leader election: %w", err)
	}
	c.log.Info("controller: campaigning for the Lease", "lease", lc.Namespace+"/"+lc.Name, "identity", lc.Identity)
	le.Run(ctx)
	if started.Load() {
		<-ran // it led: Run has seen the cancellation; wait for it
	}
	switch {
	case runErr != nil:
		return runErr
	case ctx.Err() != nil:
		return nil
	}
	return fmt.Errorf("%w %s/%s: exiting so that a fresh process campaigns again", ErrLostLease, lc.Namespace, lc.Name)
}
