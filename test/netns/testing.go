package netns

import (
	"os"
	"testing"
	"time"
)

// RequireRoot skips the test unless it runs as root: creating namespaces, links and bind
// mounts needs CAP_SYS_ADMIN and CAP_NET_ADMIN.
func RequireRoot(tb testing.TB) {
	tb.Helper()
	if os.Geteuid() != 0 {
		tb.Skip("netns: needs root (CAP_SYS_ADMIN, CAP_NET_ADMIN) to create network namespaces; run the test as root")
	}
}

// New builds a topology for a test: it skips the test when not root, fails it if the
// build fails, and tears the topology down in tb.Cleanup, also when the test fails.
func New(tb testing.TB, spec Spec) *Topology {
	tb.Helper()
	RequireRoot(tb)
	t, err := Build(spec)
	if err != nil {
		tb.Fatalf("build topology: %v", err)
	}
	tb.Cleanup(func() {
		if err := t.Close(); err != nil {
			tb.Errorf("tear down topology %s: %v", t.ID, err)
		}
	})
	return t
}

// NewNS creates a single namespace for a test, labelled label (see [Create]); it skips
// when not root and closes the namespace in tb.Cleanup.
func NewNS(tb testing.TB, label string) *NS {
	tb.Helper()
	RequireRoot(tb)
	n, err := Create(NSOptions{Label: label})
	if err != nil {
		tb.Fatalf("create namespace: %v", err)
	}
	tb.Cleanup(func() {
		if err := n.Close(); err != nil {
			tb.Errorf("close namespace %s: %v", n, err)
		}
	})
	return n
}

// Eventually calls f every 250 ms until it returns nil, and fails the test with f's
// last error when timeout passes or the test's context ends first. Proxies program
// changes asynchronously, so tests of what reaches the kernel wait this way.
func Eventually(tb testing.TB, timeout time.Duration, what string, f func() error) {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) || tb.Context().Err() != nil {
			tb.Fatalf("timed out after %s waiting until %s: %v", timeout, what, err)
		}
		time.Sleep(250 * time.Millisecond)
	}
}
