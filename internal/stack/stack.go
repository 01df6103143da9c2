// Package stack grows a goroutine's stack ahead of deep work.
//
// A goroutine's stack starts small and doubles when a call does not fit:
// the runtime copies the used stack and adjusts every frame. Decoders
// recurse, so a goroutine that decodes grows while deep, copying a deep
// stack, often several times. Grow asks for the room once, while the
// goroutine is shallow and there is little to copy.
package stack

import "unsafe"

// Grow makes room for R (a byte array of the size wanted) on the calling
// goroutine's stack, on top of what it uses now, growing it if it is
// short: stack.Grow[[16 << 10]byte](). A goroutine whose stack is large
// enough pays only for zeroing R.
//
//go:noinline
func Grow[R any]() {
	var reserve R
	keep(unsafe.Pointer(&reserve))
}

// keep keeps Grow's frame from being optimized away.
//
//go:noinline
func keep(unsafe.Pointer) {}
