// Package poll is how tests wait: a condition checked until it holds or a
// deadline passes, never a bare sleep.
package poll

import (
	"testing"
	"time"
)

// Until calls cond until it returns nil and returns how long that took; if
// cond still fails after within, it fails the test with what and cond's
// last error. The interval starts at 5 ms and doubles up to 100 ms, so a
// quick condition is seen quickly and a slow one is not hammered.
func Until(t testing.TB, within time.Duration, what string, cond func() error) time.Duration {
	t.Helper()
	start := time.Now()
	interval := 5 * time.Millisecond
	for {
		err := cond()
		if err == nil {
			return time.Since(start)
		}
		if time.Since(start) > within {
			t.Fatalf("%s: not within %s: %v", what, within, err)
		}
		time.Sleep(interval)
		interval = min(2*interval, 100*time.Millisecond)
	}
}

// True is Until for a condition that has nothing to say when it fails.
func True(t testing.TB, within time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	return Until(t, within, what, func() error {
		if cond() {
			return nil
		}
		return errNotYet
	})
}

type notYet struct{}

func (notYet) Error() string { return "condition still false" }

var errNotYet error = notYet{}
