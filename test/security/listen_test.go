package security

import (
	"context"
	"encoding/hex"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kproxy/kproxy/test/netns"
)

// Where kproxy listens with no --metrics-bind-address, --healthz-bind-address or
// config file: kube-proxy's defaults.
const (
	metricsPort = 10249
	healthzPort = 10256
)

// TestDefaultListeners proves that, left to its defaults, kproxy exposes its metrics
// (which reveal every Service's name and the node's sync history) on the node's
// loopback only, and its health endpoint, which load balancers probe from outside, on
// every address. Both the kernel's socket table and real connections are checked.
func TestDefaultListeners(t *testing.T) {
	n := startNode(t)
	nodeNS, client := n.topo.Node, n.topo.Clients[0]

	sockets := listeners(t, nodeNS.NS)
	if got := sockets[metricsPort]; !slices.Equal(got, []netip.Addr{netip.MustParseAddr("127.0.0.1")}) {
		t.Errorf("metrics port %d listens on %v, want only 127.0.0.1", metricsPort, got)
	}
	// kube-proxy's default is 0.0.0.0:10256, which Go's net.Listen("tcp", ...) opens as
	// a dual-stack [::] socket (kube-proxy's own listener shows the same): any wildcard.
	if got := sockets[healthzPort]; len(got) != 1 || !got[0].IsUnspecified() {
		t.Errorf("healthz port %d listens on %v, want the wildcard address only (kube-proxy's default 0.0.0.0)", healthzPort, got)
	}

	local := nodeNS.HTTPClient(2 * time.Second)
	if err := get(local, fmt.Sprintf("http://127.0.0.1:%d/metrics", metricsPort)); err != nil {
		t.Errorf("metrics on the node's loopback: %v", err)
	}
	ctx := context.Background()
	external := netip.AddrPortFrom(nodeNS.V4, metricsPort)
	for _, from := range []*netns.NS{nodeNS.NS, client.NS} {
		_, err := from.DialTCP(ctx, external, 2*time.Second)
		if o := netns.Classify(err); o != netns.Refused {
			t.Errorf("metrics on the node's external address %s from %s: %v (%s), want refused", external, from, err, o)
		}
	}
	remote := client.HTTPClient(2 * time.Second)
	if err := get(remote, fmt.Sprintf("http://%s/healthz", netip.AddrPortFrom(nodeNS.V4, healthzPort))); err != nil {
		t.Errorf("healthz from a client: %v", err)
	}
}

// listeners returns the local addresses of every listening TCP socket in ns, by port,
// from the kernel's own tables (/proc/net/tcp and tcp6 as seen inside ns).
func listeners(t *testing.T, ns *netns.NS) map[uint16][]netip.Addr {
	t.Helper()
	out := map[uint16][]netip.Addr{}
	for _, file := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		text, err := ns.Command(context.Background(), "cat", file).Output()
		if err != nil {
			t.Fatalf("reading %s in %s: %v", file, ns, err)
		}
		for _, line := range strings.Split(string(text), "\n")[1:] {
			f := strings.Fields(line)
			const listen = "0A"
			if len(f) < 4 || f[3] != listen {
				continue
			}
			addr, port, err := parseProcAddr(f[1])
			if err != nil {
				t.Fatalf("%s: %q: %v", file, line, err)
			}
			out[port] = append(out[port], addr)
		}
	}
	return out
}

// parseProcAddr decodes "0100007F:2809": the address as the kernel stores it, in host
// (little-endian) byte order per 32-bit word, and the port in hex.
func parseProcAddr(s string) (netip.Addr, uint16, error) {
	h, p, ok := strings.Cut(s, ":")
	if !ok {
		return netip.Addr{}, 0, fmt.Errorf("no port in %q", s)
	}
	port, err := strconv.ParseUint(p, 16, 16)
	if err != nil {
		return netip.Addr{}, 0, err
	}
	raw, err := hex.DecodeString(h)
	if err != nil || (len(raw) != 4 && len(raw) != 16) {
		return netip.Addr{}, 0, fmt.Errorf("bad address %q", h)
	}
	for i := 0; i < len(raw); i += 4 {
		raw[i], raw[i+1], raw[i+2], raw[i+3] = raw[i+3], raw[i+2], raw[i+1], raw[i]
	}
	addr, _ := netip.AddrFromSlice(raw)
	return addr.Unmap(), uint16(port), nil
}
