package netns

import (
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"

	"github.com/vishvananda/netlink"
	vns "github.com/vishvananda/netns"
)

// ErrClosed is returned by operations on a namespace after [NS.Close], so a test that
// keeps using a torn-down topology fails with a clear message instead of EBADF.
var ErrClosed = errors.New("netns: namespace is closed")

// NS is one named network namespace. It owns the namespace: the servers started in it, its
// netlink handle and its /var/run/netns entry all go away with [NS.Close].
//
// All methods are safe for concurrent use.
type NS struct {
	// Name is the kernel-visible name: the namespace is bind-mounted at
	// /var/run/netns/<Name>. It carries a random per-topology id so names never collide.
	Name string
	// Label is the short role name ("node", "local-0", "client-0"). Servers put it first
	// in their replies, so a test can tell which endpoint answered.
	Label string

	path   string
	handle vns.NsHandle
	nl     *netlink.Handle

	mu      sync.RWMutex
	closed  bool
	closers []io.Closer
}

// Path is the bind-mount path of the namespace, for `nsenter --net=<Path>` or for handing
// to another library that opens namespaces by path.
func (n *NS) Path() string { return n.path }

// Netlink calls fn with a netlink handle whose sockets live inside the namespace, for
// tests that need their own links, addresses, routes or neighbours there (an IPVS dummy
// interface, say). The handle covers the route, xfrm and netfilter families.
//
// The handle is lent, not given: fn must not keep it, and must not call other methods of
// this NS. After Close, a vishvananda handle silently falls back to the calling thread's
// namespace — the host's — so Netlink returns ErrClosed instead of ever exposing it.
func (n *NS) Netlink(fn func(h *netlink.Handle) error) error {
	n.mu.RLock()
	defer n.mu.RUnlock()
	if n.closed {
		return fmt.Errorf("%s: %w", n, ErrClosed)
	}
	return fn(n.nl)
}

// String returns the label and kernel name, which is what a failure message needs.
func (n *NS) String() string { return n.Label + " (" + n.Name + ")" }

// Do runs fn on an OS thread switched into the namespace and returns fn's error. The
// thread is always switched back (or discarded if that fails), so Do never leaks the
// namespace into other goroutines.
//
// What happens inside fn stays bound to the namespace where the kernel binds it: sockets
// created in fn stay in it for their whole life, and child processes started in fn through
// os/exec inherit it (Go forks from the calling thread). Goroutines started from fn do NOT
// run in the namespace, and fn runs on its own goroutine, so it must not call t.Fatal;
// return an error instead. A panic in fn is re-raised in the caller.
func (n *NS) Do(fn func() error) error {
	return onThread(n.enter, fn)
}

// enter switches the calling thread into the namespace. The read lock only spans the
// setns call, so Close cannot close the handle under it while fn may still call back into
// this NS.
func (n *NS) enter() error {
	n.mu.RLock()
	defer n.mu.RUnlock()
	if n.closed {
		return fmt.Errorf("%s: %w", n, ErrClosed)
	}
	if err := vns.Set(n.handle); err != nil {
		return fmt.Errorf("enter %s: %w", n, err)
	}
	return nil
}

// track registers c to be closed with the namespace. It reports false, without closing c,
// if the namespace is already closed.
func (n *NS) track(c io.Closer) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return false
	}
	n.closers = append(n.closers, c)
	return true
}

// untrack forgets c, for resources the caller closed early.
func (n *NS) untrack(c io.Closer) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if i := slices.Index(n.closers, c); i >= 0 {
		n.closers = slices.Delete(n.closers, i, i+1)
	}
}

// Close stops every server and long-lived connection started through this NS, closes its
// handles and removes the /var/run/netns entry. Once no process or socket refers to the
// namespace any more, the kernel destroys it together with every link still inside.
// Close is idempotent.
func (n *NS) Close() error {
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		return nil
	}
	n.closed = true
	closers := n.closers
	n.closers = nil
	n.mu.Unlock()

	var errs []error
	for i := len(closers) - 1; i >= 0; i-- {
		if err := closers[i].Close(); err != nil {
			errs = append(errs, err)
		}
	}
	if n.nl != nil {
		n.nl.Close()
	}
	if err := n.handle.Close(); err != nil {
		errs = append(errs, fmt.Errorf("close handle of %s: %w", n, err))
	}
	if err := removeNamed(n.path); err != nil {
		errs = append(errs, fmt.Errorf("remove %s: %w", n, err))
	}
	return errors.Join(errs...)
}
