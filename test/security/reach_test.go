package security

import (
	"context"
	"net/netip"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"

	"github.com/kproxy/kproxy/test/netns"
)

// Addresses outside the cluster's ranges that the clients route to the node (their
// default route), as a datacenter router would for external and load-balancer IPs.
var (
	externalIP = netip.MustParseAddr("198.51.100.7")
	ingressIP  = netip.MustParseAddr("198.51.100.8")
)

// TestClusterIPNotReachableFromOffNode proves that a ClusterIP is a virtual address
// that nothing answers for on the wire: a client on the node's own L2 segment, with an
// on-link route for the service range so it ARPs for the ClusterIP itself, cannot
// connect, because in iptables mode no interface of the node holds the ClusterIP (IPVS
// mode's kube-ipvs0 does, which is why it needs strict ARP). The same client reaches
// the Service through its externalIP and its LoadBalancer ingress IP, both routed to
// the node.
//
// A client that routes the ClusterIP explicitly via the node does reach it: kube-proxy
// v1.36's iptables rules match Service traffic by destination in PREROUTING with no
// condition on where it came from (its masquerade rule for ClusterIPs exists precisely
// for sources outside the cluster CIDR), so such a packet is DNATed to an endpoint and
// masqueraded. kproxy matches upstream, and this test asserts that too, so that a
// change to either behaviour is a deliberate one.
func TestClusterIPNotReachableFromOffNode(t *testing.T) {
	n := startNode(t)
	onLink, routed := n.topo.Clients[0], n.topo.Clients[1]
	svc := n.service(t, "edge", func(s *v1.Service) {
		s.Spec.Type = v1.ServiceTypeLoadBalancer
		s.Spec.ExternalIPs = []string{externalIP.String()}
	}, ingressIP)
	clusterIP := netip.AddrPortFrom(netip.MustParseAddr(svc.Spec.ClusterIP), 80)

	// Programmed: the ClusterIP works from the node's own pod network and through the
	// explicit route; the external addresses work from the on-link client.
	n.reachesPod(t, n.topo.Node.NS, clusterIP)
	n.reachesPod(t, routed.NS, clusterIP)
	n.reachesPod(t, onLink.NS, netip.AddrPortFrom(externalIP, 80))
	n.reachesPod(t, onLink.NS, netip.AddrPortFrom(ingressIP, 80))

	serviceRange := netip.MustParsePrefix("10.96.0.0/12")
	if out, err := onLink.Exec(context.Background(), "ip", "route", "add", serviceRange.String(), "dev", onLink.Interface); err != nil {
		t.Fatalf("on-link route for %s: %v\n%s", serviceRange, err, out)
	}
	for range 3 {
		_, err := onLink.DialTCP(context.Background(), clusterIP, 2*time.Second)
		if o := netns.Classify(err); o != netns.Timeout && o != netns.Unreachable {
			t.Fatalf("ClusterIP %s from on-link client %s: %v (%s), want no answer (nobody holds the address)", clusterIP, onLink, err, o)
		}
	}
	// The external addresses still work from the same client: only the ClusterIP is
	// node-internal.
	n.reachesPod(t, onLink.NS, netip.AddrPortFrom(externalIP, 80))
	n.reachesPod(t, onLink.NS, netip.AddrPortFrom(ingressIP, 80))
}
