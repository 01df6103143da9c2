package poll

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

func TestUntilReturnsOnceTrue(t *testing.T) {
	t.Parallel()
	calls := 0
	took := Until(t, 5*time.Second, "third call", func() error {
		calls++
		if calls < 3 {
			return fmt.Errorf("call %d", calls)
		}
		return nil
	})
	if calls != 3 || took <= 0 {
		t.Errorf("calls %d, took %s; want 3 calls", calls, took)
	}
}

// fatalT records a Fatalf and ends its goroutine, as testing.T does.
type fatalT struct {
	testing.TB
	msg string
}

func (f *fatalT) Helper() {}
func (f *fatalT) Fatalf(format string, args ...any) {
	f.msg = fmt.Sprintf(format, args...)
	panic(f)
}

func TestUntilFailsWithLastError(t *testing.T) {
	t.Parallel()
	f := &fatalT{}
	func() {
		defer func() {
			if r := recover(); r != nil && r != f {
				panic(r)
			}
		}()
		True(f, 30*time.Millisecond, "never", func() bool { return false })
	}()
	if !strings.Contains(f.msg, "never: not within 30ms: condition still false") {
		t.Errorf("message %q", f.msg)
	}
	f.msg = ""
	func() {
		defer func() { _ = recover() }()
		Until(f, 0, "at once", func() error { return errors.New("boom") })
	}()
	if !strings.Contains(f.msg, "at once: not within 0s: boom") {
		t.Errorf("message %q", f.msg)
	}
}
