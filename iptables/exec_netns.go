package iptables

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"

	"golang.org/x/sys/unix"
)

// netnsDir is where iproute2 ("ip netns add") bind-mounts named network
// namespaces.
const netnsDir = "/var/run/netns"

// netnsRunner runs functions on an OS thread that has joined a network
// namespace, so processes started there (our own iptables execs and the
// ones go-iptables starts) operate on that namespace's rules.
//
// Switching the thread with setns(2) was chosen over wrapping every
// command in "nsenter --net=PATH": go-iptables execs its binary itself and
// could otherwise only be redirected through a generated wrapper script,
// and no extra process or binary is needed per call. A child started from
// a thread inherits the thread's network namespace; the mount namespace is
// untouched, so /run/xtables.lock stays the host-wide lock, exactly as with
// "ip netns exec".
type netnsRunner struct {
	// path is the namespace file; empty means the caller's namespace.
	path string
}

// newNetnsRunner resolves netns, either a name under /var/run/netns or an
// absolute path (e.g. /proc/PID/ns/net), and checks that it exists.
func newNetnsRunner(netns string) (*netnsRunner, error) {
	if netns == "" {
		return &netnsRunner{}, nil
	}
	path := netns
	if !strings.ContainsRune(netns, '/') {
		path = filepath.Join(netnsDir, netns)
	}
	if _, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("iptables: network namespace %q: %w", netns, err)
	}
	return &netnsRunner{path: path}, nil
}

// String names the namespace for logs.
func (r *netnsRunner) String() string {
	if r == nil || r.path == "" {
		return "current"
	}
	return r.path
}

// do runs fn inside the namespace and returns its error. fn must start and
// wait for its processes itself (exec.Cmd.Run): only the calling goroutine
// is guaranteed to be on the switched thread.
func (r *netnsRunner) do(fn func() error) error {
	if r == nil || r.path == "" {
		return fn()
	}
	fd, err := unix.Open(r.path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("iptables: open network namespace %s: %w", r.path, err)
	}
	defer unix.Close(fd)

	errc := make(chan error, 1)
	go func() {
		// Deliberately never unlocked: when this goroutine returns the
		// runtime destroys the thread instead of handing a thread that
		// lives in another namespace to unrelated goroutines.
		runtime.LockOSThread()
		if err := unix.Setns(fd, unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("iptables: join network namespace %s: %w", r.path, err)
			return
		}
		errc <- fn()
	}()
	return <-errc
}
