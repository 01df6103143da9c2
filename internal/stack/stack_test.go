package stack

import (
	"runtime"
	"testing"
)

// deep recurses n frames of about 1 KiB each.
//
//go:noinline
func deep(n int) int {
	var frame [1 << 10]byte
	frame[n%len(frame)] = byte(n)
	if n == 0 {
		return int(frame[0])
	}
	return deep(n-1) + int(frame[n%len(frame)])
}

// stackInUse is the bytes of goroutine stacks the runtime holds.
func stackInUse() uint64 {
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.StackInuse
}

// Goroutines that call Grow first have stacks with room for the reserve:
// 200 of them, parked, hold at least 200 × 32 KiB of stack, and a deep
// call of 24 KiB afterwards grows nothing further. Without Grow the same
// goroutines, parked before the deep call, hold a fraction of that.
func TestGrowReservesRoom(t *testing.T) {
	const n = 200
	held := func(grow bool) uint64 {
		before := stackInUse()
		release := make(chan struct{})
		ready := make(chan struct{})
		for range n {
			go func() {
				if grow {
					Grow[[32 << 10]byte]()
				}
				ready <- struct{}{}
				<-release
			}()
		}
		for range n {
			<-ready
		}
		after := stackInUse()
		close(release)
		if after < before {
			return 0
		}
		return after - before
	}
	plain, grown := held(false), held(true)
	if grown < n*32<<10 {
		t.Errorf("%d goroutines after Grow hold %d bytes of stack, want at least %d", n, grown, n*32<<10)
	}
	if plain >= grown/4 {
		t.Errorf("without Grow the goroutines hold %d bytes of stack, with it %d: Grow made no difference", plain, grown)
	}
}

func BenchmarkGrownThenDeep(b *testing.B) {
	for b.Loop() {
		done := make(chan int)
		go func() {
			Grow[[32 << 10]byte]()
			done <- deep(24)
		}()
		<-done
	}
}

func BenchmarkDeep(b *testing.B) {
	for b.Loop() {
		done := make(chan int)
		go func() { done <- deep(24) }()
		<-done
	}
}
