package netns

import (
	"net/netip"
	"os/exec"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
)

// TestServiceRulesInNode shows the topology carries kube-proxy-shaped traffic: a DNAT in
// the node reaches a pod on the same bridge (the reply is bridged, so it needs bridge
// netfilter to be un-DNATed), and a pod reaches itself through a "service" only with
// hairpin mode on its bridge port plus the hairpin masquerade.
func TestServiceRulesInNode(t *testing.T) {
	RequireRoot(t)
	topo := New(t, Spec{LocalPods: 2})
	if !topo.BridgeNetfilter {
		t.Skip("bridge netfilter is not available in this kernel")
	}
	node, l0, l1 := topo.Node, topo.Node.Pods[0], topo.Node.Pods[1]
	serveAll(t, node.Pods)

	vip := map[Family][2]netip.Addr{
		V4: {netip.MustParseAddr("10.96.0.10"), netip.MustParseAddr("10.96.0.11")},
		V6: {netip.MustParseAddr("fd00:10:96::10"), netip.MustParseAddr("fd00:10:96::11")},
	}
	for _, f := range Families {
		ipt := map[Family]string{V4: "iptables", V6: "ip6tables"}[f]
		if _, err := exec.LookPath(ipt); err != nil {
			t.Skipf("%s not installed", ipt)
		}
		to := func(p *Pod) string { return netip.AddrPortFrom(p.IP(f), tcpPort).String() }
		for _, rule := range [][]string{
			{"-t", "nat", "-A", "PREROUTING", "-d", vip[f][0].String(), "-p", "tcp", "--dport", "80", "-j", "DNAT", "--to-destination", to(l1)},
			{"-t", "nat", "-A", "PREROUTING", "-d", vip[f][1].String(), "-p", "tcp", "--dport", "80", "-j", "DNAT", "--to-destination", to(l0)},
			{"-t", "nat", "-A", "POSTROUTING", "-s", l0.IP(f).String(), "-d", l0.IP(f).String(), "-j", "MASQUERADE"},
		} {
			if _, err := node.Exec(t.Context(), ipt, rule...); err != nil {
				t.Fatal(err)
			}
		}
	}

	for _, f := range Families {
		t.Run(f.String(), func(t *testing.T) {
			got, err := l0.DialTCP(t.Context(), netip.AddrPortFrom(vip[f][0], 80), probeTimeout)
			if err != nil || got.Server != l1.Label || got.ClientIP != l0.IP(f) {
				t.Errorf("service to a pod on the same bridge: %v, %v; want %s seeing %s", got, err, l1.Label, l0.IP(f))
			}
			got, err = l0.DialTCP(t.Context(), netip.AddrPortFrom(vip[f][1], 80), probeTimeout)
			if err != nil || got.Server != l0.Label || got.ClientIP != node.BridgeAddrs.IP(f) {
				t.Errorf("hairpin: %v, %v; want %s seeing %s", got, err, l0.Label, node.BridgeAddrs.IP(f))
			}
		})
	}

	t.Run("HairpinOffBreaksIt", func(t *testing.T) {
		setHairpin(t, l0, false)
		defer setHairpin(t, l0, true)
		_, err := l0.DialTCP(t.Context(), netip.AddrPortFrom(vip[V4][1], 80), 300*time.Millisecond)
		if Classify(err) != Timeout {
			t.Errorf("hairpin off: got %v (%s), want a timeout", err, Classify(err))
		}
	})

	t.Run("BridgeNetfilterOffBreaksIt", func(t *testing.T) {
		const key = "net.bridge.bridge-nf-call-iptables"
		if err := node.Sysctl(key, "0"); err != nil {
			t.Fatal(err)
		}
		defer func() {
			if err := node.Sysctl(key, "1"); err != nil {
				t.Error(err)
			}
		}()
		_, err := l0.DialTCP(t.Context(), netip.AddrPortFrom(vip[V4][0], 80), 300*time.Millisecond)
		if Classify(err) == OK {
			t.Error("service to a pod on the same bridge worked without bridge netfilter")
		}
	})
}

// setHairpin switches hairpin mode on the pod's bridge port.
func setHairpin(t *testing.T, p *Pod, on bool) {
	t.Helper()
	err := p.Node.Netlink(func(h *netlink.Handle) error {
		link, err := h.LinkByName(p.HostInterface)
		if err != nil {
			return err
		}
		return h.LinkSetHairpin(link, on)
	})
	if err != nil {
		t.Fatal(err)
	}
}
