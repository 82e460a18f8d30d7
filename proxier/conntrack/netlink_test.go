package conntrack

import (
	"context"
	"net"
	"net/netip"
	"os"
	"testing"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/kproxy/kproxy/proxier"
	tnetns "github.com/kproxy/kproxy/test/netns"
)

// TestNetlinkClean creates conntrack entries in a fresh namespace and checks that
// Clean deletes exactly the stale ones.
func TestNetlinkClean(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to create a network namespace")
	}
	ns := tnetns.NewNS(t, "ct")
	client := net.IP(netip.MustParseAddr("192.168.1.5").AsSlice())
	sport := uint16(40000)
	flow := func(dst, reply string) *netlink.ConntrackFlow {
		d, r := netip.MustParseAddrPort(dst), netip.MustParseAddrPort(reply)
		sport++
		f := &netlink.ConntrackFlow{FamilyType: unix.AF_INET, TimeOut: 100}
		f.Forward = netlink.IPTuple{Protocol: unix.IPPROTO_UDP, SrcIP: client, SrcPort: sport,
			DstIP: net.IP(d.Addr().AsSlice()), DstPort: d.Port()}
		f.Reverse = netlink.IPTuple{Protocol: unix.IPPROTO_UDP, SrcIP: net.IP(r.Addr().AsSlice()), SrcPort: r.Port(),
			DstIP: client, DstPort: sport}
		return f
	}
	err := ns.Netlink(func(h *netlink.Handle) error {
		for _, f := range []*netlink.ConntrackFlow{
			flow("172.30.0.10:53", "10.0.0.1:5353"),
			flow("172.30.0.10:53", "10.0.0.2:5353"),
			flow("198.51.100.1:53", "198.51.100.1:53"),
		} {
			if err := h.ConntrackCreate(netlink.ConntrackTable, unix.AF_INET, f); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Skipf("cannot create conntrack entries here: %v", err)
	}
	c, err := NewNetlink(NetlinkOptions{Netns: ns.Path()})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	n, err := c.Clean(context.Background(), proxier.IPv4, []Target{{Protocol: proxier.ProtocolUDP,
		IP: netip.MustParseAddr("172.30.0.10"), Port: 53, Endpoints: []netip.AddrPort{ap("10.0.0.1:5353")}}})
	if err != nil || n != 1 {
		t.Fatalf("Clean = %d, %v; want 1 deleted", n, err)
	}
	var left []*netlink.ConntrackFlow
	if err := ns.Netlink(func(h *netlink.Handle) error {
		var err error
		left, err = h.ConntrackTableList(netlink.ConntrackTable, unix.AF_INET)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if len(left) != 2 {
		t.Fatalf("%d flows left, want 2: %v", len(left), left)
	}
	for _, f := range left {
		if FlowFromNetlink(f).ReplySrc == ap("10.0.0.2:5353") {
			t.Errorf("stale flow survived: %v", f)
		}
	}
}
