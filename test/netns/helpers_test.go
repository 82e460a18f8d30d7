package netns

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
)

// probeTimeout bounds probes that are expected to succeed or be refused.
const probeTimeout = 3 * time.Second

// ports the self-tests serve on.
const (
	tcpPort  = 8080
	udpPort  = 8081
	httpPort = 8082
)

// probeFunc is any of the NS probe methods.
type probeFunc func(ctx context.Context, addr netip.AddrPort, timeout time.Duration) (Reply, error)

// wantReply probes dst and checks who answered and which client address it saw.
func wantReply(t *testing.T, probe probeFunc, dst netip.AddrPort, server string, client netip.Addr) {
	t.Helper()
	got, err := probe(t.Context(), dst, probeTimeout)
	if err != nil {
		t.Fatalf("probe %s: %v (outcome %s)", dst, err, Classify(err))
	}
	want := Reply{Server: server, ServerIP: dst.Addr(), ClientIP: client}
	if got != want {
		t.Fatalf("probe %s: got reply %q, want %q", dst, got, want)
	}
}

// serveAll starts TCP, UDP and HTTP servers in every pod.
func serveAll(t *testing.T, pods []*Pod) {
	t.Helper()
	for _, p := range pods {
		if _, err := p.ServeTCP(tcpPort); err != nil {
			t.Fatal(err)
		}
		if _, err := p.ServeUDP(udpPort); err != nil {
			t.Fatal(err)
		}
		if _, err := p.ServeHTTP(httpPort); err != nil {
			t.Fatal(err)
		}
	}
}

// nsInode returns the nsfs inode of a namespace file, the identity `readlink
// /proc/<pid>/ns/net` prints as "net:[<inode>]".
func nsInode(t *testing.T, path string) uint64 {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		t.Fatalf("stat %s: %v", path, err)
	}
	return st.Ino
}

// nsLink is the text readlink prints for a network namespace inode.
func nsLink(ino uint64) string { return fmt.Sprintf("net:[%d]", ino) }

// threadNS reads the calling thread's namespace link.
func threadNS() (string, error) {
	return os.Readlink(fmt.Sprintf("/proc/self/task/%d/ns/net", syscall.Gettid()))
}

// rootLinkNames lists the links of the test process's own namespace.
func rootLinkNames(t *testing.T) map[string]bool {
	t.Helper()
	names := map[string]bool{}
	err := onThread(nil, func() error {
		links, err := netlink.LinkList()
		for _, l := range links {
			names[l.Attrs().Name] = true
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return names
}

// mountedUnder reports the mount points in this mount namespace that contain substr.
func mountedUnder(t *testing.T, substr string) []string {
	t.Helper()
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) > 4 && strings.Contains(f[4], substr) {
			out = append(out, f[4])
		}
	}
	return out
}
