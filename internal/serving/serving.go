// Package serving is what every server of the product (webhook,
// controller, xds) stands on, written once: file and certificate watching
// with a ready signal (Watch, CertSource), the TLS settings (TLSConfig),
// the plain-HTTP health and metrics port (Health) and the shutdown
// sequence: readiness false, a drain delay, then a bounded graceful stop
// (Lifecycle).
//
// It stays lean: the standard library, client_golang and fsnotify only
// (deps_test.go), so the webhook binary that links it stays small.
package serving

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"
)

// Unit is one thing a server runs until shutdown: an HTTP or gRPC server,
// or a loop (Task).
type Unit struct {
	// Name says what it is in errors ("health server").
	Name string
	// Serve runs until Stop or a failure. After Stop it returns nil or
	// http.ErrServerClosed.
	Serve func() error
	// Stop ends Serve gracefully within ctx; when ctx ends first it cuts
	// what remains and says so in its error.
	Stop func(ctx context.Context) error
}

// HTTP serves srv on ln, with TLS when srv.TLSConfig is set; Stop is
// http.Server.Shutdown, then Close when the grace runs out.
func HTTP(name string, srv *http.Server, ln net.Listener) Unit {
	return Unit{
		Name: name,
		Serve: func() error {
			if srv.TLSConfig != nil {
				return srv.ServeTLS(ln, "", "")
			}
			return srv.Serve(ln)
		},
		Stop: func(ctx context.Context) error {
			err := srv.Shutdown(ctx)
			if err != nil {
				srv.Close()
			}
			return err
		},
	}
}

// Task runs run until Stop cancels its context. run returning on its own
// (with an error or not) shuts the server down.
func Task(name string, run func(ctx context.Context) error) Unit {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	return Unit{
		Name: name,
		Serve: func() error {
			defer close(done)
			return run(ctx)
		},
		Stop: func(stopCtx context.Context) error {
			cancel()
			select {
			case <-done:
				return nil
			case <-stopCtx.Done():
				return fmt.Errorf("still running: %w", stopCtx.Err())
			}
		},
	}
}

// Lifecycle is how a server starts and stops.
type Lifecycle struct {
	Log *slog.Logger
	// Watches run from before the units serve until they have stopped.
	Watches []Watch
	// Serving, if set, is called once the watches are in place and the
	// units started.
	Serving func()
	// Draining, if set, is called when shutdown starts: readiness goes
	// false here.
	Draining func()
	// DrainDelay is how long the units keep serving after Draining (the
	// time endpoints take to drop this replica). It is skipped when a unit
	// failed: nothing serves well then.
	DrainDelay time.Duration
	// Grace bounds the graceful stop of the units.
	Grace time.Duration
}

// Run starts the watches and, once they are in place, the units; it
// serves until ctx is done or a unit stops on its own. Then it calls
// Draining, waits DrainDelay, stops every unit within Grace, and returns
// the errors of units that failed or had work cut.
func (l Lifecycle) Run(ctx context.Context, units ...Unit) error {
	stopWatches := startWatches(l.Log, l.Watches)
	defer stopWatches()

	errc := make(chan error, len(units))
	for _, u := range units {
		go func() {
			err := u.Serve()
			if err != nil && !errors.Is(err, http.ErrServerClosed) {
				err = fmt.Errorf("%s: %w", u.Name, err)
			} else {
				err = nil
			}
			errc <- err
		}()
	}
	if l.Serving != nil {
		l.Serving()
	}

	var errs []error
	pending := len(units)
	failed := false
	select {
	case <-ctx.Done():
	case err := <-errc: // a unit stopped on its own: stop the others
		pending--
		failed = true
		errs = append(errs, err)
	}
	if l.Draining != nil {
		l.Draining()
	}
	if !failed && l.DrainDelay > 0 {
		l.Log.Info("shutting down: readiness false, still serving while endpoints are removed", "drain_delay", l.DrainDelay)
		drained := time.NewTimer(l.DrainDelay)
	drain:
		for pending > 0 {
			select {
			case <-drained.C:
				break drain
			case err := <-errc:
				pending--
				errs = append(errs, err)
			}
		}
		drained.Stop()
	}

	l.Log.Info("shutting down: no new connections, waiting for requests in flight", "grace", l.Grace)
	graceCtx, cancel := context.WithTimeout(context.Background(), l.Grace)
	defer cancel()
	stopErrs := make([]error, len(units))
	var wg sync.WaitGroup
	for i, u := range units {
		wg.Go(func() {
			if err := u.Stop(graceCtx); err != nil {
				stopErrs[i] = fmt.Errorf("%s: shutdown within %s: %w (requests still in flight were cut)", u.Name, l.Grace, err)
			}
		})
	}
	wg.Wait()
	for range pending {
		errs = append(errs, <-errc)
	}
	err := errors.Join(append(errs, stopErrs...)...)
	if err == nil {
		l.Log.Info("stopped")
	}
	return err
}
