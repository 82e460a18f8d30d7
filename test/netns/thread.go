package netns

import (
	"fmt"
	"runtime"

	vns "github.com/vishvananda/netns"
)

// onThread runs fn on a fresh goroutine locked to its OS thread. When enter is not nil it
// runs first, on that thread, and is expected to switch it into a namespace; fn does not
// run if enter fails. Whatever fn does to the thread's network namespace, the
// thread is switched back to where it started afterwards; if that fails the thread is left
// locked, and the Go runtime destroys it when the goroutine ends, so no goroutine can ever
// be scheduled on a thread stuck in the wrong namespace. A panic in fn is re-raised in the
// caller's goroutine.
func onThread(enter, fn func() error) error {
	type result struct {
		err      error
		panicked bool
		panicVal any
	}
	done := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		var res result
		defer func() { done <- res }()

		orig, err := vns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			res.err = fmt.Errorf("netns: open current thread's namespace: %w", err)
			return
		}
		defer orig.Close()

		if enter != nil {
			if err := enter(); err != nil {
				// A failed setns leaves the thread where it was.
				runtime.UnlockOSThread()
				res.err = err
				return
			}
		}
		func() {
			defer func() {
				if r := recover(); r != nil {
					res.panicked, res.panicVal = true, r
				}
			}()
			res.err = fn()
		}()
		if err := vns.Set(orig); err == nil {
			runtime.UnlockOSThread()
		}
	}()
	res := <-done
	if res.panicked {
		panic(res.panicVal)
	}
	return res.err
}
