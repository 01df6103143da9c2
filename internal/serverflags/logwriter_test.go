package serverflags

import (
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sidecar-injector/sidecar-injector/internal/poll"
)

// countingWriter records what reaches it and in how many writes.
type countingWriter struct {
	mu     sync.Mutex
	b      strings.Builder
	writes int
}

func (w *countingWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.writes++
	return w.b.Write(p)
}

func (w *countingWriter) get() (string, int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.String(), w.writes
}

// INFO lines are batched into one write, on the timer; a WARN line is
// written at once with the lines before it; flush writes the rest; a batch
// that fills is written without waiting.
func TestLogBatching(t *testing.T) {
	out := &countingWriter{}
	p := DefaultProcess(100)
	log, flush, err := p.Start(out)
	if err != nil {
		t.Fatal(err)
	}
	log.Info("one")
	log.Info("two")
	poll.True(t, 10*time.Second, "the timer writes the batch", func() bool {
		got, _ := out.get()
		return strings.Contains(got, `"msg":"one"`) && strings.Contains(got, `"msg":"two"`)
	})
	if _, writes := out.get(); writes != 1 {
		t.Errorf("two INFO lines took %d writes, want 1", writes)
	}

	log.Info("three")
	log.Warn("four")
	got, writes := out.get()
	if !strings.Contains(got, `"msg":"three"`) || !strings.Contains(got, `"msg":"four"`) || writes != 2 {
		t.Fatalf("after a WARN line: %d writes, %q; want both lines in one more write", writes, got)
	}
	log.With("k", "v").WithGroup("g").Error("five", "x", 1)
	if got, _ := out.get(); !strings.Contains(got, `"msg":"five","k":"v","g":{"x":1}`) {
		t.Fatalf("an ERROR line through With and WithGroup is not written at once: %q", got)
	}

	log.Info("six")
	flush()
	if got, _ := out.get(); !strings.Contains(got, `"msg":"six"`) {
		t.Fatalf("flush did not write the batch: %q", got)
	}

	_, before := out.get()
	long := strings.Repeat("x", logBatchBytes/4)
	for range 5 {
		log.Info(long)
	}
	if _, after := out.get(); after == before {
		t.Fatalf("%d bytes of lines were kept without a write", 5*len(long))
	}
	flush()
	if got, _ := out.get(); strings.Count(got, long) != 5 {
		t.Fatalf("%d of 5 long lines written", strings.Count(got, long))
	}
}
